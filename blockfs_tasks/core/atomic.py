"""Publishing files atomically and durably: temporary name, fsync, rename.

A file is written under a temporary name in its final folder, fsynced, then
renamed into place, and the folder is fsynced, so that after a crash the path
holds the old file or the whole new one. Temporary names carry a fixed marker
(``.tmp-``) so that stale ones left by a killed process can be swept.
"""

from __future__ import annotations

import glob
import logging
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

TEMP_MARKER = ".tmp-"


def temporary_name(path: str) -> str:
    """A temporary path beside ``path``, unique to this host and process."""
    return f"{path}{TEMP_MARKER}{socket.gethostname()}-{os.getpid()}"


def fsync_folder(path: str) -> None:
    """Make a rename or unlink in the folder of ``path`` durable."""
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str) -> None:
    """Flush a file that another process may have written."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (writes may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextmanager
def published(path: str) -> Iterator[str]:
    """Yield a temporary path; on success fsync it and rename it to ``path``.

    On error the temporary file is removed and ``path`` is untouched.
    """
    tmp = temporary_name(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_folder(path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomically(path: str, chunks: Iterable[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` through a fsynced temporary file."""
    with published(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for chunk in chunks:
                write_all(fd, chunk)
        finally:
            os.close(fd)


def sweep_temporaries(path_prefix: str) -> list[str]:
    """Remove temporary files ``<path_prefix>*.tmp-<host>-<pid>`` whose process is gone.

    Only files of this host are judged: on a shared filesystem another host's
    process cannot be checked, so its temporary files are left alone.
    """
    removed = []
    host = socket.gethostname()
    for tmp in glob.glob(glob.escape(path_prefix) + "*" + TEMP_MARKER + "*"):
        owner_host, _, pid = tmp.rsplit(TEMP_MARKER, 1)[1].rpartition("-")
        if owner_host != host or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            os.unlink(tmp)
            removed.append(tmp)
        except FileNotFoundError:
            pass
    if removed:
        logger.info("swept %d stale temporary files under %s", len(removed), path_prefix)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
