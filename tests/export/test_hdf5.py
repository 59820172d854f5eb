"""HDF5 export: read back with h5py, reuse and errors, slab ranges, real ``mpiexec -n 2`` runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from blockfs_tasks.cli import hdf5_main
from blockfs_tasks.core import ChecksumError, ConfigurationError, Directory, OutOfBoundsError
from blockfs_tasks.core.errors import DestinationError
from blockfs_tasks.export.errors import DatasetMismatchError
from blockfs_tasks.export.hdf5 import (
    DONE_ATTR,
    completed_planes,
    export_hdf5,
    planes_complete,
)
from blockfs_tasks.export.hdf5_mpi import launched_by_mpiexec
from blockfs_tasks.export.planes import plane_slabs

REPO = Path(__file__).resolve().parents[2]
# A deadlocked MPI run must fail its test, not hang the suite.
MPI_TIMEOUT = 120

# (x, y, z) extent that is a multiple of no block size, and a block size (x, y, z).
EXTENT = (45, 37, 29)
BLOCK = (16, 16, 8)


def volume_data(shape_zyx: tuple[int, int, int], dtype: str, seed: int = 0) -> np.ndarray:
    """Deterministic (z, y, x) data over a good part of the dtype's range, compressible but not trivially."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.add.outer(np.arange(shape_zyx[0]), np.arange(shape_zyx[1])), np.arange(shape_zyx[2]))
    noise = rng.integers(0, 50, shape_zyx)
    values = ramp * 7 + noise
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        values = values % min(int(info.max), 1 << 20) + (info.min if dt.kind == "i" else 0)
        return values.astype(dt)
    return (values / 3.0 - 100).astype(dt)


def make_volume(
    path: Path,
    data: np.ndarray,
    block_xyz: tuple[int, int, int] = BLOCK,
    keep: object = None,
) -> Path:
    """Write ``data`` (z, y, x) as a blockfs volume; ``keep(x, y, z)`` False leaves a block absent."""
    z, y, x = data.shape
    bx, by, bz = block_xyz
    d = Directory(x, y, z, data.dtype, str(path), x_block_size=bx, y_block_size=by, z_block_size=bz)
    d.create()
    d.write_blocks(
        (
            (data[oz : oz + bz, oy : oy + by, ox : ox + bx], ox, oy, oz)
            for ox, oy, oz in d.grid.origins()
            if keep is None or keep(ox, oy, oz)
        ),
        2,
    )
    d.close()
    return path


def read_back(dest: Path, name: str) -> np.ndarray:
    with h5py.File(dest, "r") as f:
        return f[name][...]


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = volume_data(EXTENT[::-1], "uint16")
    return make_volume(tmp_path / "vol.blockfs", data), data


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "uint64", "float32", "float64"])
@pytest.mark.parametrize(
    "compression,opts,shuffle",
    [("gzip", None, False), ("gzip", 9, True), ("lzf", None, False), ("lzf", None, True), ("none", None, False)],
    ids=["gzip", "gzip9-shuffle", "lzf", "lzf-shuffle", "none"],
)
def test_round_trip_non_block_multiple_extent(
    tmp_path: Path, dtype: str, compression: str, opts: int | None, shuffle: bool
) -> None:
    data = volume_data(EXTENT[::-1], dtype, seed=3)
    src = make_volume(tmp_path / "vol.blockfs", data)
    dest = tmp_path / "out.h5"
    result = export_hdf5(src, dest, "/volume", compression=compression, compression_opts=opts, shuffle=shuffle)
    with h5py.File(dest, "r") as f:
        dset = f["volume"]
        assert dset.shape == data.shape and dset.dtype == data.dtype
        assert dset.chunks == (8, 16, 16)
        assert dset.compression == (None if compression == "none" else compression)
        assert dset.shuffle == shuffle
        assert dset.fillvalue == 0
        if opts is not None:
            assert dset.compression_opts == opts
        np.testing.assert_array_equal(dset[...], data)
        assert dset.id.get_num_chunks() == 3 * 3 * 4
        assert [tuple(r) for r in dset.attrs[DONE_ATTR]] == [(0, 29)]
    assert result.chunks_written == 36
    assert result.raw_bytes == data.nbytes


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_incompressible_chunks_are_stored_unfiltered_and_read_back(tmp_path: Path, compression: str) -> None:
    data = np.random.default_rng(1).integers(0, 2**16, (16, 32, 32), dtype=np.uint16)
    src = make_volume(tmp_path / "vol.blockfs", data, (32, 32, 16))
    dest = tmp_path / "out.h5"
    export_hdf5(src, dest, "v", compression=compression, shuffle=False)
    with h5py.File(dest, "r") as f:
        mask, stored = f["v"].id.read_direct_chunk((0, 0, 0))
        assert mask == 1 and len(stored) == data.nbytes  # the compressor was skipped, as HDF5 does
        np.testing.assert_array_equal(f["v"][...], data)


