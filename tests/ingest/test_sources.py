"""Tests of blockfs_tasks.ingest.sources: every kind reads back what was written."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from blockfs_tasks.core.errors import BlockfsError
from blockfs_tasks.ingest.sources import (
    Source,
    SourceError,
    check_extent,
    open_source,
)
from blockfs_tasks.ingest.synthetic import SyntheticVolume

SHAPE = (7, 37, 29)  # (z, y, x), odd sizes so strips and tiles have ragged edges


def _volume(dtype: str = "uint16", shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def _ranges(shape: tuple[int, int, int], n: int = 12, seed: int = 1) -> list[tuple[int, int, int, int]]:
    """Random non-empty (z0, z1, y0, y1) plus the full range and single planes/rows."""
    rng = np.random.default_rng(seed)
    nz, ny, _ = shape
    out = [(0, nz, 0, ny), (nz - 1, nz, ny - 1, ny), (0, 1, 0, 1)]
    for _ in range(n):
        z0, z1 = sorted(rng.choice(nz + 1, 2, replace=False))
        y0, y1 = sorted(rng.choice(ny + 1, 2, replace=False))
        out.append((int(z0), int(z1), int(y0), int(y1)))
    return out


def _assert_reads(src: Source, expected: np.ndarray) -> None:
    assert src.shape == expected.shape
    assert all(type(n) is int for n in src.shape)
    assert src.dtype == expected.dtype.newbyteorder("=")
    for z0, z1, y0, y1 in _ranges(expected.shape):
        got = src.read(z0, z1, y0, y1)
        assert got.flags.c_contiguous
        assert got.dtype == src.dtype
        np.testing.assert_array_equal(got, expected[z0:z1, y0:y1])


@pytest.fixture
def no_whole_page_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any read that decodes a whole TIFF page instead of the strips/tiles it needs."""

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise AssertionError("a whole TIFF page was decoded")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", refuse)
    monkeypatch.setattr(tifffile.TiffFrame, "asarray", refuse)


def _write_stack(folder: Path, vol: np.ndarray, **kwargs: object) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for z, plane in enumerate(vol):
        path = folder / f"img_{z}.tif"
        tifffile.imwrite(path, plane, **kwargs)
        paths.append(path)
    return paths


# ------------------------------------------------------------- TIFF stacks
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"compression": "zlib", "rowsperstrip": 5, "predictor": True},
        {"compression": "zlib", "tile": (16, 16)},
        {"byteorder": ">"},
    ],
    ids=["raw", "zlib-strips", "zlib-tiles", "big-endian"],
)
@pytest.mark.usefixtures("no_whole_page_decode")
def test_tiff_stack_glob_reads_back(tmp_path: Path, kwargs: dict) -> None:
    vol = _volume()
    _write_stack(tmp_path / "planes", vol, **kwargs)
    with open_source(str(tmp_path / "planes" / "img_*.tif")) as src:
        assert src.kind == "tiff-stack"
        _assert_reads(src, vol)
        assert "tiff-stack" in src.describe() and "(7, 37, 29)" in src.describe()


def test_tiff_stack_folder_and_natural_order(tmp_path: Path) -> None:
    vol = _volume("uint8", (12, 5, 6))
    folder = tmp_path / "stack"
    folder.mkdir()
    for z, plane in enumerate(vol):  # img_2 must come before img_10; mixed extensions
        ext = ".tiff" if z % 2 else ".tif"
        tifffile.imwrite(folder / f"img_{z}{ext}", plane)
    (folder / "notes.txt").write_text("not a plane")
    src = open_source(folder)
    assert src.kind == "tiff-stack"
    assert [Path(f).name for f in src.files][:4] == ["img_0.tif", "img_1.tiff", "img_2.tif", "img_3.tiff"]
    assert Path(src.files[-1]).name == "img_11.tiff"
    _assert_reads(src, vol)


def test_tiff_stack_mismatched_plane_shape(tmp_path: Path) -> None:
    vol = _volume()
    paths = _write_stack(tmp_path, vol)
    tifffile.imwrite(paths[4], vol[4, :-1])
    src = open_source(str(tmp_path / "img_*.tif"))  # lazy: only plane 0 is opened
    np.testing.assert_array_equal(src.read(0, 4, 0, SHAPE[1]), vol[:4])
    with pytest.raises(SourceError, match=r"img_4\.tif.*shape \(y, x\) = \(36, 29\); expected \(37, 29\)"):
        src.read(2, 6, 0, 3)


