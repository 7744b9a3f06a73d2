"""kill -9 of the real server while it writes labels or trains, then a restart: what survived.

Used by Testing/server/test_server_durability.py (a few trials) and
benchmarks/bench_durability.py (many). Writers save labels over HTTP, each on a new ROI, and
remember every save the server acknowledged (200); at a random moment the server process alone
gets SIGKILL; then it is started again on the same folders. A trial survives when the start
succeeds, every acknowledged annotation is in the label documents and in the label API, and
the server lists every image that has a label document as labelled.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from server_helpers import COLS, ROWS, label_part

ROI = 32


@dataclass
class TrialResult:
    kind: str
    acknowledged: int = 0
    lost: list = field(default_factory=list)
    started: bool = False
    start_error: str = ""
    unlisted: list = field(default_factory=list)
    index_readable: bool = False

    @property
    def survived(self) -> bool:
        return self.started and not self.lost and not self.unlisted and self.index_readable


class LabelWriters:
    """`count` threads saving labels until stopped; `acknowledged` maps (image, x, y) -> label."""

    def __init__(self, url: str, images: list[str], count: int, seed: int, counter: itertools.count):
        self.url, self.images = url, images
        self.acknowledged: dict[tuple, str] = {}
        self._counter = counter  # shared by every trial: each save is on a ROI not used before
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rng = random.Random(seed)
        self._threads = [threading.Thread(target=self._write, daemon=True) for _ in range(count)]

    def start(self) -> LabelWriters:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _next(self) -> tuple[str, int, int, str]:
        with self._lock:
            n = next(self._counter)
            label = self._rng.choice(("benign", "malignant"))
        span_x, span_y = COLS - 2 * ROI, ROWS - 2 * ROI  # distinct ROI centres inside the image
        x, y = ROI + n % span_x, ROI + (n // span_x) % span_y
        return self.images[n % len(self.images)], x, y, label

    def _write(self) -> None:
        import requests

        with requests.Session() as http:
            while not self._stop.is_set():
                image, x, y, label = self._next()
                try:
                    answer = http.put(
                        f"{self.url}/datastore/label",
                        params={"image": image, "tag": "final"},
                        files=label_part({"roi": {"x": x, "y": y, "size": ROI}, "label": label}),
                        timeout=30,
                    )
                except requests.RequestException:
                    if self._stop.wait(0.05):
                        return
                    continue
                if answer.status_code == 200:
                    with self._lock:
                        self.acknowledged[(image, x, y)] = label


def kill_server_only(server) -> None:
    """SIGKILL the server process, not its group (a training child would live on)."""
    process = server.process
    if process is None:  # a previous trial's start failed
        return
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    server.stop()  # forgets the dead process; nothing else to stop


def restart(server, result: TrialResult) -> None:
    try:
        server.start()
        result.started = True
    except Exception as exc:  # the trial records a failed start; the caller asserts on it
        result.start_error = str(exc)[-2000:]


def check_after_restart(server, studies: Path, acknowledged: dict, result: TrialResult) -> None:
    """Every acknowledged annotation on disk and through the API; every labelled image listed."""
    import requests

    result.acknowledged = len(acknowledged)
    index = studies / "datastore_v2.json"
    try:
        json.loads(index.read_text())
        result.index_readable = True
    except (OSError, ValueError):
        result.index_readable = False
    by_image: dict[str, dict] = {}
    for (image, x, y), label in acknowledged.items():
        by_image.setdefault(image, {})[(x, y)] = label
    with requests.Session() as http:
        for image, expected in by_image.items():
            answer = http.get(
                f"{server.url}/datastore/label", params={"label": image, "tag": "final"}, timeout=30
            )
            saved = {}
            if answer.status_code == 200:
                saved = {
                    (a["roi"]["x"], a["roi"]["y"]): a["label"] for a in answer.json().get("annotations", [])
                }
            result.lost += [(image, xy, label) for xy, label in expected.items() if saved.get(xy) != label]
        listing = http.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()
    on_disk = {p.stem for p in (studies / "labels" / "final").glob("*.json")}
    listed = {i for i, o in listing["objects"].items() if "final" in o.get("labels", {})}
    result.unlisted = sorted(on_disk - listed)


def random_kill_trial(
    server,
    studies: Path,
    images: list[str],
    rng: random.Random,
    acknowledged: dict,
    counter: itertools.count,
    *,
    writers: int = 3,
    window: tuple[float, float] = (0.3, 2.5),
) -> TrialResult:
    """Writers save labels; the server is killed after a random delay; it restarts; check.
    `acknowledged` gathers the saves of every trial so far (all must survive every restart)."""
    result = TrialResult("kill -9 during label writes")
    crew = LabelWriters(server.url, images, writers, rng.randrange(1 << 30), counter)
    crew.start()
    time.sleep(rng.uniform(*window))
    kill_server_only(server)
    crew.stop()
    acknowledged.update(crew.acknowledged)
    restart(server, result)
    if result.started:
        check_after_restart(server, studies, acknowledged, result)
    return result


def damaged_index_trial(server, studies: Path, acknowledged: dict, damage: str) -> TrialResult:
    """Kill the server, damage MONAI Label's index as an interrupted write would, restart, check.

    damage: "empty" (0 bytes, what an in-place rewrite left after a kill), "truncated" (half of
    it), "stale" (valid, but missing a label that was written just before the kill).
    """
    result = TrialResult(f"index {damage} at start")
    kill_server_only(server)
    index = studies / "datastore_v2.json"
    text = index.read_text()
    if damage == "empty":
        index.write_bytes(b"")
    elif damage == "truncated":
        index.write_text(text[: len(text) // 2])
    elif damage == "stale":
        try:
            data = json.loads(text)
        except ValueError:  # already unreadable: nothing stale to make
            result.start_error = "the index was unreadable before this trial"
            return result
        labelled = [i for i, o in data["objects"].items() if o.get("labels", {}).get("final")]
        for image in labelled[:2]:
            data["objects"][image]["labels"].pop("final")
        index.write_text(json.dumps(data))
    else:
        raise ValueError(damage)
    restart(server, result)
    if result.started:
        check_after_restart(server, studies, acknowledged, result)
    return result


@dataclass
class TrainingTrial:
    delay_s: float
    started: bool = False
    orphan_alive: bool = False
    refused: bool = False  # a second POST /train/ answered 409 while the orphan ran
    stopped: bool = False  # DELETE /train/ ended the orphan
    accepted_after: bool = False  # with no training running any more, a new one is accepted
    error: str = ""

    @property
    def survived(self) -> bool:
        guarded = not self.orphan_alive or (self.refused and self.stopped)
        return self.started and guarded and self.accepted_after


def training_kill_trial(server, http, delay_s: float, body: dict) -> TrainingTrial:
    """Start a long training, kill the server `delay_s` after the 200, restart, then check that a
    second training is refused while the orphan runs and that DELETE /train/ ends it."""
    from microcalcai.server.training_guard import TrainingGuard, kill_tree, process_alive

    trial = TrainingTrial(delay_s)
    answer = http.post(f"{server.url}/train/tiny-b", json=body, timeout=60)
    if answer.status_code != 200:
        trial.error = f"training not started: {answer.status_code} {answer.text[:200]}"
        return trial
    time.sleep(delay_s)
    kill_server_only(server)
    guard = TrainingGuard(server.workspace)
    with guard.locked():
        record = guard.read()
    pid = record.get("pid") if record else None
    probe = TrialResult("")
    restart(server, probe)
    trial.started = probe.started
    if not trial.started:
        trial.error = probe.start_error[-300:]
        return trial
    try:
        trial.orphan_alive = bool(pid) and process_alive(pid)
        if trial.orphan_alive:
            second = http.post(f"{server.url}/train/tiny-a", json=body, timeout=60)
            trial.refused = second.status_code == 409
            http.delete(f"{server.url}/train/", timeout=60)
            deadline = time.monotonic() + 30
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            trial.stopped = not process_alive(pid)
        again = http.post(f"{server.url}/train/tiny-a", json=body, timeout=60)
        trial.accepted_after = again.status_code == 200
        if not trial.accepted_after:
            trial.error = f"a new training after the orphan: {again.status_code} {again.text[:200]}"
        http.delete(f"{server.url}/train/", timeout=60)
    finally:
        if pid:
            kill_tree(pid)
    return trial
