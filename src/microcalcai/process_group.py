"""A child process in a process group of its own, its output in a log file, stopped by its id.

What `serve` does with the MONAI Label server (server/launch.py) and with the web page
(web/process.py): the child leads its own group, so a terminal's Ctrl-C reaches only the parent,
which then stops the child and everything the child started (training workers) by the group's id.
Only the standard library is imported here: `serve` starts both before it imports anything heavy.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def start_group(command: list, log_path: Path, **popen) -> subprocess.Popen:
    """Start `command` as the leader of a new process group, stdout and stderr appended to
    `log_path`; `popen` goes on to subprocess.Popen (cwd, env)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )


def stop_group(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM to the group `process` leads, SIGKILL after `timeout` seconds; nothing if it has ended."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # the group this process leads, by its id
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