def test_tiff_stack_mismatched_plane_dtype(tmp_path: Path) -> None:
    vol = _volume()
    paths = _write_stack(tmp_path, vol)
    tifffile.imwrite(paths[6], vol[6].astype(np.float32))
    src = open_source(str(tmp_path / "img_*.tif"))
    with pytest.raises(SourceError, match=r"img_6\.tif.*dtype float32; expected uint16"):
        src.read(0, 7, 0, 1)


def test_tiff_stack_multipage_plane_rejected(tmp_path: Path) -> None:
    vol = _volume()
    _write_stack(tmp_path, vol)
    tifffile.imwrite(tmp_path / "img_0.tif", vol[:2])
    with pytest.raises(SourceError, match=r"img_0\.tif: holds 2 pages"):
        open_source(str(tmp_path / "img_*.tif"))


def test_tiff_stack_rgb_plane_rejected(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "img_0.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(SourceError, match=r"img_0\.tif: has 3 samples per pixel"):
        open_source(str(tmp_path / "img_*.tif"))


def test_empty_glob_and_empty_folder(tmp_path: Path) -> None:
    pattern = str(tmp_path / "nothing_*.tif")
    with pytest.raises(SourceError, match="nothing_\\*\\.tif: glob pattern matches no files"):
        open_source(pattern)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty: folder holds no"):
        open_source(tmp_path / "empty")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff_plane(tmp_path: Path, compression: str | None) -> None:
    vol = _volume()
    paths = _write_stack(tmp_path, vol, compression=compression, rowsperstrip=8)
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) - 300])
    src = open_source(str(tmp_path / "img_*.tif"))
    np.testing.assert_array_equal(src.read(0, 3, 0, SHAPE[1]), vol[:3])
    with pytest.raises(SourceError, match=r"img_3\.tif"):
        src.read(0, 7, 0, SHAPE[1])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_check_reads_every_plane_header(tmp_path: Path, compression: str | None) -> None:
    vol = _volume()
    paths = _write_stack(tmp_path, vol, compression=compression, rowsperstrip=8)
    src = open_source(str(tmp_path / "img_*.tif"))
    src.check()  # a good stack
    data = paths[4].read_bytes()
    paths[4].write_bytes(data[: len(data) - 300])
    with pytest.raises(SourceError, match=r"img_4\.tif: plane z=4 is truncated"):
        src.check()
    paths[4].write_bytes(data)
    tifffile.imwrite(paths[5], vol[5, :-1])
    wrong_shape = r"img_5\.tif: plane z=5 has shape \(y, x\) = \(36, 29\); expected \(37, 29\)"
    with pytest.raises(SourceError, match=wrong_shape):
        src.check()
    tifffile.imwrite(paths[5], vol[5].astype(np.uint8))
    with pytest.raises(SourceError, match=r"img_5\.tif: plane z=5 has dtype uint8"):
        src.check()
    tifffile.imwrite(paths[5], vol[5:7])
    with pytest.raises(SourceError, match=r"img_5\.tif: holds 2 pages"):
        src.check()
    paths[6].write_bytes(b"II*\x00garbage")
    tifffile.imwrite(paths[5], vol[5])
    with pytest.raises(SourceError, match=r"img_6\.tif: holds 0 pages"):
        src.check()


def test_corrupt_tiff_plane(tmp_path: Path) -> None:
    vol = _volume()
    paths = _write_stack(tmp_path, vol, compression="zlib")
    paths[2].write_bytes(b"II*\x00garbage")
    src = open_source(str(tmp_path / "img_*.tif"))
    with pytest.raises(SourceError, match=r"img_2\.tif"):
        src.read(2, 3, 0, 1)
    paths[0].write_bytes(b"")  # the first plane is probed at open
    with pytest.raises(SourceError, match=r"img_0\.tif: not a readable TIFF"):
        open_source(str(tmp_path / "img_*.tif"))


def test_corrupt_compressed_strip(tmp_path: Path) -> None:
    vol = _volume()
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, vol, compression="zlib", rowsperstrip=8)
    with tifffile.TiffFile(path) as tf:
        offset = tf.pages[5].dataoffsets[1]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    src = open_source(path)
    np.testing.assert_array_equal(src.read(0, 5, 0, SHAPE[1]), vol[:5])
    np.testing.assert_array_equal(src.read(5, 6, 0, 8), vol[5:6, :8])  # strip 0 is intact
    with pytest.raises(SourceError, match=r"vol\.tif: cannot decode strip 1"):
        src.read(5, 6, 8, 9)


