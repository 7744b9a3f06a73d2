"""Phantom cases made in worker processes, in order, and stoppable."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor


def results_in_order(
    stack: contextlib.ExitStack, make: Callable, settings, count: int, folder, workers: int
) -> Iterator:
    """`make(settings, i, folder)` for i in 0..count-1, in this process (workers 1) or in worker
    processes, yielded in order. On Ctrl-C the cases not yet started are cancelled: the pool's own
    exit would otherwise wait for the whole queue (minutes for hundreds of patients)."""
    if workers == 1:
        return (make(settings, i, folder) for i in range(count))
    pool = stack.enter_context(ProcessPoolExecutor(max_workers=min(workers, count)))
    stack.callback(pool.shutdown, wait=True, cancel_futures=True)  # runs before the pool's exit
    futures = [pool.submit(make, settings, i, folder) for i in range(count)]
    return (future.result() for future in futures)
