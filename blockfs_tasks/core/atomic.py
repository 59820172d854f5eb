"""Publishing files atomically and durably: temporary name, fsync, rename.

A file is written under a temporary name in its final folder, fsynced, then
renamed into place, and the folder is fsynced, so that after a crash the path
holds the old file or the whole new one. Temporary names carry a fixed marker
(``.tmp-``), the host name, a machine token and the process id
(``<path>.tmp-<host>-<token>-<pid>``), so that stale ones left by a killed
process can be swept: a process is judged only by the machine that ran it.

The machine token (8 hex digits) hashes the kernel's boot id and the pid
namespace: after a reboot, or in another container that shares the host name
(same kernel, other pid namespace), the same pid is another process.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import logging
import os
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .naming import TEMP_MARKER, temporary_name_for, temporary_owner

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

logger = logging.getLogger(__name__)

__all__ = [
    "TEMP_MARKER",
    "fsync_folder",
    "fsync_path",
    "machine_token",
    "owner_is_dead",
    "process_owner",
    "published",
    "pwrite_all",
    "sweep_temporaries",
    "temporary_name",
    "write_all",
    "write_atomically",
]


# <host>-<token>-<pid>, or <host>-<pid> as written before the token existed
_OWNER = re.compile(r"(?P<host>.+?)(?:-(?P<token>[0-9a-f]{8}))?-(?P<pid>\d+)")


@functools.cache
def _machine_token(pid_namespace: str) -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:  # not Linux: the host name alone identifies the machine
        boot_id = ""
    return hashlib.sha1(f"{boot_id}/{pid_namespace}".encode()).hexdigest()[:8]


def machine_token() -> str:
    """8 hex digits naming this boot of this machine's kernel and this pid namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return _machine_token(namespace)


def process_owner() -> str:
    """``<host>-<token>-<pid>``: this process, unambiguously among hosts, boots and containers."""
    return f"{socket.gethostname()}-{machine_token()}-{os.getpid()}"


def temporary_name(path: str) -> str:
    """A temporary path beside ``path``, unique to this host, boot, container and process."""
    return temporary_name_for(path, process_owner())


def owner_is_dead(owner: str) -> bool:
    """True if ``owner`` (from :func:`process_owner`) is a process of this machine that has exited.

    Another host's (or boot's, or container's) process cannot be checked and
    counts as alive. A name written before the machine token existed is judged
    by host name and pid alone.
    """
    match = _OWNER.fullmatch(owner)
    if match is None or match["host"] != socket.gethostname():
        return False
    if match["token"] is not None and match["token"] != machine_token():
        return False
    pid = int(match["pid"])
    return pid != os.getpid() and not _alive(pid)


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


def write_all(fd: int, data: Buffer) -> None:
    """``os.write`` until every byte is written (writes may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def pwrite_all(fd: int, data: Buffer, offset: int) -> None:
    """``os.pwrite`` until every byte is written at ``offset`` (writes may be partial)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


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


def write_atomically(path: str, chunks: Iterable[Buffer]) -> None:
    """Write ``chunks`` to ``path`` through a fsynced temporary file."""
    with published(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for chunk in chunks:
                write_all(fd, chunk)
        finally:
            os.close(fd)


def sweep_temporaries(path_prefix: str) -> list[str]:
    """Remove temporary files ``<path_prefix>*.tmp-<host>-<token>-<pid>`` whose process is gone.

    Only files of this machine are judged (same host name, boot and pid
    namespace): on a shared filesystem another host's process cannot be
    checked, so its temporary files are left alone.
    """
    removed = []
    for tmp in glob.glob(glob.escape(path_prefix) + "*" + TEMP_MARKER + "*"):
        if not owner_is_dead(temporary_owner(tmp)):
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
    """True if process ``pid`` runs (a zombie has exited: its files are no longer being written)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill()
    return state not in (b"Z", b"X")
