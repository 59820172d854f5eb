"""A running task's progress in the scheduler UI: reset when the task starts, updated during the work.

Luigi's scheduler keeps a task's last progress and status message across
runs, so a rerun would show the previous run's 100 % until it ends; a
:class:`TaskProgress` is made at the start of ``run()`` and resets both.
Updates are whole percents, floored (100 only once the work is done), and
sent only when the percent changes: with a central scheduler each update is
an HTTP call. Exporters may report from worker threads, hence the lock.
"""

from __future__ import annotations

import threading
from typing import Protocol, cast

import luigi


class RunningTask(Protocol):
    """The scheduler callbacks of a task that a luigi worker runs.

    Luigi's ``Task.__init__`` sets both to ``None`` (so mypy types them so);
    the worker replaces them with callables before ``run()``.
    """

    def set_status_message(self, message: str) -> None: ...

    def set_progress_percentage(self, percentage: int) -> None: ...


def running(task: luigi.Task) -> RunningTask:
    """``task`` inside ``run()``, where its scheduler callbacks are set."""
    return cast(RunningTask, task)


class TaskProgress:
    """``progress(done, total)`` callable that shows ``100 * done // total`` on ``task``.

    Parameters
    ----------
    task
        The running task (``set_progress_percentage``, ``set_status_message``).
    status
        Status message shown from the start.
    """

    def __init__(self, task: luigi.Task, status: str) -> None:
        self._task = running(task)
        self._lock = threading.Lock()
        self._shown = 0
        self._task.set_status_message(status)
        self._task.set_progress_percentage(0)

    def __call__(self, done: int, total: int) -> None:
        percent = 100 if total <= 0 else max(0, min(100, 100 * done // total))
        with self._lock:
            if percent != self._shown:
                self._shown = percent
                self._task.set_progress_percentage(percent)

    def status(self, message: str) -> None:
        """Show ``message`` as the task's status."""
        self._task.set_status_message(message)

    def finish(self, message: str | None = None) -> None:
        """100 %, and ``message`` as the final status if given."""
        if message is not None:
            self.status(message)
        self(1, 1)
