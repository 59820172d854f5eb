"""The rollback journal under the HDF5 export: restore exactly, ignore a torn last record, never sweep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blockfs_tasks.core.errors import DestinationError
from blockfs_tasks.export.rollback import JournaledFile, RolledBackView, journal_path, roll_back


def session(path: Path) -> JournaledFile:
    """Overwrite, append past the end and truncate, without committing."""
    f = JournaledFile(path)
    f.seek(10)
    f.write(b"X" * 20)
    f.seek(0, os.SEEK_END)
    f.write(b"appended")
    f.seek(95)
    f.write(b"YYYYYYYYYY")  # crosses the old end
    f.truncate(50)
    return f


def test_an_uncommitted_session_is_undone_exactly(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    original = bytes(range(100))
    path.write_bytes(original)
    session(path).close()
    assert path.read_bytes() != original and os.path.exists(journal_path(str(path)))
    with RolledBackView(path) as view:
        assert view.read() == original
    assert roll_back(str(path)) and path.read_bytes() == original
    assert not os.path.exists(journal_path(str(path)))
    assert roll_back(str(path)) is False


def test_a_committed_session_stays(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(100))
    f = session(path)
    f.commit()
    f.close()
    assert path.read_bytes() == bytes(10) + b"X" * 20 + bytes(20)
    assert not os.path.exists(journal_path(str(path)))


def test_a_new_file_rolls_back_to_empty(tmp_path: Path) -> None:
    path = tmp_path / "new.bin"
    f = JournaledFile(path)
    f.write(b"half an HDF5 header")
    f.close()
    roll_back(str(path))
    assert path.read_bytes() == b""


@pytest.mark.parametrize("cut", [1, 7, 20, 21])
def test_a_torn_last_record_is_ignored(tmp_path: Path, cut: int) -> None:
    """A record cut short (the writer died while journaling) protects nothing: bytes it names were never written."""
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(100)))
    f = JournaledFile(path)
    f.seek(0)
    f.write(b"A" * 10)
    size_after_first = os.path.getsize(journal_path(str(path)))
    f.seek(50)
    f.write(b"B" * 10)
    f.close()
    with open(journal_path(str(path)), "r+b") as j:
        j.truncate(size_after_first + cut)
    roll_back(str(path))
    data = path.read_bytes()
    assert data[:10] == bytes(range(10)) and data[50:60] == b"B" * 10


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    first = JournaledFile(path)
    with pytest.raises(DestinationError, match="another process is writing"):
        JournaledFile(path)
    first.close()
    JournaledFile(path).close()


def test_the_journal_is_not_a_temporary(tmp_path: Path) -> None:
    from blockfs_tasks.core.atomic import sweep_temporaries

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    session(path).close()
    sweep_temporaries(str(tmp_path / "f"))
    assert os.path.exists(journal_path(str(path)))
