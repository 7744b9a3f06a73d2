"""`microcalcai train --recipe NAME_OR_FILE --data MANIFEST --out RUN_DIR`: fine-tune models by a recipe.

Named recipes ship with the package (microcalcai/recipes: kang2021, arlan2025, shia2025, mobini2024,
phantom); a YAML file of your own works too. Every setting can be overridden with --set KEY=VALUE.
Re-running the same command continues an interrupted run.
Under torchrun (several processes) training is distributed (DDP; gloo on the CPU, NCCL on GPUs).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=MANIFEST")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune one or more models by a recipe (kang2021, phantom, ... or a YAML file)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--recipe",
        required=True,
        metavar="NAME_OR_FILE",
        help="a recipe name (kang2021, arlan2025, shia2025, mobini2024, phantom) or a YAML file",
    )
    parser.add_argument(
        "--data", required=True, type=Path, metavar="MANIFEST", help="the target manifest.csv"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="folder for the run")
    parser.add_argument(
        "--arch",
        action="append",
        metavar="ARCH",
        help="architecture(s) instead of the recipe's (timm names; repeat or comma-separate)",
    )
    parser.add_argument(
        "--weights", metavar="imagenet|none|FILE|MODEL_DIR", help="initial weights instead of the recipe's"
    )
    parser.add_argument("--folds", type=int, metavar="K", help="k-fold cross-validation by patient (K >= 2)")
    parser.add_argument("--epochs", type=int, metavar="N", help="maximal epochs instead of the recipe's")
    parser.add_argument(
        "--batch-size", type=int, metavar="N", help="batch size instead of the architecture's"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override any recipe setting, dotted keys (e.g. optimizer.lr=3e-4); repeatable",
    )
    parser.add_argument(
        "--stage-data",
        action="append",
        default=[],
        type=_pair,
        metavar="NAME=MANIFEST",
        help="data of a named recipe stage (arlan2025: intermediate=MANIFEST)",
    )
    parser.add_argument("--device", metavar="auto|cpu|cuda", help="device instead of the recipe's")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="ignore checkpoints and finished models in RUN_DIR and train again",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars, a log line per epoch instead (the default when stderr is not a terminal)",
    )
    parser.set_defaults(
        func=run, interrupted="run the same command again to continue from the last finished epoch"
    )


def _overrides(args) -> list[str]:
    overrides = list(args.overrides)
    if args.arch:
        archs = [a.strip() for item in args.arch for a in item.split(",") if a.strip()]
        overrides.append("archs=[" + ",".join(archs) + "]")
    for flag, key in (
        (args.weights, "weights"),
        (args.folds, "folds"),
        (args.epochs, "epochs"),
        (args.batch_size, "batch_size"),
        (args.device, "device"),
    ):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    return overrides


def _init_distributed():
    """A process group when started by torchrun (WORLD_SIZE > 1); None otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return f"cuda:{local}"
    dist.init_process_group("gloo")
    return "cpu"


def run(args) -> int:
    from microcalcai.train.recipes import load_recipe
    from microcalcai.train.run import train_recipe

    recipe = load_recipe(args.recipe, _overrides(args))
    device = _init_distributed()
    try:
        summary = train_recipe(
            recipe,
            args.data,
            args.out,
            stage_data=dict(args.stage_data),
            device=device,
            resume=not args.restart,
            # a log file or a pipe gets one line an epoch, not a bar's redraws
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    finally:
        if device is not None:
            import torch.distributed as dist

            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        for arch, outcome in summary["archs"].items():
            if "cv" in outcome:
                cv = outcome["cv"]
                print(
                    f"{arch}: {len(cv['folds'])}-fold CV, out-of-fold AUC {cv['oof_auc']:.3f} "
                    f"(fold mean {cv['fold_auc_mean']:.3f}); {outcome['oof_predictions']}"
                )
            else:
                test = outcome.get("test") or {}
                test_text = f", test AUC {test['auc']:.3f}" if "auc" in test else ""
                print(
                    f"{arch}: validation AUC {outcome['val']['auc']:.3f}{test_text}; "
                    f"model {outcome['model_dir']}"
                )
    return 0