# Names natsort orders in ways a plain or numeric sort would not: ties (1 and 01), extensions split off, case,
# several numbers, dots and suffixes inside names, non-ASCII.
_TRICKY_NAMES = [
    "img_10.tif", "img_2.tif", "img_01.tif", "img_1.tif", "img_1.tiff", "img_1.TIF", "IMG_3.tif", "img_2.5.tif",
    "img_2_ch10.tif", "img_2_ch9.tif", "img.2.tif", "img.10.tif", "a.b.c.d.tif", "x.tif_1.tif", "x.tif_10.tif",
    "img 2.tif", "img_-1.tif", "img_1.ome.tif", "z_0001.tif", "z_1.tif", "ímg_3.tif", "img_10a.tif", "img_10.tiff",
    "img_1e3.tif", "plane_007.tif", "plane_7.tif", "plane_70.tif",
]


@pytest.mark.parametrize("folders", [["/data/scan"], [""], ["/data/scan", "/data/scan10", "/data/scan2", "rel/a"]],
                         ids=["one-folder", "relative", "several-folders"])
def test_stack_order_is_natsorts(folders: list[str]) -> None:
    import natsort

    from blockfs_tasks.ingest.sources.tiff import natural_order

    files = [os.path.join(folder, name) for folder in folders for name in _TRICKY_NAMES]
    for seed in range(4):  # the listing's order decides ties (img_1 / img_01) in both
        listing = list(np.random.default_rng(seed).permutation(files))
        assert list(natural_order(tuple(listing))) == natsort.natsorted(listing, alg=natsort.ns.PATH)


def test_stack_plane_changed_after_its_header_was_read(tmp_path: Path) -> None:
    """Headers are parsed once, but a plane rewritten since is parsed and checked again."""
    vol = _volume()
    paths = _write_stack(tmp_path, vol)
    src = open_source(str(tmp_path / "img_*.tif"))
    src.check()
    np.testing.assert_array_equal(src.read(0, 7, 0, SHAPE[1]), vol)
    tifffile.imwrite(paths[2], vol[3], compression="zlib", rowsperstrip=4)  # another layout, same shape
    tifffile.imwrite(paths[3], vol[2], byteorder=">")
    np.testing.assert_array_equal(src.read(2, 4, 5, 20), vol[[3, 2], 5:20])
    tifffile.imwrite(paths[4], vol[4, :-1])
    with pytest.raises(SourceError, match=r"img_4\.tif: plane z=4 has shape \(y, x\) = \(36, 29\)"):
        src.read(3, 5, 0, 2)
    tifffile.imwrite(paths[4], vol[4].astype(np.int16))
    with pytest.raises(SourceError, match=r"img_4\.tif: plane z=4 has dtype int16"):
        src.read(4, 5, 0, 2)
    tifffile.imwrite(paths[4], vol[4])
    np.testing.assert_array_equal(src.read(4, 5, 0, SHAPE[1]), vol[4:5])
    with open(paths[4], "r+b") as f:  # cut short after its header was parsed
        f.truncate(os.path.getsize(paths[4]) - 300)
    with pytest.raises(SourceError, match=r"img_4\.tif: truncated file: rows \[0, 37\)"):
        src.read(4, 5, 0, SHAPE[1])
    paths[4].unlink()
    with pytest.raises(SourceError, match=r"img_4\.tif: no such file"):
        src.read(4, 5, 0, 1)


def test_stack_checked_then_pickled_still_checks_changed_planes(tmp_path: Path) -> None:
    vol = _volume()
    paths = _write_stack(tmp_path, vol)
    src = open_source(str(tmp_path / "img_*.tif"))
    src.check()
    clone = pickle.loads(pickle.dumps(src))
    _assert_reads(clone, vol)
    tifffile.imwrite(paths[1], vol[1, :, :-1])
    with pytest.raises(SourceError, match=r"img_1\.tif: plane z=1 has shape \(y, x\) = \(37, 28\)"):
        pickle.loads(pickle.dumps(src)).read(0, 2, 0, 1)


