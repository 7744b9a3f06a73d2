"""Retraining on the server: start, follow progress, stop."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from .client import ServerClient
from .errors import LogicError, ServerError

RUNNING_STATES = ("running",)
START_GRACE_POLLS = 10


@dataclass(frozen=True)
class TrainProgress:
    model: str
    state: str  # idle | running | done | stopped | failed
    progress: float  # 0..1
    epoch: int
    total_epochs: int
    eta_s: Optional[float]
    message: str
    best_val_auc: Optional[float]
    published_version: Optional[str]

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    def summary(self) -> str:
        """One line for a status label."""
        if self.state == "running":
            eta = f" (about {self.eta_s:.0f} s left)" if self.eta_s is not None else ""
            return f"Training {self.model}: epoch {self.epoch}/{self.total_epochs}{eta}"
        if self.state == "done":
            if self.published_version:
                return f"Training {self.model} finished: version {self.published_version} is now served."
            return (
                f"Training {self.model} finished: the new version was not better, "
                "the served model is unchanged."
            )
        if self.state == "stopped":
            return f"Training {self.model} stopped: the served model is unchanged."
        if self.state == "failed":
            return "Training {} failed: {}".format(self.model, self.message or "see the server's log.")
        return "No training running."


def _optional_float(value) -> Optional[float]:
    return float(value) if value is not None else None


def parse_progress(model: str, stats: dict[str, Any]) -> TrainProgress:
    published = stats.get("published_version") if stats.get("published") else None
    return TrainProgress(
        model=model,
        state=str(stats.get("state") or "idle"),
        progress=float(stats.get("progress") or 0.0),
        epoch=int(stats.get("epoch") or 0),
        total_epochs=int(stats.get("total_epochs") or 0),
        eta_s=_optional_float(stats.get("eta_s")),
        message=str(stats.get("message") or ""),
        best_val_auc=_optional_float(stats.get("best_val_auc")),
        published_version=str(published) if published is not None else None,
    )


def start_training(
    client: ServerClient, model: str, options: Optional[dict[str, Any]] = None
) -> dict[str, Any]:
    if not model or model == "ensemble":
        raise LogicError("Choose one hosted model to train (an ensemble is trained through its members).")
    try:
        return client.train_start(model, dict(options or {}))
    except ServerError as error:
        if error.status in (409, 429):  # the contract says 409; MONAI Label itself answers 429
            raise ServerError(
                "A training is already running on the server: wait for it to finish or press Stop first.",
                status=error.status,
            ) from None
        raise


def training_progress(client: ServerClient, model: str) -> TrainProgress:
    stats = client.info().train_stats.get(model) or {}
    return parse_progress(model, stats)


def running_training(train_stats: dict[str, dict[str, Any]]) -> Optional[str]:
    """The model a training is running for, from /info/'s train_stats (None when idle): a
    training started elsewhere (another annotator, the command line) is followed from Connect."""
    for model, stats in sorted((train_stats or {}).items()):
        if str((stats or {}).get("state")) in RUNNING_STATES:
            return model
    return None


class TrainingMonitor:
    """Follows one training across polls. A poll that fails (the server busy or briefly out of
    reach) does not end the following: the last progress is kept, with a note, and the next
    poll tries again; only a finished, stopped or failed state ends it."""

    def __init__(self, model: str, just_started: bool = False):
        self.model = model
        # Just after a start the server may still report the previous run's end state (or idle)
        # for a moment; those states end the following only after this many polls.
        self.grace_polls = START_GRACE_POLLS if just_started else 0
        self.last: Optional[TrainProgress] = None
        self.failures = 0
        self.note = ""
        self.active = True

    def poll(self, client: ServerClient) -> TrainProgress:
        try:
            progress = training_progress(client, self.model)
        except ServerError as error:
            self.failures += 1
            self.note = (
                f"Lost contact with the server ({self.failures} poll(s) failed), still following: {error}"
            )
            return self.last or parse_progress(self.model, {"state": "running"})
        self.failures, self.note = 0, ""
        if progress.running:
            self.grace_polls = 0
            self.active = True
        elif self.grace_polls > 0:
            self.grace_polls -= 1
        else:
            self.active = False
        self.last = progress
        return progress

    def summary(self) -> str:
        text = self.last.summary() if self.last is not None else f"Training {self.model}: starting"
        return f"{text} ({self.note})" if self.note else text


def stop_training(client: ServerClient) -> dict[str, Any]:
    return client.train_stop()


def wait_for(
    client: ServerClient,
    model: str,
    until: Callable[[TrainProgress], bool],
    timeout_s: float,
    interval_s: float = 1.0,
    on_progress: Optional[Callable[[TrainProgress], None]] = None,
) -> TrainProgress:
    """Poll until `until(progress)` holds; for scripts and tests (front ends poll on a timer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        progress = training_progress(client, model)
        if on_progress is not None:
            on_progress(progress)
        if until(progress):
            return progress
        if time.monotonic() > deadline:
            raise LogicError(
                f"Training {model} did not reach the expected state within {timeout_s:.0f} s "
                f"(now: {progress.state})."
            )
        time.sleep(interval_s)
