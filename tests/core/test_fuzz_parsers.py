"""Fuzzing every parser of the format: malformed input raises a BlockfsError, never anything else (issue 9 item 9).

Each parser gets seed files written by the package (directory files of
formats 2.1.0, 2.0.0 and 1.0.0, fragments of 2.1.0 and 2.0.0, a journal) and
hypothesis mutates them: byte changes, header integers, truncation, insertion,
and metadata rewritten behind a recomputed checksum (what a buggy writer
would produce). Every outcome must be a successful read or a ``BlockfsError``;
memory stays within what the file justifies. The default run is derandomized
and short; ``-m slow`` runs many more examples.
"""

from __future__ import annotations

import json
import shutil
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockfs_tasks.core import BlockfsError, Directory
from blockfs_tasks.core import format as fmt
from blockfs_tasks.core.batch import BatchWriter, read_fragment_header
from blockfs_tasks.core.blockfile import journal_name

from .helpers import TESTS, V1_DATA, random_block

V2_DATA = TESTS / "data" / "blockfs-v2.0.0"
FAST = settings(
    max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SLOW = settings(FAST, max_examples=4000)
PEAK_LIMIT = 80 << 20  # 64 MiB (a 1.0.0 grid's allowance) + slack; the inputs are ~1 KB

Reader = Callable[[Path], object]


def _read_volume(path: Path) -> object:
    """Open a directory and read every block: the whole read path, not only the header."""
    d = Directory.open(path)
    return d[:], d.metadata


def _fragment(path: Path) -> object:
    return fmt.read_fragment(str(path), strict=True)


def _journal(path: Path) -> object:
    return fmt.read_fragment(str(path), strict=False)


def _fragment_header(path: Path) -> object:
    return read_fragment_header(str(path))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small file of each kind, in its own folder with its block files."""
    root = tmp_path_factory.mktemp("seeds")
    out: dict[str, Path] = {}
    # 2.1.0 directory and its block file
    (root / "v21").mkdir()
    data = random_block((12, 12, 12), "uint16", 9)
    d = Directory(12, 12, 12, np.uint16, root / "v21" / "v.blockfs", 8, 8, 8, metadata={"voxel_size": [1.8, 1.8, 2.0]})
    d.create()
    for x, y, z in d.grid.origins():
        sz, sy, sx = d.get_block_size(x, y, z)
        d.write_block(data[z : z + sz, y : y + sy, x : x + sx], x, y, z)
    d.close()
    out["directory 2.1.0"] = root / "v21" / "v.blockfs"
    # 2.0.0 and 1.0.0 directories: golden volumes
    for name, src in (
        ("directory 2.0.0", V2_DATA / "v2_uint16_zstd_live"),
        ("directory 1.0.0", V1_DATA / "v1_uint8_lz4_sparse"),
    ):
        folder = root / name.replace(" ", "_")
        shutil.copytree(src, folder, copy_function=shutil.copyfile)
        out[name] = folder / "precomputed.blockfs"
    # a 2.1.0 fragment, and the same as 2.0.0 wrote it
    spec = fmt.read_directory(out["directory 2.1.0"]).spec
    with BatchWriter(str(root / "v21" / "v.blockfs"), spec, 7, {"z": [0, 8]}) as w:
        w.write_block(np.ones((8, 8, 8), np.uint16), 0, 0, 0)
        w.write_block(np.ones((8, 8, 4), np.uint16), 8, 0, 0)
    out["fragment 2.1.0"] = root / "v21" / "v.blockfs.7.fragment"
    raw = out["fragment 2.1.0"].read_bytes()
    m, h = struct.unpack_from("<II", raw, 8)
    md = json.loads(raw[16 : 16 + m])
    codec = md.pop("Codec")
    md.update(
        Version="2.0.0", Compression=codec["cname"], CompressionLvl=codec["clevel"], Shuffle=bool(codec["shuffle"])
    )
    body = json.dumps(md).encode()
    body += b" " * (-len(body) % 8)
    out["fragment 2.0.0"] = root / "v21" / "v.blockfs.8.fragment"
    out["fragment 2.0.0"].write_bytes(b"BFSFRAG\0" + struct.pack("<II", len(body), 16 + len(body)) + body + raw[h:])
    # a journal of a session that never closed
    (root / "live").mkdir()
    live = Directory(12, 12, 12, np.uint16, root / "live" / "w.blockfs", 8, 8, 8)
    live.create()
    for x, y, z in list(live.grid.origins())[:3]:
        live.write_block(np.full(live.get_block_size(x, y, z), 3, np.uint16), x, y, z)
    out["journal"] = Path(journal_name(str(root / "live" / "w.blockfs")))
    shutil.copyfile(out["journal"], root / "live" / "journal.copy")
    out["journal"] = root / "live" / "journal.copy"
    return out


READERS: dict[str, Reader] = {
    "directory 2.1.0": _read_volume,
    "directory 2.0.0": _read_volume,
    "directory 1.0.0": _read_volume,
    "fragment 2.1.0": _fragment,
    "fragment 2.0.0": _fragment,
    "fragment header": _fragment_header,
    "journal": _journal,
}
SEED_OF = {"fragment header": "fragment 2.1.0"}


def _expect_blockfs_error_or_success(reader: Reader, path: Path, data: bytes) -> None:
    original = path.read_bytes()
    path.write_bytes(data)
    tracemalloc.start()
    try:
        reader(path)
    except BlockfsError:
        pass
    except Exception as e:  # any exception: the point of the test
        pytest.fail(f"{type(e).__name__}: {e}\ninput ({len(data)} bytes): {data[:600]!r}")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        path.write_bytes(original)
    assert peak <= max(PEAK_LIMIT, 64 * len(data)), f"{peak} bytes allocated for a {len(data)}-byte input"


def _mutate(raw: bytes, changes: list[tuple[int, int]], header: tuple[int, int] | None,
            cut: int | None, insert: tuple[int, bytes] | None) -> bytes:
    out = bytearray(raw)
    for position, value in changes:
        out[position % len(out)] = value
    if header is not None:
        field, value = header
        out[field : field + 4] = struct.pack("<I", value)
    if insert is not None:
        at, extra = insert
        at %= len(out) + 1
        out[at:at] = extra
    if cut is not None:
        del out[cut % (len(out) + 1) :]
    return bytes(out)


byte_changes = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6)
header_ints = st.none() | st.tuples(
    st.sampled_from([8, 12]),
    st.integers(0, 64)
    | st.integers(0, 4096)
    | st.integers(0, (1 << 32) - 1)
    | st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF]),
)
cuts = st.none() | st.integers(0, 1 << 20)
inserts = st.none() | st.tuples(st.integers(0, 1 << 20), st.binary(min_size=1, max_size=24))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 70), 1 << 70)
    | st.floats(allow_nan=True)
    | st.sampled_from([0, -1, 1 << 31, 1 << 32, 1 << 62, 1 << 63, 1 << 64, 10**30])
    | st.text(max_size=12)
    | st.sampled_from(["uint16", "1.0.0", "2.0.0", "2.1.0", "zstd", "blosc", ".", "../x", "/abs"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=8,
)


def _resealed(raw: bytes, key: str, value: object, kind: str) -> bytes:
    """The file with one metadata key changed (or removed), its checksum recomputed: a buggy writer's output."""
    m, start = struct.unpack_from("<II", raw, 8)
    md = json.loads(raw[16 : 16 + m])
    n_pages = 1  # the seeds have one index page
    if value == "<delete>":
        md.pop(key, None)
    else:
        md[key] = value
    if kind == "directory 2.1.0":
        table = np.frombuffer(raw, "<u4", count=n_pages, offset=20 + m)
        return fmt.header_with_table(md, table) + raw[start:]
    body = json.dumps(md, allow_nan=True).encode()
    if kind == "directory 1.0.0":
        return raw[:8] + struct.pack("<II", len(body), 16 + len(body)) + body + raw[start:]
    body += b" " * (-len(body) % 8)
    head = b"BFSFRAG\0" + struct.pack("<II", len(body), 24 + len(body)) + body
    return head + struct.pack("<I", fmt.checksum(head)) + bytes(4) + raw[start:]


def _mutation_test(kind: str, profile: settings) -> Callable[..., None]:
    @profile
    @given(changes=byte_changes, header=header_ints, cut=cuts, insert=inserts)
    def run(seeds: dict[str, Path], changes, header, cut, insert) -> None:
        path = seeds[SEED_OF.get(kind, kind)]
        _expect_blockfs_error_or_success(READERS[kind], path, _mutate(path.read_bytes(), changes, header, cut, insert))

    return run


def _metadata_test(kind: str, profile: settings) -> Callable[..., None]:
    @profile
    @given(data=st.data())
    def run(seeds: dict[str, Path], data: st.DataObject) -> None:
        path = seeds[kind]
        raw = path.read_bytes()
        m = struct.unpack_from("<I", raw, 8)[0]
        keys = sorted(json.loads(raw[16 : 16 + m]))
        key = data.draw(st.sampled_from(keys))
        value = data.draw(st.just("<delete>") | json_values)
        _expect_blockfs_error_or_success(READERS[kind], path, _resealed(raw, key, value, kind))

    return run


KINDS = sorted(READERS)
RESEALABLE = ["directory 1.0.0", "directory 2.1.0", "fragment 2.1.0"]


@pytest.mark.parametrize("kind", KINDS)
def test_mutated_input_raises_only_blockfs_errors(seeds: dict[str, Path], kind: str) -> None:
    _mutation_test(kind, FAST)(seeds)


@pytest.mark.parametrize("kind", RESEALABLE)
def test_wrong_metadata_behind_a_valid_checksum_raises_only_blockfs_errors(seeds: dict[str, Path], kind: str) -> None:
    _metadata_test(kind, FAST)(seeds)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_mutated_input_long_run(seeds: dict[str, Path], kind: str) -> None:
    _mutation_test(kind, SLOW)(seeds)


@pytest.mark.slow
@pytest.mark.parametrize("kind", RESEALABLE)
def test_wrong_metadata_long_run(seeds: dict[str, Path], kind: str) -> None:
    _metadata_test(kind, SLOW)(seeds)
