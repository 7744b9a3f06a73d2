"""Saliency benchmark: speed per architecture, and faithfulness and localisation on the phantom.

One driver over the three parts, each a file of its own that also runs alone:
- ``--part speed``: bench_explain_speed.py (time per map against one forward + backward pass);
- ``--part faithfulness``: bench_explain_faithfulness.py (two networks trained on the phantom;
  pointing game, energy in mask, randomisation check, deletion/insertion);
- ``--part localisation``: bench_explain_localisation.py (every registry architecture trained for
  a fixed time; resumable, one JSON per architecture).

    .venv/bin/python benchmarks/bench_explain.py     # speed + faithfulness (~15 min, 2 busy cores)
    .venv/bin/python benchmarks/bench_explain.py --part speed --archs resnet50 tf_efficientnet_lite0
    .venv/bin/python benchmarks/bench_explain.py --part localisation   # 24 x ~5 min; resumable
    .venv/bin/python benchmarks/bench_explain.py --part localisation --report-only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_explain_faithfulness as faithfulness  # noqa: E402
import bench_explain_localisation as localisation  # noqa: E402
import bench_explain_speed as speed  # noqa: E402
from explain_common import add_common_arguments, start  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part",
        choices=("speed", "faithfulness", "localisation", "all"),
        default="all",
        help="all = speed and faithfulness; localisation trains every architecture (hours)",
    )
    add_common_arguments(parser)
    for part in (speed, faithfulness, localisation):
        part.add_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    start(args.threads)
    if args.part in ("speed", "all"):
        print("\n" + speed.run(args))
    if args.part in ("faithfulness", "all"):
        print("\n" + faithfulness.run(args))
    if args.part == "localisation":
        print("\n" + localisation.run_localisation(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
