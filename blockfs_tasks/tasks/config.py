"""Configuration sections of the Luigi tasks; each mirrors a section of luigi.cfg.

A class is named after its section (``class blockfs`` <-> ``[blockfs]``), so
``--blockfs-block-size 32`` on the command line overrides ``luigi.cfg``.
The core never reads configuration: tasks pass these values in explicitly.
"""

from __future__ import annotations

from typing import Any

import luigi

#: Spellings of ``[blockfs] shuffle`` -> Blosc shuffle (0 none, 1 byte, 2 bit); true/false as before.
SHUFFLE_NAMES = {"none": 0, "false": 0, "0": 0, "byte": 1, "true": 1, "1": 1, "bit": 2, "2": 2}


class ShuffleParameter(luigi.Parameter[int]):
    """Blosc shuffle by name: ``none``, ``byte`` or ``bit`` (``true`` / ``false`` mean byte / none)."""

    def parse(self, x: Any) -> int:
        if isinstance(x, bool | int):
            return int(x)
        key = str(x).strip().lower()
        if key not in SHUFFLE_NAMES:
            raise ValueError(f"expected shuffle none, byte or bit (or true / false), got {x!r}")
        return SHUFFLE_NAMES[key]

    def serialize(self, x: Any) -> str:
        return {0: "none", 1: "byte", 2: "bit"}.get(int(x), str(x))


class blockfs(luigi.Config):  # lower case: named after its luigi.cfg section
    """Format of the volumes the pipeline writes."""

    block_size = luigi.IntParameter(
        default=64,
        description="Block edge in voxels, x and y (and z unless z_block_size).",
    )
    z_block_size = luigi.IntParameter(default=0, description="Block size in z; 0 = same as block_size.")
    compression = luigi.Parameter(
        default="zstd",
        description="Blosc compressor: zstd, lz4, lz4hc, blosclz, zlib "
        "(snappy only where Blosc was built with it); for float volumes also fpzip, pcodec (lossless) "
        "or kempressed (data in [0, 1], at most one machine epsilon off).",
    )
    compression_level = luigi.OptionalIntParameter(
        default=None,
        description="Compression level: Blosc 0-9, pcodec 0-12 (fpzip and kempressed have none); empty = the "
        "pipeline's default for the codec: Blosc 2 (measured, see the codec table), pcodec 8.",
    )
    shuffle = ShuffleParameter(
        default=1,
        description="Blosc shuffle: byte (images), bit (sparse labels: far smaller at level 5) or none; "
        "true / false mean byte / none.",
    )
    bitround_keepbits = luigi.OptionalIntParameter(
        default=None,
        description="Lossy, float volumes only: round to this many mantissa bits before compressing "
        "(relative error <= 2**-(N+1), recorded in the volume); empty = off.",
    )
    io_resource = luigi.Parameter(
        default="",
        description="A [resources] name that IO-heavy tasks (batches, export slabs) take one of, so the "
        "scheduler caps how many run at once; empty = no cap. Luigi caps an undeclared resource at 1.",
    )


def io_resources() -> dict[str, int]:
    """The ``resources`` of an IO-heavy task: one unit of ``[blockfs] io_resource``, if set."""
    name = blockfs().io_resource
    return {name: 1} if name else {}


class ingest(luigi.Config):  # lower case: named after its luigi.cfg section
    """How ingest is split into tasks and how much each task may hold."""

    target_tasks = luigi.IntParameter(
        default=1000,
        description="Upper bound on the number of batch tasks of one volume.",
    )
    min_tasks = luigi.IntParameter(
        default=8,
        description="Split a small volume into at least this many batches (if it has the block rows), so the "
        "workers finish together.",
    )
    memory_budget_mb = luigi.IntParameter(default=1024, description="Raw data one batch task holds at a time, in MiB.")
    threads = luigi.IntParameter(
        default=1,
        description="Compression threads per batch task (use 1 with --workers N >= cores).",
    )


class export(luigi.Config):  # lower case: named after its luigi.cfg section
    """How exports are split into checkpointed slabs."""

    slab_planes = luigi.IntParameter(
        default=0,
        description="Planes per export task, rounded up to whole z rows of blocks; 0 = one z row.",
    )
    threads = luigi.IntParameter(default=1, description="Threads per export task.")
    memory_budget_mb = luigi.IntParameter(default=1024, description="Memory one export task may hold, in MiB.")
    mpi_ranks = luigi.IntParameter(default=2, description="MPI ranks of an HDF5 slab (mpiexec -n); 1 = no mpiexec.")
