"""One writing session at a time (issue 9 item 2), one journal per writer, and dead temporaries swept (item 12).

Two overlapping ``open(p, "r+")`` sessions used to lose every committed block
(the second close republished the index it loaded at open); now the second
is refused with an error that names the first, a stale session (its process
is dead) is taken over, and the processes of a session still write freely.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory, VolumeInUseError
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.atomic import TEMP_MARKER, machine_token, temporary_name
from blockfs_tasks.core.blockfile import journal_files, journal_name
from blockfs_tasks.core.session import read_session, session_file_name

from .helpers import SCRIPT_TIMEOUT, random_block, same


def block(value: int) -> np.ndarray:
    return np.full((8, 8, 8), value, np.uint8)


def new_volume(path: Path) -> Path:
    d = Directory(32, 16, 16, np.uint8, path, 8, 8, 8)
    d.create()
    d.close()
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# A process that opens the volume "r+", writes the blocks given, says so, and waits to be killed.
HOLDER = r"""
import sys
import numpy as np
from blockfs_tasks.core import Directory

d = Directory.open(sys.argv[1], "r+")
for x in map(int, sys.argv[2:]):
    d.write_block(np.full((8, 8, 8), x + 1, np.uint8), x, 0, 0)
print("holding", flush=True)
sys.stdin.read()
"""


def start_holder(path: Path, *xs: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), *map(str, xs)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=SCRIPT_TIMEOUT)


# ------------------------------------------------------------ the case
def test_overlapping_sessions_in_one_process_lose_nothing(tmp_path: Path) -> None:
    """The issue's reproduction: the second open("r+") is refused, naming the first; nothing is lost."""
    path = new_volume(tmp_path / "v.blockfs")
    a = Directory.open(path, "r+")
    with pytest.raises(VolumeInUseError, match=r"open for writing by this process .* since "):
        Directory.open(path, "r+")
    a.write_block(block(1), 0, 0, 0)
    a.close()
    b = Directory.open(path, "r+")  # free again
    b.write_block(block(2), 8, 0, 0)
    b.close()
    r = Directory.open(path)
    assert list(r.block_origins()) == [(0, 0, 0), (8, 0, 0)]
    assert same(r.read_block(0, 0, 0), block(1)) and same(r.read_block(8, 0, 0), block(2))
    assert sorted(os.listdir(tmp_path)) == ["v.blockfs", "v.blockfs.0", "v.blockfs.1"]


def test_a_session_of_another_process_is_refused_by_open_and_create(tmp_path: Path) -> None:
    path = new_volume(tmp_path / "v.blockfs")
    proc = start_holder(path, 0)
    try:
        with pytest.raises(VolumeInUseError, match=rf"process {proc.pid} on host {socket.gethostname()!r}"):
            Directory.open(path, "r+")
        with pytest.raises(VolumeInUseError, match=rf"process {proc.pid}"):
            Directory(32, 16, 16, np.uint8, path, 8, 8, 8).create()
        assert same(Directory.open(path).read_block(0, 0, 0), block(1))  # readers are never refused
    finally:
        kill(proc)
    w = Directory.open(path, "r+")  # its process is dead: the session is taken over, its blocks committed
    w.write_block(block(9), 16, 0, 0)
    w.close()
    r = Directory.open(path)
    assert list(r.block_origins()) == [(0, 0, 0), (16, 0, 0)]
    assert same(r.read_block(0, 0, 0), block(1))
    assert not journal_files(str(path)) and not os.path.exists(session_file_name(str(path)))


SIMULTANEOUS = r"""
import sys
from blockfs_tasks.core import Directory, VolumeInUseError

sys.stdin.readline()  # all start together
try:
    d = Directory.open(sys.argv[1], "r+")
except VolumeInUseError:
    print("busy", flush=True)
else:
    print("open", flush=True)
    sys.stdin.readline()
    d.close()
"""


