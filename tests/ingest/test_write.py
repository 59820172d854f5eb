"""write_batch: a whole ingest without luigi (plan, write each batch, build the directory), equal to the Luigi run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from blockfs_tasks.core import Directory
from blockfs_tasks.core.batch import batch_complete, build_directory
from blockfs_tasks.core.codec import BlockCodec
from blockfs_tasks.core.grid import BlockGrid
from blockfs_tasks.ingest import SourceError, open_source, plan_batches, plan_volume, write_batch
from blockfs_tasks.ingest.planning import Unit
from blockfs_tasks.ingest.write import read_pieces

SHAPE = (20, 37, 45)  # (z, y, x): edge blocks on every axis with 16-voxel blocks


def write_stack(folder: Path) -> np.ndarray:
    data = np.random.default_rng(3).integers(0, 4000, SHAPE).astype(np.uint16)
    folder.mkdir()
    for z, plane in enumerate(data):
        tifffile.imwrite(folder / f"img_{z}.tif", plane)
    return data


SCRIPT = """
    import sys
    from blockfs_tasks.core.batch import build_directory
    from blockfs_tasks.ingest import open_source, plan_batches, plan_volume, write_batch

    source, dest = sys.argv[1], sys.argv[2]
    with open_source(source) as src:
        spec = plan_volume(src, (16, 16, 16))  # INGEST_CODEC: what a Luigi run writes by default
        plan = plan_batches(spec.grid, spec.dtype.itemsize, target_tasks=5, memory_budget=1 << 20, min_tasks=3)
        fragments = [write_batch(src, dest, spec, plan, b) for b in range(plan.n_batches)]
    build_directory(dest, spec, range(plan.n_batches))
    print(len(fragments), sorted(m for m in sys.modules if m == "luigi" or m.startswith("luigi.")))
"""


def test_script_ingest_without_luigi_equals_the_luigi_run(tmp_path: Path) -> None:
    import luigi
    from luigi.execution_summary import LuigiStatusCode
    from tasks.conftest import luigi_settings  # tests/ is on sys.path (rootdir import mode)

    from blockfs_tasks.tasks import BuildDirectory

    data = write_stack(tmp_path / "stack")
    source = str(tmp_path / "stack" / "img_*.tif")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), source, str(tmp_path / "plain.blockfs")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    n_fragments, luigi_modules = done.stdout.split(maxsplit=1)
    assert int(n_fragments) > 1 and luigi_modules.strip() == "[]"

    with luigi_settings({("blockfs", "block_size"): 16}):
        task = BuildDirectory(source=source, dest=str(tmp_path / "luigi.blockfs"))
        result = luigi.build([task], local_scheduler=True, detailed_summary=True, workers=1, log_level="WARNING")
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text

    plain, by_luigi = Directory.open(tmp_path / "plain.blockfs"), Directory.open(tmp_path / "luigi.blockfs")
    np.testing.assert_array_equal(plain[:], data)
    np.testing.assert_array_equal(by_luigi[:], data)
    assert plain.spec.same_volume(by_luigi.spec)
    np.testing.assert_array_equal(plain.index["crc32c"], by_luigi.index["crc32c"])  # the same bytes, block by block


def test_write_batch_returns_its_fragment_reports_progress_and_reruns(tmp_path: Path) -> None:
    src = open_source("synthetic:24x40x30:uint8:seed=2")
    spec = plan_volume(src, (16, 16, 8), BlockCodec("lz4", 3, False))
    plan = plan_batches(spec.grid, spec.dtype.itemsize, target_tasks=2, memory_budget=1 << 20)
    dest = str(tmp_path / "v.blockfs")
    calls: list[tuple[int, int, str | None]] = []
    fragments = [
        write_batch(src, dest, spec, plan, b, n_threads=2, progress=lambda *a: calls.append(a))
        for b in range(plan.n_batches)
    ]
    assert fragments == [f"{dest}.{b}.fragment" for b in range(plan.n_batches)]
    assert all(batch_complete(dest, b, spec, plan.describe(b)) for b in range(plan.n_batches))
    # a unit of 3 block rows is read in halves (2 rows, then 1): the status names the half being read
    assert calls[0] == (0, calls[0][1], "planes 0-8, rows 0-32") and all(0 <= d < t for d, t, _ in calls)
    assert (2, calls[0][1], "planes 0-8, rows 32-40") in calls

    write_batch("synthetic:24x40x30:uint8:seed=2", dest, spec, plan, 0)  # again, from a source string
    build_directory(dest, spec, range(plan.n_batches))
    np.testing.assert_array_equal(Directory.open(dest)[:], src.read(0, 24, 0, 40))


def test_write_batch_refuses_a_source_that_changed_since_planning(tmp_path: Path) -> None:
    spec = plan_volume(open_source("synthetic:8x16x16"), (8, 8, 8))
    plan = plan_batches(spec.grid, spec.dtype.itemsize)
    with pytest.raises(SourceError, match="extents disagree"):
        write_batch("synthetic:8x16x17", str(tmp_path / "v.blockfs"), spec, plan, 0)
    with pytest.raises(SourceError, match="dtype is now uint8, planned uint16"):
        write_batch("synthetic:8x16x16:uint8", str(tmp_path / "v.blockfs"), spec, plan, 0)
    assert not list(tmp_path.iterdir())  # nothing published, no temporary left


def test_read_pieces_are_whole_block_rows_of_bounded_size() -> None:
    grid = BlockGrid((1000, 200, 40), (64, 16, 8))  # a block row of a unit: 8 x 16 x 1000 x 2 = 256000 bytes
    units = [Unit(0, 8, 0, 200), Unit(8, 16, 0, 40), Unit(32, 40, 192, 200)]
    pieces = read_pieces(units, grid, 2, piece_bytes=600_000)  # 2 block rows per piece
    assert pieces[:7] == [Unit(0, 8, y, min(200, y + 32)) for y in range(0, 200, 32)]
    assert pieces[7:] == [Unit(8, 16, 0, 32), Unit(8, 16, 32, 40), Unit(32, 40, 192, 200)]  # at most half a unit
    one_row = [Unit(0, 8, y, min(200, y + 16)) for y in range(0, 200, 16)]
    assert read_pieces(units[:1], grid, 2, piece_bytes=1) == one_row
    assert read_pieces(units[:1], grid, 2, piece_bytes=1 << 40) == [Unit(0, 8, 0, 112), Unit(0, 8, 112, 200)]