def test_stack_headers_like_the_first_are_not_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vol = _volume()
    paths = _write_stack(tmp_path, vol, description="plane 0")  # same header bytes in every file
    tifffile.imwrite(paths[3], vol[3], description="plane 3")  # same size, other bytes where tifffile reads
    tifffile.imwrite(paths[5], vol[5], description="plane 5 is longer")  # another size
    opened: list[str] = []
    real = tifffile.TiffFile

    def counting(arg: object, *args: object, **kwargs: object) -> object:
        opened.append(str(getattr(arg, "name", arg)))
        return real(arg, *args, **kwargs)

    monkeypatch.setattr(tifffile, "TiffFile", counting)
    src = open_source(str(tmp_path / "img_*.tif"))
    opened.clear()
    src.check(n_threads=1)
    assert [Path(p).name for p in opened] == ["img_0.tif", "img_3.tif", "img_5.tif"]
    _assert_reads(src, vol)
    tifffile.imwrite(paths[6], vol[6, :, :-1], description="plane 0")  # the header differs: parsed, rejected
    with pytest.raises(SourceError, match=r"img_6\.tif: plane z=6 has shape \(y, x\) = \(37, 28\)"):
        src.read(6, 7, 0, 1)


def test_header_record_matches_files_tifffile_would_parse_alike(tmp_path: Path) -> None:
    import io

    from blockfs_tasks.ingest.sources.tiff_headers import ReadLog

    vol = _volume()
    a, b, c = tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "c.tiff"
    tifffile.imwrite(a, vol[0], description="same")
    with io.FileIO(a) as fh:
        log = ReadLog(fh)
        with tifffile.TiffFile(log) as tf:
            offsets = tf.pages[0].dataoffsets
        record = log.record(os.path.getsize(a))
    assert log.complete and record.spans and all(at < offsets[0] for at, _ in record.spans)
    tifffile.imwrite(b, vol[1], description="same")  # other pixels, same header
    with io.FileIO(b) as fh:
        assert record.matches(fh, os.path.getsize(b))
        assert not record.matches(fh, os.path.getsize(b) + 1)
    raw = bytearray(a.read_bytes())
    at, data = record.spans[-1]
    raw[at + len(data) - 1] ^= 1  # one byte tifffile read
    b.write_bytes(bytes(raw))
    c.write_bytes(a.read_bytes())  # the same bytes, another extension
    with io.FileIO(b) as fb, io.FileIO(c) as fc:
        assert not record.matches(fb, len(raw)) and not record.matches(fc, len(raw))


# ------------------------------------------------------------------ 3D TIFF
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"compression": "zlib", "rowsperstrip": 4},
        {"compression": "zlib", "predictor": True, "tile": (16, 16)},
        {"byteorder": ">", "compression": "zlib"},
        {"byteorder": ">"},
        {"volumetric": True, "tile": (16, 16)},
        {"volumetric": True, "tile": (4, 16, 16), "compression": "zlib"},
        {"imagej": True, "metadata": {"axes": "ZYX"}},
        {"imagej": True, "metadata": {"axes": "TZCYX"}, "reshape": (1, 7, 1, 37, 29)},
        {"bigtiff": True, "compression": "zlib"},
    ],
    ids=["raw", "zlib-strips", "zlib-tiles", "big-endian", "big-endian-raw", "volumetric", "volumetric-3d-tiles",
         "imagej", "imagej-hyperstack", "bigtiff"],
)
@pytest.mark.usefixtures("no_whole_page_decode")
def test_tiff_3d_reads_back(tmp_path: Path, kwargs: dict) -> None:
    vol = _volume()
    kwargs = dict(kwargs)
    data = vol.reshape(kwargs.pop("reshape")) if "reshape" in kwargs else vol
    path = tmp_path / "vol.tiff"
    tifffile.imwrite(path, data, **kwargs)
    with open_source(str(path)) as src:
        assert src.kind == "tiff-3d"
        _assert_reads(src, vol)


def test_tiff_3d_float_and_int_dtypes(tmp_path: Path) -> None:
    for dtype in ("float32", "float64", "int16", "uint32", "int8"):
        vol = _volume(dtype, (3, 10, 11))
        path = tmp_path / f"{dtype}.tif"
        tifffile.imwrite(path, vol, compression="zlib", photometric="minisblack")
        _assert_reads(open_source(path), vol)


def test_tiff_3d_differing_pages(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((10, 12), np.uint16))
        tw.write(np.zeros((11, 12), np.uint16))
    with pytest.raises(SourceError, match=r"mixed\.tif: pages of differing shape"):
        open_source(path)