def test_simultaneous_opens_one_wins_the_others_are_told_busy(tmp_path: Path) -> None:
    """Opens released at the same moment: exactly one session, the rest a clear busy error (no raw OSError)."""
    path = new_volume(tmp_path / "v.blockfs")
    procs = [
        subprocess.Popen([sys.executable, "-c", SIMULTANEOUS, str(path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    answers = []
    for p in procs:
        assert p.stdout is not None
        answers.append(p.stdout.readline().strip())
    for p in procs:
        out, err = p.communicate("done\n", timeout=SCRIPT_TIMEOUT)
        assert p.returncode == 0, err
    assert sorted(answers) == ["busy"] * 5 + ["open"]
    assert not os.path.exists(session_file_name(str(path)))


# ------------------------------------------------- processes of one session
def _open_and_write(path: str, x: int) -> None:
    d = Directory.open(path, "r+")  # a worker of the session opening the volume itself joins the session
    d.write_block(block(x + 1), x, 0, 0)
    d.close()  # a worker's close only flushes its own block file


def test_a_worker_of_the_session_may_open_r_plus_and_joins(tmp_path: Path) -> None:
    path = new_volume(tmp_path / "v.blockfs")
    d = Directory.open(path, "r+")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.starmap(_open_and_write, [(str(path), x) for x in (0, 8, 16, 24)])
    d.close()
    r = Directory.open(path)
    assert list(r.block_origins()) == [(0, 0, 0), (8, 0, 0), (16, 0, 0), (24, 0, 0)]
    for x in (0, 8, 16, 24):
        assert same(r.read_block(x, 0, 0), block(x + 1))


def test_each_writer_process_has_its_own_journal(tmp_path: Path) -> None:
    """One writer per file: journal k holds only entries of block file k (nothing shared across processes)."""
    path = tmp_path / "v.blockfs"
    d = Directory(32, 32, 32, np.int32, path, 8, 8, 8)
    d.create()
    origins = list(d.grid.origins())
    d.write_block(random_block((8, 8, 8), "int32", 0), *origins[0])
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.starmap(_write_seeded, [(d, *o) for o in origins[1:]])
    journals = journal_files(str(path))
    assert len(journals) >= 2 and journals[0] == journal_name(str(path), 0)
    for k, journal in enumerate(journals):
        assert journal == journal_name(str(path), k)
        assert set(fmt.read_fragment(journal).entries["file"]) <= {k}
    assert sum(len(fmt.read_fragment(j).entries) for j in journals) == len(origins)
    d.close()
    r = Directory.open(path)
    for o in origins:
        assert same(r.read_block(*o), random_block((8, 8, 8), "int32", origins.index(o)))


def _write_seeded(d: Directory, x: int, y: int, z: int) -> None:
    i = list(d.grid.origins()).index((x, y, z))
    d.write_block(random_block((8, 8, 8), "int32", i), x, y, z)


# ------------------------------------------------------- stale and foreign
def test_a_dropped_directory_leaves_a_stale_session_in_its_own_process(tmp_path: Path) -> None:
    path = new_volume(tmp_path / "v.blockfs")
    a = Directory.open(path, "r+")
    a.write_block(block(5), 0, 0, 0)
    del a  # never closed; the process lives on
    b = Directory.open(path, "r+")
    b.close()
    assert same(Directory.open(path).read_block(0, 0, 0), block(5))


def test_create_replaces_a_session_of_the_same_process_and_the_old_close_publishes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    old = Directory(32, 16, 16, np.uint8, path, 8, 8, 8)
    old.create()
    old.write_block(block(1), 0, 0, 0)
    new = Directory(32, 16, 16, np.uint8, path, 8, 8, 8)
    new.create()
    new.write_block(block(2), 8, 0, 0)
    new.close()
    with pytest.raises(VolumeInUseError, match="taken over"):
        old.close()
    assert list(Directory.open(path).block_origins()) == [(8, 0, 0)]


def write_session_file(path: Path, **fields: object) -> None:
    info = {"host": socket.gethostname(), "machine": machine_token(), "pid": _dead_pid(), "process_start": 1,
            "since": "2026-01-01T00:00:00+00:00", "token": "feedfacefeedface", **fields}
    Path(session_file_name(str(path))).write_text(json.dumps(info))


def test_a_dead_process_session_on_this_machine_is_taken_over(tmp_path: Path) -> None:
    path = new_volume(tmp_path / "v.blockfs")
    write_session_file(path)
    Directory.open(path, "r+").close()
    write_session_file(path, pid=os.getppid(), process_start=1)  # a live pid, but another process's start time
    Directory.open(path, "r+").close()
    assert not os.path.exists(session_file_name(str(path)))


@pytest.mark.parametrize("where", [{"host": "another-host"}, {"machine": "00000000"}])
def test_a_session_of_another_machine_is_never_taken_over(tmp_path: Path, where: dict) -> None:
    """Another host (or a reboot / a container sharing the host name): its process cannot be checked."""
    path = new_volume(tmp_path / "v.blockfs")
    write_session_file(path, **where)
    with pytest.raises(VolumeInUseError) as e:
        Directory.open(path, "r+")
    if "host" in where:
        assert "another-host" in str(e.value) and f"remove {session_file_name(str(path))}" in str(e.value)
    assert read_session(str(path)).token == "feedfacefeedface"  # type: ignore[union-attr]  # the session file exists


def test_the_session_file_names_its_process(tmp_path: Path) -> None:
    path = new_volume(tmp_path / "v.blockfs")
    d = Directory.open(path, "r+")
    info = read_session(str(path))
    assert info is not None
    assert (info.host, info.machine, info.pid) == (socket.gethostname(), machine_token(), os.getpid())
    d.close()
    assert read_session(str(path)) is None


# ----------------------------------------------------- temporaries (item 12)
def test_temporary_names_carry_host_machine_and_pid(tmp_path: Path) -> None:
    name = temporary_name(str(tmp_path / "v.blockfs"))
    assert name == f"{tmp_path / 'v.blockfs'}{TEMP_MARKER}{socket.gethostname()}-{machine_token()}-{os.getpid()}"
    assert len(machine_token()) == 8


def test_writing_sessions_sweep_dead_temporaries_of_their_volume(tmp_path: Path) -> None:
    path = new_volume(tmp_path / "v.blockfs")
    host, token, dead = socket.gethostname(), machine_token(), _dead_pid()
    dead_ones = [
        f"v.blockfs{TEMP_MARKER}{host}-{token}-{dead}",  # a directory being published
        f"v.blockfs.3.journal{TEMP_MARKER}{host}-{token}-{dead}",  # a journal being created
        f"v.blockfs.session{TEMP_MARKER}{host}-{dead}",  # the format before the machine token
    ]
    kept = [
        f"v.blockfs{TEMP_MARKER}{host}-{token}-{os.getppid()}",  # a live process
        f"v.blockfs{TEMP_MARKER}{host}-00000000-{dead}",  # another boot or container: cannot be judged
        f"v.blockfs{TEMP_MARKER}other-host-{dead}",
    ]
    for name in dead_ones + kept:
        (tmp_path / name).write_bytes(b"x")
    Directory.open(path)  # a reader changes nothing
    assert all((tmp_path / n).exists() for n in dead_ones)
    Directory.open(path, "r+").close()
    assert sorted(f for f in os.listdir(tmp_path) if TEMP_MARKER in f) == sorted(kept)
    for name in dead_ones:
        (tmp_path / name).write_bytes(b"x")
    Directory(32, 16, 16, np.uint8, path, 8, 8, 8).create()
    assert sorted(f for f in os.listdir(tmp_path) if TEMP_MARKER in f) == sorted(kept)


def test_a_shared_journal_left_by_an_earlier_version_is_replayed(tmp_path: Path) -> None:
    """Before one journal per writer, a crashed session left ``<directory>.journal``: its blocks still count."""
    from blockfs_tasks.core.blockfile import legacy_journal_name
    from blockfs_tasks.core.codec import checksum

    path = new_volume(tmp_path / "v.blockfs")
    d = Directory.open(path)
    frame = d.spec.codec.encode(block(7))
    (tmp_path / "v.blockfs.0").write_bytes(frame)
    entry = fmt.encode_entry(d.grid.position(8, 0, 0), 0, 0, len(frame), checksum(frame))
    Path(legacy_journal_name(str(path))).write_bytes(fmt.encode_fragment_header(d.spec) + entry)
    assert same(Directory.open(path).read_block(8, 0, 0), block(7))
    w = Directory.open(path, "r+")
    w.write_block(block(3), 0, 0, 0)
    w.close()
    r = Directory.open(path)
    assert list(r.block_origins()) == [(0, 0, 0), (8, 0, 0)]
    assert same(r.read_block(8, 0, 0), block(7)) and same(r.read_block(0, 0, 0), block(3))
    assert sorted(os.listdir(tmp_path)) == ["v.blockfs", "v.blockfs.0", "v.blockfs.1"]


def test_a_read_only_folder_refuses_a_writing_session_clearly(tmp_path: Path) -> None:
    from blockfs_tasks.core import ReadOnlyError

    path = new_volume(tmp_path / "v.blockfs")
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(ReadOnlyError, match="cannot start a writing session"):
            Directory.open(path, "r+")
        assert Directory.open(path).shape == (16, 16, 32)
    finally:
        os.chmod(tmp_path, 0o755)
