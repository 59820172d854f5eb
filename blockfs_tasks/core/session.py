"""The writing session of a live volume: one at a time, named in a session file.

``create()`` and ``open(path, "r+")`` start a writing session; ``close()``
ends it. The session is the file ``<directory file>.session``, made whole by
``link()`` of a temporary file (atomic, and exclusive on NFS too, where
``O_EXCL`` historically was not). It names its process: host, machine token
(boot id + pid namespace, see :mod:`.atomic`), pid, the process's start time
and when the session began. A second writing session is refused with
:class:`VolumeInUseError` naming the first.

Why refuse rather than let two sessions merge: a session's ``close()`` would
have to merge its own entries onto whatever directory is current and publish
with a compare-and-swap, and a reader of the volume would then see blocks of
both sessions in no defined order. One session at a time keeps the rule of
the format (one writer per file, the directory file included) and costs one
small file per session. The processes of the session (a fork or spawn pool,
pickled copies of the Directory, a child that opens the volume ``"r+"``
itself) are not sessions: they only append to block files of their own.

A session whose process has died (a crash, or a script that never called
``close()``) is stale and is taken over by the next writing session, which
replays its journals: this is judged only for processes of this machine
(same host name, boot and pid namespace). Another machine's session is never
taken over; the error says which file to remove once that process is gone.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import socket
import threading
import weakref
from dataclasses import asdict, dataclass

from .atomic import fsync_folder, machine_token, temporary_name, write_all
from .errors import MissingFileError, ReadOnlyError, VolumeInUseError
from .naming import SESSION_SUFFIX, session_file_name

logger = logging.getLogger(__name__)

__all__ = ["SESSION_SUFFIX", "Session", "SessionInfo", "acquire", "read_session", "session_file_name",
           "session_identity"]


@dataclass(frozen=True)
class SessionInfo:
    """What a session file says about the process that holds the session."""

    host: str
    machine: str  # atomic.machine_token() of the holder
    pid: int
    process_start: int  # the holder's start time (clock ticks after boot), 0 if unknown: tells a reused pid
    since: str  # ISO 8601, UTC
    token: str  # random: this session and no other

    @classmethod
    def of_this_process(cls) -> SessionInfo:
        return cls(
            host=socket.gethostname(),
            machine=machine_token(),
            pid=os.getpid(),
            process_start=_process_start(os.getpid()),
            since=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            token=secrets.token_hex(8),
        )

    def describe(self) -> str:
        here = self.host == socket.gethostname() and self.machine == machine_token()
        who = "this process" if here and self.pid == os.getpid() else f"process {self.pid}"
        return f"{who} on host {self.host!r} (machine {self.machine}) since {self.since}"

    def on_this_machine(self) -> bool:
        return self.host == socket.gethostname() and self.machine == machine_token()

    def is_dead(self) -> bool:
        """True only when sure: a process of this machine that has exited (or whose pid was reused).

        In this very process, the session is dead when no Directory holds it any more.
        """
        if not self.on_this_machine():
            return False
        if self.pid == os.getpid():
            return not _live_sessions.holds(self.token)
        start = _process_start(self.pid)
        if start < 0:
            return True  # no such process
        return bool(self.process_start and start and start != self.process_start)

    def is_ancestor(self) -> bool:
        """True if the holder is this process's parent, grandparent... on this machine."""
        if not self.on_this_machine():
            return False
        pid = os.getppid()
        while pid > 1:
            if pid == self.pid:
                return _process_start(pid) in (self.process_start, 0)
            pid = _parent_of(pid)
        return False


class Session:
    """A writing session this process holds, until :meth:`release`."""

    def __init__(self, directory_path: str, info: SessionInfo, identity: int) -> None:
        self.path = session_file_name(directory_path)
        self.info = info
        self.identity = identity  # the session file's inode: what appenders key on
        _live_sessions.add(self)

    def still_held(self) -> bool:
        """True if the session file is still this session's (not taken over)."""
        other = read_session(self.path[: -len(SESSION_SUFFIX)])
        return other is not None and other.token == self.info.token

    def release(self) -> None:
        """End the session: remove the session file if it is still ours."""
        if self.still_held():
            try:
                os.unlink(self.path)
                fsync_folder(self.path)
            except FileNotFoundError:
                pass
        _live_sessions.discard(self)


