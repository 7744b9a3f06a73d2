"""What a benchmark's JSON record carries besides its figures: the machine, the load average
before and after, and when it finished; printed, and written where asked."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def finish(summary: dict, load_before: tuple, out: Path | None) -> dict:
    record = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        **summary,
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(record, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
    return record
