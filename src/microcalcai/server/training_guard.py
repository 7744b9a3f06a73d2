"""One training at a time, across server restarts, and no publication over a newer version.

MONAI Label keeps its running training only in the server's memory: after the server is killed
(the server alone, so its training child lives on as an orphan) a restarted server knew nothing
of it, accepted a second training, could not stop the orphan, and the orphan later published a
model trained from an old version over whatever was served by then.

Here the training in progress is a record on disk, `<workspace>/training/active.json` (written
atomically), naming the training's id, model, process (pid and start time, so a reused pid is
not mistaken for it) and the version it started from. Every change to the record, and every
publication of a model version, happens under one file lock, `<workspace>/training/.lock`, which
the operating system releases when its holder dies, so a kill never leaves it held. A training
publishes only if, under that lock, the record still names it and its model still serves the
version it started from; otherwise it ends without publishing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from microcalcai.atomic import atomic_write_text
from microcalcai.server.errors import Conflict

LOG = logging.getLogger(__name__)
# Keys the server adds to a training's request, read by the training process (train_task.py).
TRAINING_ID = "_training_id"
BASE_VERSION = "_base_version"
# A process's start time as psutil gives it is the kernel's boot time (/proc/stat btime, whole
# seconds, recomputed at each read from the wall clock) plus its start in ticks: two servers
# reading it for the same process hours after boot were seen 1 s apart (a restarted server took
# a live orphan for a reused pid and let a second training start). A reused pid starts much later.
CREATE_TIME_TOLERANCE_S = 2.5
STARTING_GRACE_S = 120.0  # a record not yet naming its process counts as running this long
LOCK_TIMEOUT_S = 300.0  # the lock is held for file renames only; waiting longer means a fault


class StalePublish(Exception):
    """The training may not publish: it was stopped, or its model's served version changed."""


class TrainingGuard:
    def __init__(self, workspace: str | Path):
        self.folder = Path(workspace) / "training"
        self.record_path = self.folder / "active.json"
        self.lock_path = self.folder / ".lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT_S):
            yield

    # -- the record (call these with the lock held) ------------------------------------------
    def read(self) -> dict | None:
        try:
            record = json.loads(self.record_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("id") else None

    def write(self, record: dict) -> None:
        atomic_write_text(self.record_path, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()

    def active(self) -> dict | None:
        """The record of the training that is running now; a record whose process is gone is
        removed (the process was killed, or ended without cleaning up)."""
        record = self.read()
        if record is None:
            return None
        if record.get("pid"):
            running = process_alive(record["pid"], record.get("create_time"))
        else:
            running = time.time() - float(record.get("claimed", 0)) < STARTING_GRACE_S
        if not running:
            LOG.info(
                "training %s of %s is no longer running; its record is removed", record["id"], record["model"]
            )
            self.clear()
            return None
        return record

    # -- what the server does ----------------------------------------------------------------
    def refuse_if_running(self) -> None:
        active = self.active()
        if active is not None:
            raise Conflict(
                f"a training of {active['model']!r} is already running (id {active['id']}, started "
                f"{active.get('started', '?')}); wait for it to end (GET /train/) or stop it with "
                "DELETE /train/"
            )

    def claim(self, training_id: str, model: str, base_version: str) -> dict:
        record = {
            "id": training_id,
            "model": model,
            "base_version": str(base_version),
            "pid": None,
            "create_time": None,
            "claimed": time.time(),
            "started": _now(),
            "server_pid": os.getpid(),
        }
        self.write(record)
        return record

    def attach(self, training_id: str, pid: int) -> bool:
        """Name the process running `training_id`; False when the record is another training's."""
        record = self.read()
        if record is None or record["id"] != training_id:
            return False
        if record.get("pid") != pid:
            record.update(pid=int(pid), create_time=process_create_time(pid))
            self.write(record)
        return True

    def release(self, training_id: str) -> None:
        record = self.read()
        if record is not None and record["id"] == training_id:
            self.clear()

    def stop_orphan(self) -> dict | None:
        """Kill the running training's process (and its children) that this server did not start."""
        record = self.active()
        if record is None or not record.get("pid"):
            return None
        kill_tree(int(record["pid"]), record.get("create_time"))
        self.clear()
        LOG.info("stopped training %s of %s (process %s)", record["id"], record["model"], record["pid"])
        return record

    # -- what the training process does -------------------------------------------------------
    def check_may_publish(self, store, name: str, training_id: str | None, base_version: str) -> None:
        """Raise StalePublish unless this training still holds the record (when it has an id)
        and `name` still serves `base_version`. Call with the lock held, and publish under it."""
        if training_id:
            record = self.read()
            if record is None or record["id"] != training_id:
                raise StalePublish(
                    "this training was stopped or replaced by another one while it ran; nothing published"
                )
        served = store.current_version(name)
        if str(served) != str(base_version):
            raise StalePublish(
                f"the served version of {name!r} changed from {base_version} to {served} while this "
                f"training ran; a model trained from version {base_version} is not published over it "
                "(train again to start from the served version)"
            )


def process_create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(int(pid)).create_time()
    except (psutil.Error, ValueError):
        return None


def process_alive(pid, create_time=None) -> bool:
    """The process runs (not a zombie) and, when `create_time` is known, is the same process."""
    import psutil

    try:
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return (
            create_time is None or abs(process.create_time() - float(create_time)) < CREATE_TIME_TOLERANCE_S
        )
    except (psutil.Error, ValueError, TypeError):
        return False


def kill_tree(pid: int, create_time=None) -> None:
    """SIGKILL a process and its descendants, children first (as MONAI Label stops its own)."""
    import psutil

    if not process_alive(pid, create_time):
        return
    try:
        process = psutil.Process(pid)
        children = process.children(recursive=True)
    except psutil.Error:
        return
    for victim in [*children, process]:
        with contextlib.suppress(psutil.Error):
            victim.kill()
    # Not our child (an orphan belongs to init now): poll until it is gone or a zombie.
    deadline = time.monotonic() + 10
    while process_alive(pid, create_time) and time.monotonic() < deadline:
        time.sleep(0.05)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class TrainingRun:
    """What the training process knows of itself: its id and the version it started from."""

    def __init__(self, workspace: str | Path, store, name: str, request: dict):
        self.guard = TrainingGuard(workspace)
        self.store, self.name = store, name
        self.id = request.get(TRAINING_ID) or None
        self.base_version = str(request.get(BASE_VERSION) or store.current_version(name))

    def begin(self) -> None:
        """Name this process in the record; refuse to run a training that was stopped, or whose
        model's served version changed, before this process started."""
        with self.guard.locked():
            if self.id and not self.guard.attach(self.id, os.getpid()):
                raise StalePublish("this training was stopped before it started")
            served = self.store.current_version(self.name)
        if served != self.base_version:
            raise StalePublish(
                f"the served version of {self.name!r} changed from {self.base_version} to {served} "
                "before the training started; start it again"
            )

    @contextlib.contextmanager
    def publishing(self) -> Iterator[None]:
        """Hold the lock while publishing, if this training may publish (else StalePublish)."""
        with self.guard.locked():
            self.guard.check_may_publish(self.store, self.name, self.id, self.base_version)
            yield

    def end(self) -> None:
        if self.id:
            with self.guard.locked():
                self.guard.release(self.id)