def test_tiff_3d_non_3d_and_channels(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "plane.tif", np.zeros((10, 12), np.uint16))
    with pytest.raises(SourceError, match=r"plane\.tif: is a 2D image"):
        open_source(tmp_path / "plane.tif")
    tifffile.imwrite(
        tmp_path / "twochannel.tif", np.zeros((3, 2, 10, 12), np.uint16),
        imagej=True, metadata={"axes": "ZCYX"},
    )
    with pytest.raises(SourceError, match=r"twochannel\.tif: has axes ZCYX"):
        open_source(tmp_path / "twochannel.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((3, 10, 12, 3), np.uint8), photometric="rgb")
    with pytest.raises(SourceError, match=r"rgb\.tif: has 3 samples per pixel"):
        open_source(tmp_path / "rgb.tif")
    tifffile.imwrite(tmp_path / "planar.tif", np.zeros((3, 10, 12), np.uint8), photometric="rgb")
    with pytest.raises(SourceError, match=r"planar\.tif: has 3 samples per pixel"):
        open_source(tmp_path / "planar.tif")


@pytest.mark.parametrize(
    "kwargs, keep",
    [({}, 0.8), ({"compression": "zlib"}, 0.5), ({"compression": "zlib"}, 0.95),
     ({"imagej": True, "metadata": {"axes": "ZYX"}, "compression": "zlib"}, 0.5),
     ({"imagej": True, "metadata": {"axes": "ZYX"}}, 0.5), ({}, 0.01)],
)
def test_tiff_3d_truncated(tmp_path: Path, kwargs: dict, keep: float) -> None:
    vol = _volume()
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, vol, **kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(SourceError, match=r"vol\.tif: .*(truncated|not a readable TIFF)"):
        open_source(path).read(0, SHAPE[0], 0, SHAPE[1])


def test_tiff_unsupported_dtype(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "half.tif", np.zeros((4, 4, 5), np.float16), photometric="minisblack")
    with pytest.raises(SourceError, match=r"half\.tif: unsupported dtype float16"):
        open_source(tmp_path / "half.tif")


# --------------------------------------------------------------------- HDF5
def test_hdf5_reads_back(tmp_path: Path) -> None:
    vol = _volume("int32")
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("group/data", data=vol, chunks=(2, 8, 8), compression="gzip")
        f.create_dataset("plane", data=vol[0])
    src = open_source(f"{path}:/group/data")
    assert src.kind == "hdf5" and src.key == "/group/data"
    _assert_reads(src, vol)
    only = open_source(path)  # the one 3D dataset, found without a name
    assert only.key == "/group/data"
    _assert_reads(only, vol)
    assert "/group/data" in only.describe()


def test_hdf5_big_endian_and_leading_singleton(tmp_path: Path) -> None:
    vol = _volume("uint16")
    path = tmp_path / "vol.hdf5"
    with h5py.File(path, "w") as f:
        f["v"] = vol.astype(">u2").reshape((1, 1, *SHAPE))
    src = open_source(f"{path}:v")
    assert src.dtype == np.dtype("uint16")
    _assert_reads(src, vol)


def test_hdf5_several_datasets_without_name(tmp_path: Path) -> None:
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros((2, 3, 4), np.uint8)
        f["b/c"] = np.zeros((2, 3, 5), np.uint8)
    with pytest.raises(SourceError, match=r"two\.h5: holds 2 3D datasets \(/a \(2, 3, 4\), /b/c \(2, 3, 5\)\)"):
        open_source(path)
    with pytest.raises(SourceError, match=r"'/missing' does not exist; 3D datasets in the file: /a"):
        open_source(f"{path}:/missing")
    with pytest.raises(SourceError, match=r"'b' is a group"):
        open_source(f"{path}:b")


def test_hdf5_non_3d_and_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f["plane"] = np.zeros((3, 4), np.uint8)
        f["hyper"] = np.zeros((2, 2, 3, 4), np.uint8)
    with pytest.raises(SourceError, match=r"flat\.h5: holds no 3D dataset \(datasets: /hyper"):
        open_source(path)
    with pytest.raises(SourceError, match=r"flat\.h5:/plane: expected a 3D"):
        open_source(f"{path}:plane")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(SourceError, match=r"junk\.h5: not a readable HDF5"):
        open_source(tmp_path / "junk.h5")
    with pytest.raises(SourceError, match=r"missing\.h5: no such file"):
        open_source(f"{tmp_path}/missing.h5:/x")


# --------------------------------------------------------------------- zarr
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_array_reads_back(tmp_path: Path, zarr_format: int) -> None:
    zarr = pytest.importorskip("zarr")
    vol = _volume("float32")
    path = tmp_path / "vol.zarr"
    arr = zarr.create_array(path, shape=vol.shape, dtype=vol.dtype, chunks=(2, 8, 8),
                            zarr_format=zarr_format)
    arr[:] = vol
    src = open_source(str(path) + "/")
    assert src.kind == "zarr"
    _assert_reads(src, vol)


def test_zarr_group(tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    vol = _volume("uint8")
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("scale/0", shape=(1, 1, *SHAPE), dtype="uint8", chunks=(1, 1, 3, 16, 16))[:] = (
        vol.reshape(1, 1, *SHAPE)
    )
    group.create_array("scale/1", shape=(3, 4, 5), dtype="uint8")
    group.create_array("label", shape=(4, 5), dtype="uint8")
    with pytest.raises(SourceError, match=r"g\.zarr: is a zarr group with 2 3D arrays"):
        open_source(tmp_path / "g.zarr")
    src = open_source(f"{tmp_path}/g.zarr:scale/0")
    _assert_reads(src, vol)
    with pytest.raises(SourceError, match=r"'label'.*expected a 3D|label: expected a 3D"):
        open_source(f"{tmp_path}/g.zarr:label")
    with pytest.raises(SourceError, match=r"'nope' does not exist"):
        open_source(f"{tmp_path}/g.zarr:nope")


# ---------------------------------------------------------------------- npy
def test_npy_reads_back(tmp_path: Path) -> None:
    vol = _volume("float64")
    np.save(tmp_path / "vol.npy", vol)
    src = open_source(tmp_path / "vol.npy")
    assert src.kind == "npy"
    _assert_reads(src, vol)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(vol))
    _assert_reads(open_source(tmp_path / "fortran.npy"), vol)


def test_npy_non_3d_zero_extent_bad_dtype_truncated(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.zeros((3, 4)))
    with pytest.raises(SourceError, match=r"flat\.npy: expected a 3D"):
        open_source(tmp_path / "flat.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 5), np.uint8))
    with pytest.raises(SourceError, match=r"empty\.npy: every extent must be positive"):
        open_source(tmp_path / "empty.npy")
    np.save(tmp_path / "bool.npy", np.zeros((2, 4, 5), bool))
    with pytest.raises(SourceError, match=r"bool\.npy: unsupported dtype bool"):
        open_source(tmp_path / "bool.npy")
    np.save(tmp_path / "cut.npy", np.zeros((4, 40, 50), np.uint16))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-100])
    with pytest.raises(SourceError, match=r"cut\.npy: not a readable \.npy"):
        open_source(tmp_path / "cut.npy")


