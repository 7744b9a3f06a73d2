"""Leases on proposed ROIs, so that annotators working at once are never handed the same ROI.

When next_sample hands ROIs to an annotator (its `client_id`), they are leased to that annotator:
no other annotator is offered them until the lease ends, which is when
- a label is saved for the ROI (it leaves the unlabeled pool, and its lease is dropped),
- the same annotator asks for new samples (it holds only what it was handed last: a skipped ROI
  goes back to the pool), or
- `lease_seconds` have passed (an annotator who walked away does not block the ROI for ever).
Clients that send no client_id count as one annotator. Leases live in the server's memory: a
restart ends them all, which costs at most one ROI proposed twice.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

DEFAULT_LEASE_SECONDS = 900.0  # a careful reading of one ROI with its priors takes minutes
MAX_LEASE_SECONDS = 86400.0
LEASE_ENV = "MICROCALCAI_LEASE_SECONDS"
ANONYMOUS = "anonymous"

RoiId = tuple  # (image id, PixelRoi.key)


@dataclass(frozen=True)
class Lease:
    holder: str
    expires: float


class LeaseBook:
    """Thread-safe record of which ROI is leased to whom until when.

    `lock` is held by next_sample around choosing and leasing, so two requests arriving together
    cannot both pick an ROI before either has leased it.
    """

    def __init__(self, seconds: float = DEFAULT_LEASE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.seconds = float(seconds)
        self.clock = clock
        self.lock = threading.RLock()
        self._leases: dict[RoiId, Lease] = {}

    def held_by_others(self, holder: str) -> set[RoiId]:
        """ROIs another annotator holds a live lease on (expired leases are dropped here)."""
        now = self.clock()
        with self.lock:
            for key in [k for k, lease in self._leases.items() if lease.expires <= now]:
                del self._leases[key]
            return {k for k, lease in self._leases.items() if lease.holder != holder}

    def release_holder(self, holder: str) -> None:
        with self.lock:
            for key in [k for k, lease in self._leases.items() if lease.holder == holder]:
                del self._leases[key]

    def grant(self, holder: str, rois: Iterable[RoiId], seconds: float | None = None) -> float:
        """Lease `rois` to `holder`; returns the lease's length in seconds."""
        length = self.seconds if seconds is None else float(seconds)
        expires = self.clock() + length
        with self.lock:
            for key in rois:
                self._leases[key] = Lease(holder, expires)
        return length

    def keep_only(self, unlabeled: set[RoiId]) -> None:
        """Drop the leases of ROIs that were labeled since they were handed out."""
        with self.lock:
            for key in [k for k in self._leases if k not in unlabeled]:
                del self._leases[key]

    def __len__(self) -> int:
        with self.lock:
            return len(self._leases)


def lease_seconds_setting(conf: dict) -> float:
    """The server's lease length: `--conf lease_seconds N`, else $MICROCALCAI_LEASE_SECONDS."""
    from microcalcai.server.errors import RequestError

    value = conf.get("lease_seconds") or os.environ.get(LEASE_ENV) or DEFAULT_LEASE_SECONDS
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 1.0 <= seconds <= MAX_LEASE_SECONDS:
        raise RequestError(
            f"lease_seconds {value!r} (--conf lease_seconds or ${LEASE_ENV}) must be a number of "
            f"seconds from 1 to {MAX_LEASE_SECONDS:.0f}"
        )
    return seconds


def holder_of(request: dict) -> str:
    client = request.get("client_id")
    return str(client) if isinstance(client, (str, int)) and str(client).strip() else ANONYMOUS
