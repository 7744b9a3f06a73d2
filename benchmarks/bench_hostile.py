"""Hostile-input benchmark: how many bad requests get a clean 4xx, and the server's memory under
hostile uploads.

1. The hostile table of Testing/server/hostile_inputs.py (traversal ids and tags, bad params and
   numbers, non-images, oversize streamed bodies, routes that are off, token, CORS) against a
   real server: inputs tried, clean 4xx, expected 2xx, 5xx, rows whose answer was wrong.
2. Memory: the server's resident memory (its whole process group, sampled every 0.1 s) before,
   during and after UPLOADS 190 KB PNGs that claim 13000 x 13000 pixels, then UPLOADS valid
   full-field-size uploads (4000 x 3000), each classified and dropped.

Usage: .venv/bin/python benchmarks/bench_hostile.py [--uploads 10] [--out RESULTS.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "server"))


def group_rss_mb(leader: int) -> float:
    """Resident memory of every process in the group `leader` leads (the server, its children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != leader:  # process group id
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


class Sampler(threading.Thread):
    def __init__(self, leader: int):
        super().__init__(daemon=True)
        self.leader, self.peak, self.running = leader, 0.0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, group_rss_mb(self.leader))
            time.sleep(0.1)


def full_field_png(rows: int = 4000, cols: int = 3000) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:rows, 0:cols]
    pixels = ((x * 7 + y * 3) % 251).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--uploads", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import requests
    from hostile_inputs import ALLOWED_ORIGIN, TOKEN, UPLOAD_LIMIT_MB, huge_png, problems, rows, send
    from server_helpers import host_tiny_models, write_studies

    from microcalcai.server.launch import LocalServer

    result: dict = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as scratch:
        root = Path(scratch)
        write_studies(root / "studies", None)
        host_tiny_models(root / "workspace", root / "built")
        (root / "outside").mkdir()
        (root / "tmp").mkdir()
        env = {
            "OMP_NUM_THREADS": "2",
            "TMPDIR": str(root / "tmp"),
            "MICROCALCAI_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
            "MICROCALCAI_CORS_ORIGINS": ALLOWED_ORIGIN,
        }
        with (
            LocalServer(root / "studies", root / "workspace", env=env, token=TOKEN) as server,
            requests.Session() as http,
        ):
            http.headers["Authorization"] = f"Bearer {TOKEN}"
            leader = server.process.pid
            table = rows(root / "outside", root)
            counts = {"tried": len(table), "clean_4xx": 0, "expected_2xx": 0, "5xx": 0, "wrong": 0}
            wrong_rows = []
            tmp_before = set((root / "tmp").rglob("*"))
            start = time.perf_counter()
            for row in table:
                with requests.Session() as one:
                    answer = send(one, server.url, row)
                wrong = problems(row, answer, [str(root), sys.prefix, "/work/"])
                counts["wrong"] += bool(wrong)
                if wrong:
                    wrong_rows.append(f"{row.name}: {wrong}")
                counts["5xx"] += answer.status_code >= 500
                if not wrong and 400 <= answer.status_code < 500:
                    counts["clean_4xx"] += 1
                elif not wrong and answer.status_code < 300:
                    counts["expected_2xx"] += 1
            counts["seconds"] = round(time.perf_counter() - start, 1)
            counts["outside_files"] = len(list((root / "outside").iterdir()))
            counts["tmp_files_left"] = len(set((root / "tmp").rglob("*")) - tmp_before)
            counts["wrong_rows"] = wrong_rows
            result["table"] = counts

            memory = {"idle_mb": round(group_rss_mb(leader))}
            sampler = Sampler(leader)
            sampler.start()
            bomb = huge_png(13000, 13000)
            statuses = []
            for _ in range(args.uploads):
                statuses.append(
                    http.post(
                        f"{server.url}/infer/tiny-a",
                        params={"output": "json"},
                        data={"params": json.dumps({"roi": {"x": 6000, "y": 6000, "size": 512}})},
                        files={"file": ("bomb.png", bomb, "image/png")},
                        timeout=120,
                    ).status_code
                )
            memory["bomb_png_kb"] = len(bomb) // 1024
            memory["bomb_statuses"] = sorted(set(statuses))
            memory["after_bombs_mb"] = round(group_rss_mb(leader))
            memory["peak_bombs_mb"] = round(sampler.peak)
            full = full_field_png()
            statuses = []
            for i in range(args.uploads):
                statuses.append(
                    http.post(
                        f"{server.url}/infer/tiny-a",
                        params={"output": "json"},
                        data={"params": json.dumps({"roi": {"x": 1500 + i, "y": 2000, "size": 256}})},
                        files={"file": (f"full{i}.png", full, "image/png")},
                        timeout=300,
                    ).status_code
                )
            sampler.running = False
            sampler.join()
            memory["full_png_kb"] = len(full) // 1024
            memory["full_statuses"] = sorted(set(statuses))
            memory["after_full_mb"] = round(group_rss_mb(leader))
            memory["peak_mb"] = round(sampler.peak)
            result["memory"] = memory
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