# ---------------------------------------------------------------- synthetic
def test_synthetic_equals_slab() -> None:
    src = open_source("synthetic:9x40x33:uint16:seed=3")
    assert src.kind == "synthetic" and src.shape == (9, 40, 33) and src.dtype == np.uint16
    full = SyntheticVolume((9, 40, 33), dtype="uint16", seed=3).slab(0, 9)
    _assert_reads(src, full)
    default = open_source("synthetic:4x8x8")
    assert default.dtype == np.uint16
    np.testing.assert_array_equal(default.read(1, 3, 0, 8), SyntheticVolume((4, 8, 8)).slab(1, 3))
    assert open_source("synthetic:4x8x8:seed=2:float32").dtype == np.float32


@pytest.mark.parametrize(
    "spec, message",
    [
        ("synthetic:64x256", "expected 'synthetic:ZxYxX"),
        ("synthetic:0x4x4", "positive"),
        ("synthetic:4x4x4:int64", "unsupported dtype"),
        ("synthetic:4x4x4:seed=x", "seed=N"),
        ("synthetic:4x4x4:uint8:uint16", "unexpected option"),
    ],
)
def test_synthetic_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(spec)


# ------------------------------------------------------------ common rules
def test_unknown_forms(tmp_path: Path) -> None:
    (tmp_path / "vol.raw").write_bytes(b"\0" * 8)
    with pytest.raises(SourceError, match=r"vol\.raw: unknown kind of file.*accepted forms"):
        open_source(tmp_path / "vol.raw")
    with pytest.raises(SourceError, match=r"no such file, and not a source string; accepted forms"):
        open_source(str(tmp_path / "nowhere"))
    with pytest.raises(SourceError, match=r"missing\.tif: no such file"):
        open_source(tmp_path / "missing.tif")
    with pytest.raises(SourceError, match="Expected a source string"):
        open_source(42)  # type: ignore[arg-type]  # a wrong type on purpose


