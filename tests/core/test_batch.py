"""The batch writer (core.batch) on its own: BatchWriter, batch_complete, build_directory's checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from blockfs_tasks.core import Directory
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.batch import BatchWriter, batch_complete, build_directory, remove_other_batches
from blockfs_tasks.core.codec import BlockCodec, checksum
from blockfs_tasks.core.errors import (
    BlockDTypeError,
    BlockShapeError,
    FormatError,
    MissingFileError,
    OutOfBoundsError,
    TruncatedFileError,
)
from blockfs_tasks.core.grid import BlockGrid
from blockfs_tasks.core.naming import block_file_name, fragment_name

from .helpers import random_block, same

SPEC = fmt.VolumeSpec(BlockGrid((8, 8, 8), (4, 4, 4)), np.dtype("uint16"))


def write_batch(path: Path, number: int, origins: list[tuple[int, int, int]], seed: int = 0) -> dict:
    """Batch ``number`` holding a block at each origin (x, y, z); return {origin: block}."""
    blocks = {o: random_block((4, 4, 4), "uint16", (seed, number, *o)) for o in origins}
    with BatchWriter(str(path), SPEC, number) as w:
        for (x, y, z), block in blocks.items():
            w.write_block(block, x, y, z)
    return blocks


def raw_fragment(path: Path, number: int, entries: list[tuple[int, int, int, int, int]], spec=SPEC) -> None:
    """Write fragment ``number`` by hand: entries of (position, file, offset, size, crc)."""
    body = b"".join(fmt.encode_entry(*e) for e in entries)
    Path(fragment_name(str(path), number)).write_bytes(fmt.encode_fragment_header(spec) + body)


def test_batches_build_a_volume_and_the_later_batch_wins(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    first = write_batch(path, 0, [(0, 0, 0), (4, 0, 0)])
    second = write_batch(path, 1, [(4, 0, 0), (0, 4, 4)], seed=1)
    assert build_directory(str(path), SPEC, [0, 1]) == 3
    d = Directory.open(path)
    assert same(d.read_block(0, 0, 0), first[(0, 0, 0)])
    assert same(d.read_block(4, 0, 0), second[(4, 0, 0)])
    assert same(d.read_block(0, 4, 4), second[(0, 4, 4)])
    assert not d.has_block(4, 4, 4)


def test_a_batch_entirely_superseded_is_not_listed(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_batch(path, 0, [(0, 0, 0)])
    write_batch(path, 1, [(0, 0, 0)], seed=1)
    build_directory(str(path), SPEC, [0, 1])
    assert fmt.read_directory(path).block_files == ["v.blockfs.1"]


def test_write_blocks_on_threads_matches_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    items = [(random_block((4, 4, 4), "uint16", o), *o) for o in SPEC.grid.origins()]
    with BatchWriter(str(path), SPEC, 0) as w:
        assert w.write_blocks(iter(items), n_threads=3) == 8
    build_directory(str(path), SPEC, [0])
    d = Directory.open(path)
    for block, x, y, z in items:
        assert same(d.read_block(x, y, z), block)


def test_an_error_discards_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    with pytest.raises(RuntimeError), BatchWriter(str(path), SPEC, 0) as w:
        w.write_block(np.zeros((4, 4, 4), "uint16"), 0, 0, 0)
        raise RuntimeError("stop")
    assert os.listdir(tmp_path) == []
    assert not batch_complete(str(path), 0)


@pytest.mark.parametrize(
    ("block", "origin", "error"),
    [
        (np.zeros((4, 4, 3), "uint16"), (0, 0, 0), BlockShapeError),
        (np.full((4, 4, 4), -1, "int32"), (0, 0, 0), BlockDTypeError),
        (np.zeros((4, 4, 4), "uint16"), (2, 0, 0), OutOfBoundsError),
    ],
)
def test_bad_blocks_are_refused_as_by_the_live_writer(
    tmp_path: Path, block: np.ndarray, origin: tuple[int, int, int], error: type[Exception]
) -> None:
    with BatchWriter(str(tmp_path / "v.blockfs"), SPEC, 0) as w, pytest.raises(error):
        w.write_block(block, *origin)
    live = Directory(8, 8, 8, "uint16", tmp_path / "live.blockfs", 4, 4, 4)
    live.create()
    with pytest.raises(error):
        live.write_block(block, *origin)
    live.close()


def test_batch_complete_checks_spec_and_batch(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    with BatchWriter(str(path), SPEC, 3, batch={"z": [0, 4]}) as w:
        w.write_block(np.zeros((4, 4, 4), "uint16"), 0, 0, 0)
    assert batch_complete(str(path), 3)
    assert batch_complete(str(path), 3, SPEC, {"z": [0, 4]})
    assert not batch_complete(str(path), 3, SPEC, {"z": [0, 8]})
    other = fmt.VolumeSpec(SPEC.grid, SPEC.dtype, BlockCodec("lz4"))
    assert not batch_complete(str(path), 3, other)
    assert not batch_complete(str(path), 4)
    Path(fragment_name(str(path), 3)).write_bytes(b"not a fragment")
    assert not batch_complete(str(path), 3, SPEC)


# ------------------------------------------------------- build_directory's checks
def test_a_missing_fragment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        build_directory(str(tmp_path / "v.blockfs"), SPEC, [0])


def test_a_fragment_for_another_volume_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_batch(path, 0, [(0, 0, 0)])
    other = fmt.VolumeSpec(BlockGrid((8, 8, 12), (4, 4, 4)), np.dtype("uint16"))
    with pytest.raises(FormatError, match="written for another volume"):
        build_directory(str(path), other, [0])
    assert not path.exists()


def test_a_position_outside_the_volume_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    Path(block_file_name(str(path), 0)).write_bytes(bytes(100))
    raw_fragment(path, 0, [(SPEC.grid.n_blocks, 0, 0, 10, checksum(bytes(10)))])
    with pytest.raises(FormatError, match="corrupt fragment entries"):
        build_directory(str(path), SPEC, [0])
    assert not path.exists()


def test_entries_pointing_into_another_block_file_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    Path(block_file_name(str(path), 0)).write_bytes(bytes(100))
    raw_fragment(path, 0, [(0, 1, 0, 10, checksum(bytes(10)))])
    with pytest.raises(FormatError, match="outside block file 0"):
        build_directory(str(path), SPEC, [0])


def test_a_frame_beyond_its_block_files_end_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_batch(path, 0, [(0, 0, 0), (4, 0, 0)])
    block_file = Path(block_file_name(str(path), 0))
    block_file.write_bytes(block_file.read_bytes()[:-1])
    with pytest.raises(TruncatedFileError, match="block file is truncated"):
        build_directory(str(path), SPEC, [0])
    assert not path.exists()


def test_a_missing_block_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_batch(path, 0, [(0, 0, 0)])
    os.unlink(block_file_name(str(path), 0))
    with pytest.raises(MissingFileError, match="block file of a committed fragment is missing"):
        build_directory(str(path), SPEC, [0])


def test_a_torn_fragment_tail_is_an_error(tmp_path: Path) -> None:
    """A fragment is published whole, so a partial last entry means damage, not a crash mid-append."""
    path = tmp_path / "v.blockfs"
    write_batch(path, 0, [(0, 0, 0), (4, 0, 0)])
    fragment = Path(fragment_name(str(path), 0))
    fragment.write_bytes(fragment.read_bytes()[:-5])
    with pytest.raises(TruncatedFileError, match="partial entry"):
        build_directory(str(path), SPEC, [0])


def test_a_corrupt_fragment_entry_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_batch(path, 0, [(0, 0, 0), (4, 0, 0)])
    fragment = Path(fragment_name(str(path), 0))
    raw = bytearray(fragment.read_bytes())
    raw[-10] ^= 0xFF  # inside the last entry: its own CRC no longer matches
    fragment.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="corrupt fragment entries"):
        build_directory(str(path), SPEC, [0])


def test_a_failed_build_leaves_the_old_directory(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    blocks = write_batch(path, 0, [(0, 0, 0)])
    build_directory(str(path), SPEC, [0])
    before = path.read_bytes()
    raw_fragment(path, 1, [(0, 1, 0, 100, 0)])
    Path(block_file_name(str(path), 1)).write_bytes(bytes(10))
    with pytest.raises(TruncatedFileError):
        build_directory(str(path), SPEC, [0, 1])
    assert path.read_bytes() == before
    assert same(Directory.open(path).read_block(0, 0, 0), blocks[(0, 0, 0)])


def test_progress_is_called_once_per_fragment(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_batch(path, 0, [(0, 0, 0)])
    write_batch(path, 1, [])
    calls: list[int] = []
    build_directory(str(path), SPEC, [0, 1], progress=calls.append)
    assert calls == [1, 1]


def test_index_merger_newest_wins_and_checks_positions() -> None:
    """The one function that applies entries, for build_directory and a live session's journals alike."""
    from blockfs_tasks.core.merge import IndexMerger

    def entries(*rows: tuple[int, int, int, int]) -> np.ndarray:  # (position, file, offset, size)
        raw = b"".join(fmt.encode_entry(p, f, o, s, 0) for p, f, o, s in rows)
        return np.frombuffer(raw, fmt.ENTRY_DTYPE)

    merger = IndexMerger("/x/v.blockfs", np.zeros(SPEC.grid.n_blocks, fmt.INDEX_DTYPE), [])
    assert merger.apply(entries((1, 7, 0, 10), (1, 7, 10, 20), (2, 3, 0, 5)), "here") == 2
    assert merger.block_names == ["v.blockfs.3", "v.blockfs.7"]
    assert (int(merger.index[1]["offset"]), int(merger.index[1]["size"])) == (10, 20)
    assert int(merger.index[1]["file"]) == 2 and int(merger.index[2]["file"]) == 1
    with pytest.raises(FormatError, match="here: block position 8 outside the volume's 8 blocks"):
        merger.apply(entries((8, 7, 0, 1)), "here")
    with pytest.raises(FormatError, match="outside block file 3"):
        merger.apply(entries((0, 7, 0, 1)), "here", expected_file=3)
    merger.apply(entries((2, 7, 30, 5)), "here")
    merger.drop_unused_names()
    assert merger.block_names == ["v.blockfs.7"] and set(merger.index["file"][[1, 2]]) == {1}


