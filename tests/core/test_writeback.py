"""Early writeback (issue 15 item 3): block files go to disk while the writer goes on, fsync still seals them.

A writer used to leave all its bytes dirty until ``close()``'s fsync, which
then waited for the whole file. Now each 8 MiB appended is handed to the
kernel at once (``sync_file_range``); the fsync before publishing stays.
The system calls are observed with strace on the block file only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from blockfs_tasks.core import Directory
from blockfs_tasks.core.blockfile import block_file_name
from blockfs_tasks.core.writeback import STEP, Writeback

from .faults import need_strace
from .helpers import SCRIPT_TIMEOUT

# 24 random 64^3 uint16 blocks (12 MiB, incompressible) from one process, live or as a batch.
WRITER = r"""
import sys
import numpy as np
from blockfs_tasks.core import Directory
from blockfs_tasks.core.batch import BatchWriter

path, how = sys.argv[1], sys.argv[2]
d = Directory(256, 256, 128, np.uint16, path, 64, 64, 64, compression="zstd", compression_level=1)
rng = np.random.default_rng(7)
blocks = [(rng.integers(0, 65535, (64, 64, 64), np.uint16, endpoint=True), x, y, z)
          for z in (0, 64) for y in range(0, 256, 64) for x in range(0, 256, 64)][:24]
if how == "live":
    d.create()
    for block, x, y, z in blocks:
        d.write_block(block, x, y, z)
    d.close()
else:
    with BatchWriter(path, d.spec, 0) as batch:
        for block, x, y, z in blocks:
            batch.write_block(block, x, y, z)
"""

_OPEN = re.compile(r'^(?:(\d+) +)?openat\(AT_FDCWD, "([^"]+)", ([^)]*)\) += (\d+)')
_CALL = re.compile(r"^(?:(\d+) +)?(sync_file_range|fsync)\((\d+)(?:, (\d+), (\d+), ([A-Z_]+))?\) += (-?\d+)")


def traced_calls(tmp_path: Path, how: str, block_file: str) -> list[tuple[str, ...]]:
    """The sync_file_range and fsync calls the writer made on the block file (or its temporary name)."""
    strace = need_strace()
    script, log = tmp_path / "writer.py", tmp_path / "strace.log"
    script.write_text(textwrap.dedent(WRITER))
    done = subprocess.run(
        [strace, "-f", "-qq", "-o", str(log), "-e", "trace=openat,sync_file_range,fsync",
         sys.executable, "-B", str(script), str(tmp_path / "vol.blockfs"), how],
        cwd=tmp_path, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    mine: set[tuple[str | None, str]] = set()  # (pid, descriptor) open on the block file now
    calls = []
    for line in log.read_text().splitlines():
        opened = _OPEN.match(line)
        if opened:
            pid, name, fd = opened.group(1), opened.group(2), opened.group(4)
            if name == block_file or name.startswith(block_file + ".tmp-"):
                mine.add((pid, fd))
            else:
                mine.discard((pid, fd))
            continue
        match = _CALL.match(line)
        if match and (match.group(1), match.group(3)) in mine:
            calls.append(tuple(g for g in match.groups()[1:] if g is not None))
    return calls


def check_calls(calls: list[tuple[str, ...]]) -> None:
    """Writeback of consecutive ranges of >= STEP bytes from offset 0, all accepted, then the sealing fsync(s)."""
    ranges = [c for c in calls if c[0] == "sync_file_range"]
    assert ranges, f"no early writeback was requested: {calls}"
    fsyncs = calls[len(ranges):]
    assert calls[: len(ranges)] == ranges, f"every writeback request comes before the fsync: {calls}"
    assert fsyncs and all(c[0] == "fsync" and c[-1] == "0" for c in fsyncs), calls
    start = 0
    for _, _fd, offset, nbytes, flags, result in ranges:
        assert (int(offset), flags, result) == (start, "SYNC_FILE_RANGE_WRITE", "0"), ranges
        assert int(nbytes) >= STEP
        start += int(nbytes)


def test_live_writer_starts_writeback_and_still_fsyncs(tmp_path: Path) -> None:
    path = str(tmp_path / "vol.blockfs")
    check_calls(traced_calls(tmp_path, "live", block_file_name(path, 0)))
    d = Directory.open(path)
    assert len(d) == 24
    rng = np.random.default_rng(7)
    first = rng.integers(0, 65535, (64, 64, 64), np.uint16, endpoint=True)
    assert np.array_equal(d.read_block(0, 0, 0), first)


def test_batch_writer_starts_writeback_and_still_fsyncs(tmp_path: Path) -> None:
    path = str(tmp_path / "vol.blockfs")
    check_calls(traced_calls(tmp_path, "batch", block_file_name(path, 0)))
    assert os.path.getsize(block_file_name(path, 0)) > 12 << 20


def test_writeback_turns_itself_off_where_the_kernel_refuses(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()  # sync_file_range on a pipe: ESPIPE
    try:
        writeback = Writeback(write_end, step=4)
        os.write(write_end, b"12345678")
        writeback.wrote(8)  # refused: no error, no more requests
        assert writeback.started == 0
        writeback.wrote(16)
        assert writeback.started == 0
    finally:
        os.close(read_end)
        os.close(write_end)


def test_writeback_requests_each_step_once(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as f:
        writeback = Writeback(f.fileno(), step=4096)
        f.write(b"x" * 3000)
        f.flush()
        writeback.wrote(3000)
        assert writeback.started == 0  # less than a step: nothing asked yet
        f.write(b"x" * 5000)
        f.flush()
        writeback.wrote(8000)
        assert writeback.started == (8000 if writeback.enabled else 0)
        writeback.rewound(5000)  # a failed append cut the file back
        assert writeback.started == (5000 if writeback.enabled else 0)