def test_gzip_chunks_from_zlib_and_from_libdeflate_both_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zlib

    from blockfs_tasks.export import hdf5_chunks

    data = volume_data(EXTENT[::-1], "uint16", seed=4)
    src = make_volume(tmp_path / "vol.blockfs", data)
    export_hdf5(src, tmp_path / "fast.h5", "v", compression_opts=3, shuffle=True)
    monkeypatch.setattr(hdf5_chunks, "deflate_function", lambda: zlib.compress)
    export_hdf5(src, tmp_path / "zlib.h5", "v", compression_opts=3, shuffle=True)
    with h5py.File(tmp_path / "zlib.h5", "r") as f:  # zlib's own stream, byte for byte
        raw = np.ascontiguousarray(data[:8, :16, :16]).view(np.uint8).reshape(-1, 2).T.tobytes()
        assert f["v"].id.read_direct_chunk((0, 0, 0)) == (0, zlib.compress(raw, 3))
    np.testing.assert_array_equal(read_back(tmp_path / "fast.h5", "v"), data)
    np.testing.assert_array_equal(read_back(tmp_path / "zlib.h5", "v"), data)


def test_sparse_volume_reads_zeros_and_stores_no_chunk_for_absent_blocks(tmp_path: Path) -> None:
    data = volume_data(EXTENT[::-1], "uint16", seed=5)

    def keep(x: int, y: int, z: int) -> bool:
        return (x // 16 + y // 16 + z // 8) % 3 == 0

    src = make_volume(tmp_path / "vol.blockfs", data, keep=keep)
    expected = np.zeros_like(data)
    n_present = 0
    for x, y, z in Directory.open(src).grid.origins():
        if keep(x, y, z):
            n_present += 1
            expected[z : z + 8, y : y + 16, x : x + 16] = data[z : z + 8, y : y + 16, x : x + 16]
    dest = tmp_path / "out.h5"
    result = export_hdf5(src, dest, "sparse", compression="gzip", compression_opts=1)
    assert result.chunks_written == n_present < 36
    np.testing.assert_array_equal(read_back(dest, "sparse"), expected)
    with h5py.File(dest, "r") as f:
        assert f["sparse"].id.get_num_chunks() == n_present


def test_volume_smaller_than_one_block(tmp_path: Path) -> None:
    data = volume_data((5, 6, 7), "uint16")
    src = make_volume(tmp_path / "vol.blockfs", data, (64, 64, 64))
    dest = tmp_path / "out.h5"
    export_hdf5(src, dest, "tiny")
    with h5py.File(dest, "r") as f:
        assert f["tiny"].chunks == (5, 6, 7)
        np.testing.assert_array_equal(f["tiny"][...], data)


# ------------------------------------------------------------------ existing files
def test_other_datasets_in_an_existing_file_are_kept(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    src, data = volume
    dest = tmp_path / "out.h5"
    other = np.arange(12, dtype=np.int16).reshape(3, 4)
    with h5py.File(dest, "w") as f:
        f.create_dataset("keep/me", data=other)
        f.attrs["note"] = "hello"
    export_hdf5(src, dest, "keep/volume")
    with h5py.File(dest, "r") as f:
        np.testing.assert_array_equal(f["keep/me"][...], other)
        assert f.attrs["note"] == "hello"
        np.testing.assert_array_equal(f["keep/volume"][...], data)


def test_same_dataset_is_reused_and_a_second_export_gives_the_same_content(
    tmp_path: Path, volume: tuple[Path, np.ndarray]
) -> None:
    src, data = volume
    dest = tmp_path / "out.h5"
    export_hdf5(src, dest, "v", compression="lzf", shuffle=True)
    export_hdf5(src, dest, "v", compression="lzf", shuffle=True)
    np.testing.assert_array_equal(read_back(dest, "v"), data)
    assert completed_planes(dest, "v", src) == [(0, 29)]


def test_reused_dataset_loses_chunks_of_blocks_absent_from_the_new_source(tmp_path: Path) -> None:
    full = volume_data(EXTENT[::-1], "uint16", seed=1)
    b_data = volume_data(EXTENT[::-1], "uint16", seed=2)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_volume(tmp_path / "a" / "vol.blockfs", full)
    b = make_volume(tmp_path / "b" / "vol.blockfs", b_data, keep=lambda x, y, z: x == 0)
    dest = tmp_path / "out.h5"
    export_hdf5(a, dest, "v")
    export_hdf5(b, dest, "v")
    expected = np.zeros_like(b_data)
    expected[:, :, :16] = b_data[:, :, :16]
    np.testing.assert_array_equal(read_back(dest, "v"), expected)
    assert completed_planes(dest, "v", a) == []  # the record now belongs to b
    assert completed_planes(dest, "v", b) == [(0, 29)]


@pytest.mark.parametrize(
    "existing,needle",
    [
        (dict(shape=(29, 37, 44), dtype="uint16", chunks=(8, 16, 16)), "(29, 37, 44)"),
        (dict(shape=(29, 37, 45), dtype="uint8", chunks=(8, 16, 16)), "uint8"),
        (dict(shape=(29, 37, 45), dtype="uint16", chunks=(8, 8, 8)), "(8, 8, 8)"),
        (dict(shape=(29, 37, 45), dtype="uint16", chunks=(8, 16, 16), compression="lzf"), "lzf"),
        (
            dict(shape=(29, 37, 45), dtype="uint16", chunks=(8, 16, 16), compression="gzip", compression_opts=9),
            "level 9",
        ),
    ],
    ids=["shape", "dtype", "chunks", "filter", "level"],
)
def test_same_name_with_another_layout_is_a_clear_error(
    tmp_path: Path, volume: tuple[Path, np.ndarray], existing: dict, needle: str
) -> None:
    src, _ = volume
    dest = tmp_path / "out.h5"
    with h5py.File(dest, "w") as f:
        f.create_dataset("v", **existing)
    with pytest.raises(DatasetMismatchError) as info:
        export_hdf5(src, dest, "v", compression="gzip")
    message = str(info.value)
    assert str(dest) in message and "'v'" in message
    assert needle in message  # what is there...
    assert "(29, 37, 45)" in message and "uint16" in message and "gzip level 4" in message  # ...and what was wanted
    with h5py.File(dest, "r") as f:  # left alone
        assert f["v"].shape == existing["shape"]


def test_name_of_a_group_is_a_clear_error(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    src, _ = volume
    dest = tmp_path / "out.h5"
    with h5py.File(dest, "w") as f:
        f.create_group("g")
    with pytest.raises(DatasetMismatchError, match="is a group, not a dataset"):
        export_hdf5(src, dest, "g")


# ------------------------------------------------------------------ bad destinations and options
def test_dest_in_a_missing_folder_is_created(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    # Like the TIFF and JPEG 2000 exports (issue 8 item 6): the first command of configs/tiff_stack.cfg.
    src, data = volume
    export_hdf5(src, tmp_path / "new" / "deeper" / "out.h5", "v")
    np.testing.assert_array_equal(read_back(tmp_path / "new" / "deeper" / "out.h5", "v"), data)


def test_dest_folder_that_cannot_be_created(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DestinationError, match="cannot create the folder"):
        export_hdf5(volume[0], tmp_path / "afile" / "sub" / "out.h5", "v")


def test_dest_under_a_file_is_not_a_folder(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DestinationError, match="is not a folder"):
        export_hdf5(volume[0], tmp_path / "afile" / "out.h5", "v")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_dest_in_an_unwritable_folder(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(DestinationError, match="not writable"):
            export_hdf5(volume[0], folder / "out.h5", "v")
    finally:
        folder.chmod(0o700)


def test_dest_that_is_not_hdf5(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    dest = tmp_path / "out.h5"
    dest.write_bytes(b"not an HDF5 file at all" * 100)
    with pytest.raises(DestinationError, match="cannot open the existing file as HDF5") as info:
        export_hdf5(volume[0], dest, "v")
    assert isinstance(info.value, OSError)
    assert dest.read_bytes() == b"not an HDF5 file at all" * 100
    assert not (tmp_path / "out.h5.blockfs-rollback").exists()


def test_dest_that_is_a_folder(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    with pytest.raises(DestinationError, match="is a folder"):
        export_hdf5(volume[0], tmp_path, "v")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(compression="bzip2"), "Expected a compression"),
        (dict(compression="gzip", compression_opts=12), "range \\(0, 9\\). Got 12"),
        (dict(compression="lzf", compression_opts=3), "takes no compression_opts"),
    ],
)
def test_bad_options(tmp_path: Path, volume: tuple[Path, np.ndarray], kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        export_hdf5(volume[0], tmp_path / "out.h5", "v", **kwargs)
    assert not (tmp_path / "out.h5").exists()


# ------------------------------------------------------------------ slab ranges and resume
def test_slabs_then_rest_equal_a_whole_export(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    src, data = volume
    whole, parts = tmp_path / "whole.h5", tmp_path / "parts.h5"
    export_hdf5(src, whole, "v", shuffle=True)
    slabs = plane_slabs(src, 2 * Directory.open(src).grid.block_shape[0])
    assert slabs == [(0, 16), (16, 29)]
    export_hdf5(src, parts, "v", shuffle=True, z0=8, z1=16)
    assert completed_planes(parts, "v") == [(8, 16)]
    assert planes_complete(parts, "v", 8, 16, src) and not planes_complete(parts, "v", 0, 16, src)
    export_hdf5(src, parts, "v", shuffle=True, z0=16)  # the rest, to the end
    export_hdf5(src, parts, "v", shuffle=True, z0=0, z1=8)
    assert completed_planes(parts, "v", src) == [(0, 29)]
    with h5py.File(whole, "r") as fw, h5py.File(parts, "r") as fp:
        np.testing.assert_array_equal(fp["v"][...], data)
        np.testing.assert_array_equal(fp["v"][...], fw["v"][...])
        for i in range(fw["v"].id.get_num_chunks()):  # byte for byte, chunk by chunk
            info = fw["v"].id.get_chunk_info(i)
            assert fp["v"].id.read_direct_chunk(info.chunk_offset) == fw["v"].id.read_direct_chunk(info.chunk_offset)


def test_interrupted_slab_is_not_recorded(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    src, data = volume
    dest = tmp_path / "out.h5"
    export_hdf5(src, dest, "v", z0=0, z1=16)
    export_hdf5(src, dest, "v", z0=16)
    assert completed_planes(dest, "v") == [(0, 29)]

    def crash(done: int, total: int) -> None:
        raise KeyboardInterrupt("killed")

    before = dest.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        export_hdf5(src, dest, "v", z0=16, progress=crash, n_threads=1)
    assert dest.read_bytes() == before, "an interrupted session is rolled back: the file is as it was"
    assert not Path(str(dest) + ".blockfs-rollback").exists()
    assert completed_planes(dest, "v", src) == [(0, 29)]
    dest.unlink()
    export_hdf5(src, dest, "v", z0=0, z1=16)
    with pytest.raises(KeyboardInterrupt):
        export_hdf5(src, dest, "v", z0=16, progress=crash, n_threads=1)
    assert completed_planes(dest, "v", src) == [(0, 16)]
    assert not planes_complete(dest, "v", 16, 29, src)
    export_hdf5(src, dest, "v", z0=16)  # resume
    assert completed_planes(dest, "v", src) == [(0, 29)]
    np.testing.assert_array_equal(read_back(dest, "v"), data)


def test_plane_range_must_lie_on_block_rows(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    with pytest.raises(OutOfBoundsError, match="block rows.*z block size 8"):
        export_hdf5(volume[0], tmp_path / "out.h5", "v", z0=4, z1=16)
    with pytest.raises(OutOfBoundsError, match="outside the volume"):
        export_hdf5(volume[0], tmp_path / "out.h5", "v", z0=0, z1=64)


def test_completed_planes_of_missing_things(tmp_path: Path) -> None:
    assert completed_planes(tmp_path / "missing.h5", "v") == []
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("plain", data=np.zeros(3))
    assert completed_planes(tmp_path / "f.h5", "nothing") == []
    assert completed_planes(tmp_path / "f.h5", "plain") == []


# ------------------------------------------------------------------ CLI and MPI
def test_cli_without_mpiexec(tmp_path: Path, volume: tuple[Path, np.ndarray], capsys: pytest.CaptureFixture) -> None:
    src, data = volume
    dest = tmp_path / "out.h5"
    rc = hdf5_main(
        [str(src), str(dest), "v", "--compression", "lzf", "--shuffle", "--silent", "--z0", "0", "--z1", "16"]
    )
    assert rc == 0
    assert "planes [0, 16)" in capsys.readouterr().err
    rc = hdf5_main([str(src), str(dest), "v", "--compression", "lzf", "--shuffle", "--silent", "--z0", "16"])
    assert rc == 0
    np.testing.assert_array_equal(read_back(dest, "v"), data)
    assert hdf5_main([str(src), str(tmp_path), "v", "--silent"]) == 1  # a folder
    assert "blockfs2hdf: error:" in capsys.readouterr().err


def test_launcher_detection() -> None:
    assert launched_by_mpiexec({"PMI_RANK": "0", "PMI_SIZE": "2"})
    assert launched_by_mpiexec({"OMPI_COMM_WORLD_SIZE": "2"})
    assert not launched_by_mpiexec({"HOME": "/root"})


def test_importing_the_exporter_initialises_no_mpi_and_no_luigi() -> None:
    code = (
        "import sys\n"
        "import blockfs_tasks.cli, blockfs_tasks.export.hdf5, blockfs_tasks.export.hdf5_mpi\n"
        "print(sorted(m for m in sys.modules if m.startswith(('mpi4py', 'luigi'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def _mpiexec() -> str:
    pytest.importorskip("mpi4py")
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpi4py is installed but no mpiexec was found beside python or on PATH (pip install mpich)")
    return found


def run_mpi(n: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``mpiexec -n N`` running the blockfs2hdf entry point, with a timeout against hangs."""
    code = "import sys; from blockfs_tasks.cli import hdf5_main; sys.exit(hdf5_main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [_mpiexec(), "-n", str(n), sys.executable, "-c", code, *args, "--silent"],
        capture_output=True,
        text=True,
        timeout=MPI_TIMEOUT,
        env=env,
        cwd=REPO,
    )


@pytest.mark.parametrize("threads", ["1", "2"])
def test_mpiexec_two_ranks_with_an_odd_number_of_blocks(tmp_path: Path, threads: str) -> None:
    data = volume_data((20, 40, 40), "uint16", seed=7)  # 3 x 3 x 3 = 27 blocks over 2 ranks
    src = make_volume(tmp_path / "vol.blockfs", data, (16, 16, 8))
    dest = tmp_path / "out.h5"
    done = run_mpi(
        2, str(src), str(dest), "v", "--compression", "gzip", "--compression-opts", "3", "--shuffle",
        "--n-threads", threads
    )
    assert done.returncode == 0, done.stderr
    assert "27 chunks" in done.stderr and "on 2 rank(s)" in done.stderr
    assert done.stderr.count("planes [") == 1  # rank 0 alone reports
    with h5py.File(dest, "r") as f:
        np.testing.assert_array_equal(f["v"][...], data)
        assert f["v"].compression_opts == 3 and f["v"].shuffle
        assert [tuple(r) for r in f["v"].attrs[DONE_ATTR]] == [(0, 20)]


def test_mpiexec_slabs_of_a_sparse_volume_lzf(tmp_path: Path) -> None:
    data = volume_data(EXTENT[::-1], "float32", seed=9)

    def keep(x: int, y: int, z: int) -> bool:  # 9 + 1 blocks
        return z == 8 or (x, y, z) == (32, 32, 24)

    src = make_volume(tmp_path / "vol.blockfs", data, keep=keep)
    expected = np.zeros_like(data)
    expected[8:16] = data[8:16]
    expected[24:, 32:, 32:] = data[24:, 32:, 32:]
    dest = tmp_path / "out.h5"
    for z0, z1 in [(0, 16), (16, 29)]:
        done = run_mpi(2, str(src), str(dest), "v", "--compression", "lzf", "--z0", str(z0), "--z1", str(z1))
        assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(read_back(dest, "v"), expected)
    assert completed_planes(dest, "v", src) == [(0, 29)]


def test_mpiexec_more_ranks_than_blocks(tmp_path: Path) -> None:
    data = volume_data((8, 16, 40), "uint8")  # 3 blocks over 4 ranks: some ranks get none
    src = make_volume(tmp_path / "vol.blockfs", data, (16, 16, 8))
    dest = tmp_path / "out.h5"
    done = run_mpi(4, str(src), str(dest), "v")
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(read_back(dest, "v"), data)


def test_mpiexec_setup_error_is_reported_by_every_rank_without_hanging(tmp_path: Path) -> None:
    data = volume_data((8, 16, 16), "uint16")
    src = make_volume(tmp_path / "vol.blockfs", data, (16, 16, 8))
    (tmp_path / "afile").write_text("x")
    done = run_mpi(2, str(src), str(tmp_path / "afile" / "out.h5"), "v")
    assert done.returncode == 1
    assert "is not a folder" in done.stderr  # rank 0's own error
    assert "rank 0 of 2 failed while preparing the export" in done.stderr  # what rank 1 says


def corrupt_block(src: Path, x: int, y: int, z: int) -> None:
    """Flip a byte inside the stored block at (x, y, z): reading it raises ChecksumError."""
    d = Directory.open(src)
    entry = d.index[d.grid.position(x, y, z)]
    path = d.block_filenames[int(entry["file"]) - 1]
    with open(path, "r+b") as f:
        f.seek(int(entry["offset"]) + int(entry["size"]) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumError):
        Directory.open(src).read_block(x, y, z)


def test_mpiexec_worker_failure_stops_every_rank_and_records_nothing(tmp_path: Path) -> None:
    data = volume_data((8, 16, 64), "uint16")  # 4 blocks: all in rank 1's first hand-out
    src = make_volume(tmp_path / "vol.blockfs", data, (16, 16, 8))
    corrupt_block(src, 16, 0, 0)
    dest = tmp_path / "out.h5"
    done = run_mpi(2, str(src), str(dest), "v", "--n-threads", "1")
    assert done.returncode == 1, done.stderr
    assert "rank 1 of 2 failed while exporting: ChecksumError" in done.stderr
    assert completed_planes(dest, "v", src) == []


def test_mpiexec_failure_late_in_the_run_stops_every_rank(tmp_path: Path) -> None:
    data = volume_data((32, 48, 48), "uint16")  # 36 blocks; the last one is handed out late, to either rank
    src = make_volume(tmp_path / "vol.blockfs", data, (16, 16, 8))
    corrupt_block(src, 32, 32, 24)
    dest = tmp_path / "out.h5"
    done = run_mpi(2, str(src), str(dest), "v", "--n-threads", "1")
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("checksum mismatch") >= 2  # the failing rank's own error, and the other's report of it
    assert "of 2 failed while exporting: ChecksumError" in done.stderr
    assert completed_planes(dest, "v", src) == []


# ------------------------------------------------------------------ crash safety (see also test_hdf5_kill.py)
def test_a_second_writer_of_the_same_file_is_refused(tmp_path: Path, volume: tuple[Path, np.ndarray]) -> None:
    from blockfs_tasks.export.rollback import JournaledFile

    src, data = volume
    dest = tmp_path / "out.h5"
    export_hdf5(src, dest, "v", z0=0, z1=16)
    holder = JournaledFile(dest)
    try:
        with pytest.raises(DestinationError, match="another process is writing"):
            export_hdf5(src, dest, "v", z0=16)
    finally:
        holder.close()
    export_hdf5(src, dest, "v", z0=16)
    np.testing.assert_array_equal(read_back(dest, "v"), data)


def test_a_reader_sees_the_file_as_before_an_unfinished_session(
    tmp_path: Path, volume: tuple[Path, np.ndarray]
) -> None:
    """A dead writer's journal: completed_planes reads the rolled-back view, without writing."""
    from blockfs_tasks.export.rollback import JournaledFile

    src, data = volume
    dest = tmp_path / "out.h5"
    export_hdf5(src, dest, "v", z0=0, z1=16)
    before = dest.read_bytes()
    raw = JournaledFile(dest)  # a session that overwrites the start and truncates, then "dies"
    raw.seek(0)
    raw.write(b"\xff" * 4096)
    raw.truncate(5000)
    raw.close()
    assert dest.read_bytes()[:4] == b"\xff" * 4
    assert completed_planes(dest, "v", src) == [(0, 16)]
    assert dest.read_bytes()[:4] == b"\xff" * 4  # the reader did not repair
    export_hdf5(src, dest, "v", z0=16)  # the next writer rolls back first
    assert completed_planes(dest, "v", src) == [(0, 29)]
    np.testing.assert_array_equal(read_back(dest, "v"), data)
    assert len(before) > 5000
