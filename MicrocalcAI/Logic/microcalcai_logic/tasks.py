"""Server calls off the front end's GUI thread.

A front end submits the network half of an action to `TaskRunner` and polls it from its own
event loop (Slicer: a `qt.QTimer`); callbacks then run on the polling thread, so everything that
touches the MRML scene stays on the GUI thread. One task at a time: the panel's buttons are
disabled while one runs (see `MicrocalcAILogic.controls`).

Cancel cannot interrupt a request already on the wire (requests has no way to); it returns the
panel at once and throws the late answer away, and a task checks `cancelled` between its steps.
Written with `threading` and `queue` rather than `concurrent.futures` only because the answer
must come back on the polling thread, with progress messages on the way.
"""

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


class Cancelled(Exception):
    """Raised inside a task's work when the user pressed Cancel."""


@dataclass
class Task:
    label: str
    work: Callable[["Task"], Any]
    on_done: Optional[Callable[[Any], None]] = None
    on_error: Optional[Callable[[BaseException], None]] = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    message: str = ""
    fraction: Optional[float] = None  # 0..1, or None when the step's length is unknown
    thread: Optional[threading.Thread] = None
    steps: list = field(default_factory=list)  # every (message, fraction) reported, in order

    def report(self, message: str, fraction: Optional[float] = None) -> None:
        """Called by the work (any thread): what the panel's busy line shows."""
        self.message, self.fraction = message, fraction
        if not self.steps or self.steps[-1] != (message, fraction):
            self.steps.append((message, fraction))

    def check(self) -> None:
        """Called by the work between its steps: stop here if the user cancelled."""
        if self.cancelled.is_set():
            raise Cancelled(self.label)


class TaskRunner:
    def __init__(self):
        self._answers: queue.Queue = queue.Queue()
        self.current: Optional[Task] = None

    @property
    def busy(self) -> bool:
        return self.current is not None

    def submit(self, label: str, work, on_done=None, on_error=None) -> Task:
        """Start `work(task)` on a worker thread; its answer reaches `on_done` (or its exception
        `on_error`) from `poll`, on the polling thread."""
        if self.current is not None:
            from .errors import LogicError

            raise LogicError(f"Wait for '{self.current.label}' to finish (or cancel it) first.")
        task = Task(label=label, work=work, on_done=on_done, on_error=on_error, message=label)
        self.current = task
        task.thread = threading.Thread(
            target=self._run, args=(task,), name="MicrocalcAI " + label, daemon=True
        )
        task.thread.start()
        return task

    def _run(self, task: Task) -> None:
        try:
            self._answers.put((task, True, task.work(task)))
        except BaseException as error:  # delivered to on_error on the polling thread
            self._answers.put((task, False, error))

    def cancel(self) -> None:
        """Give the panel back now; the task's late answer is dropped."""
        if self.current is not None:
            self.current.cancelled.set()
            self.current = None

    def poll(self) -> bool:
        """Deliver finished tasks' answers (call from the GUI thread); True while one runs."""
        while True:
            try:
                task, succeeded, value = self._answers.get_nowait()
            except queue.Empty:
                return self.current is not None
            if task is self.current:
                self.current = None
            if task.cancelled.is_set() or isinstance(value, Cancelled):
                continue
            callback = task.on_done if succeeded else task.on_error
            if callback is not None:
                callback(value)
            elif not succeeded:
                raise value

    def wait(self, timeout_s: float = 600.0, interval_s: float = 0.05) -> None:
        """Poll until the current task is delivered (scripts and tests; a GUI polls on a timer)."""
        import time

        deadline = time.monotonic() + timeout_s
        while self.poll():
            if time.monotonic() > deadline:
                from .errors import LogicError

                raise LogicError(f"'{self.current.label}' did not finish within {timeout_s:.0f} s.")
            time.sleep(interval_s)