def read_session(directory_path: str) -> SessionInfo | None:
    """The session that holds the volume now, or None."""
    try:
        with open(session_file_name(directory_path), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        return SessionInfo(**json.loads(raw))
    except (ValueError, TypeError):
        # a damaged session file names no process: count it as held by an unknown one
        return SessionInfo("?", "?", 0, 0, "?", "?")


def session_identity(directory_path: str) -> int:
    """The identity (inode) of the volume's current session; raises if none is open."""
    try:
        return os.stat(session_file_name(directory_path)).st_ino
    except FileNotFoundError as e:
        raise MissingFileError(
            f"{directory_path}: the volume is not open for writing (its writing session was closed)"
        ) from e


def acquire(directory_path: str, replace_own: bool = False) -> Session:
    """Start a writing session of the volume, taking over a stale one.

    ``replace_own`` also takes over a session held by another Directory of
    this same process (``create()`` replaces the volume anyway). Raises
    :class:`VolumeInUseError` naming the session that holds the volume.
    """
    path = session_file_name(directory_path)
    info = SessionInfo.of_this_process()
    tmp = temporary_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except PermissionError as e:
        raise ReadOnlyError(f"{directory_path}: cannot start a writing session here: {e.strerror}") from e
    try:
        write_all(fd, json.dumps(asdict(info)).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        for _ in range(8):  # each round either wins, or removes one stale session file
            try:
                os.link(tmp, path)
                return Session(directory_path, info, os.stat(path).st_ino)
            except FileExistsError:
                pass
            try:
                identity = os.stat(path).st_ino
            except FileNotFoundError:
                continue  # the other session just ended
            other = read_session(directory_path)
            if other is None:
                continue
            own = other.on_this_machine() and other.pid == os.getpid()
            if not (other.is_dead() or (replace_own and own)):
                raise VolumeInUseError(
                    f"{directory_path}: the volume is open for writing by {other.describe()}; "
                    f"one writing session at a time: close() that one first"
                    + ("" if own or other.on_this_machine() else
                       f" (if that process no longer runs, remove {path})")
                )
            _remove_if_same(path, identity)
            logger.warning("%s: took over the writing session of %s, which ended without close()",
                           directory_path, other.describe())
        raise VolumeInUseError(f"{directory_path}: other processes keep starting writing sessions; try again")
    finally:
        os.unlink(tmp)


def _remove_if_same(path: str, identity: int) -> None:
    """Remove ``path`` if it is still the file ``identity`` (another process may have replaced it)."""
    grave = temporary_name(path + ".stale")
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return
    try:
        if os.stat(grave).st_ino != identity:  # a fresh session took its place: put it back
            try:
                os.link(grave, path)
            except FileExistsError:
                pass
    finally:
        os.unlink(grave)


def _process_start(pid: int) -> int:
    """Start time of process ``pid`` (clock ticks after boot); -1 if it is gone (or a zombie), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return -1 if fields[0] in (b"Z", b"X") else int(fields[19])  # a zombie has exited
    except FileNotFoundError:
        return -1
    except (OSError, IndexError, ValueError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return -1
        except PermissionError:
            pass
        return 0


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class _LiveSessions:
    """Tokens of the sessions that Directory objects of this process hold (weakly).

    Per-process state by nature: a session held by a Directory that was
    dropped without ``close()`` is stale even though its process lives on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()

    def add(self, session: Session) -> None:
        with self._lock:
            self._sessions[session.info.token] = session

    def discard(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.info.token, None)

    def holds(self, token: str) -> bool:
        with self._lock:
            return token in self._sessions


_live_sessions = _LiveSessions()