def test_batches_of_another_plan_are_removed_once_the_directory_is_built(tmp_path: Path) -> None:
    """Only committed batches named by no directory go: a live writer's block file and the volume stay."""
    path = tmp_path / "v.blockfs"
    blocks = write_batch(path, 0, [(0, 0, 0)]) | write_batch(path, 1, [(4, 0, 0)])
    write_batch(path, 5, [(0, 4, 0)])  # committed under another plan: not part of this build
    live = Path(block_file_name(str(path), 6))
    live.write_bytes(b"")  # a live writer's block file (it has a journal, never a fragment)
    build_directory(str(path), SPEC, [0, 1])
    assert remove_other_batches(str(path), [0, 1]) == [5]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "v.blockfs", "v.blockfs.0", "v.blockfs.0.fragment", "v.blockfs.1", "v.blockfs.1.fragment", "v.blockfs.6",
    ]
    d = Directory.open(path)
    assert all(same(d.read_block(*o), b) for o, b in blocks.items())
    assert remove_other_batches(str(path), [0, 1]) == []


def test_no_batch_is_removed_beside_a_volume_with_versions(tmp_path: Path) -> None:
    path = tmp_path / "v.blockfs"
    write_batch(path, 0, [(0, 0, 0)])
    write_batch(path, 3, [(4, 0, 0)])
    build_directory(str(path), SPEC, [0])
    Path(f"{path}.HEAD").write_text("main\n")  # any version file: commits may name any block file
    assert remove_other_batches(str(path), [0]) == []
    assert Path(fragment_name(str(path), 3)).exists()