def test_read_range_checks(tmp_path: Path) -> None:
    src = open_source("synthetic:4x8x6")
    for bad in [(0, 5, 0, 8), (-1, 2, 0, 8), (2, 1, 0, 8), (0, 4, 3, 9)]:
        with pytest.raises(SourceError, match=r"outside the source of shape \(z, y, x\) = \(4, 8, 6\)"):
            src.read(*bad)
    with pytest.raises(SourceError, match="Expected z0 to be an integer"):
        src.read(0.5, 2, 0, 8)  # type: ignore[arg-type]  # a wrong type on purpose
    assert src.read(2, 2, 0, 8).shape == (0, 8, 6)
    assert issubclass(SourceError, BlockfsError) and issubclass(SourceError, ValueError)


def test_check_extent() -> None:
    src = open_source("synthetic:4x8x6")
    check_extent(src, (4, 8, 6))
    check_extent(src, (None, 8, None))
    with pytest.raises(SourceError, match=r"synthetic:4x8x6: extents disagree.*y = 8 \(declared 9\)"):
        check_extent(src, (4, 9, 6))
    with pytest.raises(SourceError, match="length 3"):
        check_extent(src, (4, 8))


def _make_every_kind(tmp_path: Path) -> tuple[list[str], np.ndarray]:
    zarr = pytest.importorskip("zarr")
    vol = _volume()
    _write_stack(tmp_path / "stack", vol, compression="zlib")
    tifffile.imwrite(tmp_path / "vol.tif", vol, compression="zlib")
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        f["x"] = vol
    zarr.create_array(tmp_path / "vol.zarr", shape=vol.shape, dtype=vol.dtype, chunks=(2, 8, 8))[:] = vol
    np.save(tmp_path / "vol.npy", vol)
    specs = [str(tmp_path / "stack" / "img_*.tif"), str(tmp_path / "vol.tif"),
             f"{tmp_path}/vol.h5:/x", str(tmp_path / "vol.zarr"), str(tmp_path / "vol.npy")]
    return specs, vol


def test_pickle_round_trip_every_kind(tmp_path: Path) -> None:
    specs, vol = _make_every_kind(tmp_path)
    for spec in specs:
        src = open_source(spec)
        src.read(0, 1, 0, 1)  # handles are open
        clone = pickle.loads(pickle.dumps(src))
        assert (clone.kind, clone.shape, clone.dtype) == (src.kind, src.shape, src.dtype)
        _assert_reads(clone, vol)
        src.close()
        np.testing.assert_array_equal(src.read(1, 3, 2, 9), vol[1:3, 2:9])  # reopens after close
    syn = open_source("synthetic:3x9x7:uint8:seed=5")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(syn)).read(0, 3, 1, 4), syn.read(0, 3, 1, 4))


def test_source_reopened_after_change_is_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "vol.npy", np.zeros((3, 4, 5), np.uint8))
    blob = pickle.dumps(open_source(tmp_path / "vol.npy"))
    np.save(tmp_path / "vol.npy", np.zeros((3, 4, 6), np.uint8))
    with pytest.raises(SourceError, match=r"vol\.npy: changed since it was opened"):
        pickle.loads(blob).read(0, 1, 0, 1)


def test_read_after_fork_uses_own_handles(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    specs, vol = _make_every_kind(tmp_path)
    sources = [open_source(s) for s in specs[1:3]]  # 3D TIFF and HDF5 keep a handle
    for src in sources:
        src.read(0, 1, 0, 1)
    pid = os.fork()
    if pid == 0:  # child: read everything through inherited objects
        ok = all(np.array_equal(src.read(0, SHAPE[0], 0, SHAPE[1]), vol) for src in sources)
        os._exit(0 if ok else 1)
    for src in sources:  # the parent reads at the same time
        np.testing.assert_array_equal(src.read(0, SHAPE[0], 0, SHAPE[1]), vol)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_module_does_not_import_luigi() -> None:
    code = "import sys, blockfs_tasks.ingest.sources; sys.exit('luigi' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
