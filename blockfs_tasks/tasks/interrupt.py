"""Ctrl-C during a ``luigi`` run: one line that says how to resume, no tracebacks.

A terminal's Ctrl-C reaches the whole process group: luigi's main process and
each task process it forked for ``--workers N``. Python would print a
traceback in every one of them, and luigi's main loop, interrupted at a random
point, may even go on and report the run as failed. Every target here is
published atomically (temporary name, fsync, rename), so an interrupted task
leaves nothing that looks done, and a rerun of the same command resumes (and
sweeps the interrupted run's temporary files). So, under the ``luigi`` command,
a task process ends at once, as if killed, and the main process prints::

    interrupted; rerun the same command to resume

and then ends by SIGINT itself (exit status 130 in a shell), as an interrupted
program should. Importing the tasks anywhere else (a script, pytest) changes
no signal handling.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

import luigi

MESSAGE = "interrupted; rerun the same command to resume"


def _end_task_process(signum: int, frame: FrameType | None) -> None:
    """SIGINT in a forked task process: end now; the main process reports the interruption."""
    del signum, frame
    os._exit(128 + signal.SIGINT)


def _end_main_process(signum: int, frame: FrameType | None) -> None:
    """SIGINT in luigi's main process: say how to resume, then die by SIGINT."""
    del frame
    sys.stderr.write(f"{MESSAGE}\n")
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def running_under_luigi_command() -> bool:
    """True in the ``luigi`` console script (``luigi --module blockfs_tasks.tasks ...``)."""
    return os.path.basename(sys.argv[0] if sys.argv else "") == "luigi"


def install_interrupt_handling() -> None:
    """Under the ``luigi`` command, handle SIGINT in the main and the task processes; idempotent."""
    if not running_under_luigi_command() or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is _end_main_process:
        return
    signal.signal(signal.SIGINT, _end_main_process)
    main_pid = os.getpid()

    @luigi.Task.event_handler(luigi.Event.START)
    def _end_task_processes_quietly(task: luigi.Task) -> None:
        del task
        if os.getpid() != main_pid:  # a task process forked for --workers N > 1
            signal.signal(signal.SIGINT, _end_task_process)
