"""HDF5 export benchmark: ``mpiexec -n 2 blockfs2hdf`` against a serial h5py peer.

Run by hand (not a test)::

    python benchmarks/bench_export_hdf5.py                      # 512 x 1024 x 1024 uint16, 1 GiB
    python benchmarks/bench_export_hdf5.py --shape 128 256 256  # quick
    python benchmarks/bench_export_hdf5.py --out /data/bench --results /tmp/hdf5.md

The deterministic synthetic volume (``SyntheticVolume``, seed 0) is generated
into memory and written once with ``Directory.write_blocks`` as a blockfs
volume of 64^3 blocks (Blosc zstd 5 + shuffle), before anything is timed. Then
each contender runs in its own subprocess (so each pays one Python start and
its imports) and writes one dataset of 64^3 chunks into a new HDF5 file:

* ``blockfs2hdf, mpiexec -n 2``: the console script's entry point under the
  ``mpiexec`` of the ``mpich`` wheel: both ranks read and compress, rank 0
  writes with ``write_direct_chunk``.
* ``blockfs2hdf, 1 process``: the same entry point without ``mpiexec``
  (threads compress, the main thread writes).
* ``serial h5py``: the simple peer: read a 64-plane slab with
  ``directory[z0:z1]``, ``dset[z0:z1] = slab`` with the same filters (HDF5
  compresses chunk by chunk in the writing thread).

Each contender is run with gzip (``--level``, default 3) without and with the
byte-shuffle filter, and ``blockfs2hdf`` under ``mpiexec -n 2`` also with lzf.
Measured: MB/s = 10^6 bytes of the volume per second of the subprocess's wall
time (start, open, export and close included, no fsync: the files end in the
page cache, and so do the blockfs files being read, for every contender
alike), peak extra memory of the process tree (``common.PeakMemory``: parent
RSS growth + each child's USS), and the size of the file. Every output is
read back and compared with the volume, slab by slab.

A true parallel-HDF5 (``mpio`` driver) collective write is not measured: h5py
from PyPI is serial, and a parallel build needs Debian's MPI HDF5 and a
compile (see shared ECOSYSTEM.md, which measured 90 MB/s for it on this machine
once, in another environment). That figure is quoted as a reference only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakMemory, Stopwatch, build_volume, machine_facts, markdown_table

from blockfs_tasks.core import Directory

BLOCK = 64
RANKS = 2
PARALLEL_HDF5_REFERENCE_MBS = 90.0  # ECOSYSTEM.md, not measured by this script
TARGET_MBS = 100.0
TARGET_VS_PARALLEL = 1.2
DEFAULT_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "export_hdf5.md")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLI_CODE = "import sys; from blockfs_tasks.cli import hdf5_main; sys.exit(hdf5_main(sys.argv[1:]))"

PEER_CODE = """
import sys, h5py
from blockfs_tasks.core import Directory
src, dest, name, compression, level, shuffle = sys.argv[1:7]
d = Directory.open(src)
bz, by, bx = d.grid.block_shape
kwargs = dict(shuffle=shuffle == "1")
if compression != "none":
    kwargs["compression"] = compression
    if compression == "gzip":
        kwargs["compression_opts"] = int(level)
with h5py.File(dest, "a") as f:
    dset = f.create_dataset(name, shape=d.shape, dtype=d.dtype, chunks=(bz, by, bx), fillvalue=0, **kwargs)
    for z0 in range(0, d.shape[0], bz):
        z1 = min(z0 + bz, d.shape[0])
        dset[z0:z1] = d[z0:z1]
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mpiexec() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("no mpiexec beside python or on PATH: pip install mpich")
    return found


@dataclass
class Run:
    contender: str
    filters: str
    seconds: float
    mb_s: float
    cpu_seconds: float
    peak_mib: float
    file_mb: float
    ok: bool


def filter_args(compression: str, level: int, shuffle: bool) -> list[str]:
    args = ["--compression", compression]
    if compression == "gzip":
        args += ["--compression-opts", str(level)]
    if shuffle:
        args.append("--shuffle")
    return args


def describe(compression: str, level: int, shuffle: bool) -> str:
    text = f"gzip {level}" if compression == "gzip" else compression
    return text + (" + shuffle" if shuffle else "")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(cmd: list[str]) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, CPU seconds of the process tree, peak extra MiB)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    cpu0 = _children_cpu()
    with PeakMemory() as peak, Stopwatch() as watch:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{cmd[:4]}... failed ({done.returncode}):\n{done.stderr}")
    return watch.seconds, _children_cpu() - cpu0, peak.report.peak_extra_mib


def same_as_volume(src: str, dest: str, name: str) -> bool:
    import h5py

    d = Directory.open(src)
    with h5py.File(dest, "r") as f:
        dset = f[name]
        for z0 in range(0, d.shape[0], BLOCK):
            z1 = min(z0 + BLOCK, d.shape[0])
            if not np.array_equal(dset[z0:z1], d[z0:z1]):
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs=3, default=(512, 1024, 1024), metavar=("Z", "Y", "X"))
    p.add_argument("--level", type=int, default=3, help="gzip level (default 3).")
    p.add_argument("--out", default=None, help="Scratch folder (default: a temporary one, removed after).")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.add_argument("--skip-verify", action="store_true", help="Do not read the outputs back.")
    args = p.parse_args(argv)

    scratch = args.out or tempfile.mkdtemp(prefix="bench-hdf5-")
    os.makedirs(scratch, exist_ok=True)
    facts = machine_facts(scratch, ["numpy", "h5py", "mpi4py", "mpich", "imagecodecs", "numcodecs"])
    try:
        shape = tuple(args.shape)
        volume_bytes = int(np.prod(shape)) * 2
        src = os.path.join(scratch, "volume.blockfs")
        log(f"generating {shape} uint16 ({volume_bytes / 2**30:.2f} GiB)")
        data = build_volume(shape)
        with Stopwatch() as w:
            z, y, x = shape
            d = Directory(x, y, z, np.uint16, src, x_block_size=BLOCK, y_block_size=BLOCK, z_block_size=BLOCK)
            d.create()
            d.write_blocks(
                (
                    (data[bz : bz + BLOCK, by : by + BLOCK, bx : bx + BLOCK], bx, by, bz)
                    for bx, by, bz in d.grid.origins()
                ),
                os.cpu_count(),
            )
            d.close()
        del data
        log(f"blockfs volume written in {w.seconds:.1f} s")

        runs: list[Run] = []
        plan = [(c, args.level, s) for s in (False, True) for c in ("gzip",)] + [("lzf", 0, False)]
        for compression, level, shuffle in plan:
            label = describe(compression, level, shuffle)
            contenders = [("blockfs2hdf, mpiexec -n 2", "mpi")]
            if compression == "gzip":
                contenders += [("blockfs2hdf, 1 process", "one"), ("serial h5py", "peer")]
            for contender, kind in contenders:
                dest = os.path.join(scratch, f"{kind}-{compression}-{int(shuffle)}.h5")
                if os.path.exists(dest):
                    os.unlink(dest)
                if kind == "peer":
                    cmd = [sys.executable, "-c", PEER_CODE, src, dest, "volume", compression, str(level),
                           str(int(shuffle))]
                else:
                    cmd = [sys.executable, "-c", CLI_CODE, src, dest, "volume", "--silent",
                           *filter_args(compression, level, shuffle)]
                    if kind == "mpi":
                        cmd = [mpiexec(), "-n", str(RANKS), *cmd]
                log(f"{contender}, {label} ...")
                seconds, cpu, peak = run_timed(cmd)
                ok = True if args.skip_verify else same_as_volume(src, dest, "volume")
                mb = os.path.getsize(dest) / 1e6
                runs.append(Run(contender, label, seconds, volume_bytes / 1e6 / seconds, cpu, peak, mb, ok))
                log(f"  {seconds:.1f} s, {runs[-1].mb_s:.1f} MB/s, CPU {cpu:.1f} s, peak {peak:.0f} MiB, "
                    f"{runs[-1].file_mb:.0f} MB, equal={ok}")
                os.unlink(dest)
    finally:
        if args.out is None:
            shutil.rmtree(scratch, ignore_errors=True)

    facts["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    write_results(args, facts, shape, volume_bytes, runs)
    return 0 if all(r.ok for r in runs) else 1


def write_results(
    args: argparse.Namespace, facts: dict[str, str], shape: tuple[int, ...], volume_bytes: int, runs: list[Run]
) -> None:
    by = {(r.contender, r.filters): r for r in runs}
    rows = [
        [
            r.contender, r.filters, f"{r.seconds:.1f}", f"{r.mb_s:.1f}", f"{r.cpu_seconds:.1f}",
            f"{volume_bytes / 1e6 / r.cpu_seconds:.0f}", f"{r.peak_mib:.0f}", f"{r.file_mb:.0f}",
            "yes" if r.ok else "NO",
        ]
        for r in runs
    ]
    ratio_rows = []
    for shuffle in (False, True):
        label = describe("gzip", args.level, shuffle)
        contenders = ("blockfs2hdf, mpiexec -n 2", "blockfs2hdf, 1 process", "serial h5py")
        mpi, one, peer = (by.get((c, label)) for c in contenders)
        if mpi and peer and one:
            ratio_rows.append([label, f"{mpi.mb_s / peer.mb_s:.2f}x", f"{one.mb_s / peer.mb_s:.2f}x",
                               f"{mpi.mb_s / PARALLEL_HDF5_REFERENCE_MBS:.2f}x"])
    targets = []
    for shuffle in (True, False):
        label = describe("gzip", args.level, shuffle)
        mpi = by.get(("blockfs2hdf, mpiexec -n 2", label))
        if mpi is None:
            continue
        targets.append([f"mpiexec -n 2 export >= {TARGET_MBS:.0f} MB/s, {label}", f"{mpi.mb_s:.1f} MB/s",
                        "pass" if mpi.mb_s >= TARGET_MBS else "FAIL"])
        targets.append([
            f">= {TARGET_VS_PARALLEL}x a true parallel-HDF5 collective write, {label}",
            f"not measurable here (parallel h5py is not on PyPI); against the {PARALLEL_HDF5_REFERENCE_MBS:.0f} MB/s "
            f"quoted in ECOSYSTEM.md (filters not stated there): {mpi.mb_s / PARALLEL_HDF5_REFERENCE_MBS:.2f}x",
            "n/a (" + ("would pass" if mpi.mb_s >= TARGET_VS_PARALLEL * PARALLEL_HDF5_REFERENCE_MBS else "would fail")
            + " against that reference)",
        ])
    text = "\n\n".join([
        "# HDF5 export benchmark",
        f"Generated by `benchmarks/bench_export_hdf5.py` on {datetime.datetime.now().isoformat(timespec='seconds')}.",
        f"Volume: `SyntheticVolume{tuple(shape)}` uint16, seed 0, {volume_bytes / 2**30:.2f} GiB, blockfs 64^3 blocks "
        "(Blosc zstd 5 + shuffle). HDF5 dataset: 64^3 chunks, fill value 0. MB/s = 10^6 volume bytes per second "
        "of the subprocess's wall time (start, imports, open, export, close; no fsync; blockfs and HDF5 files in "
        "the page cache for every contender). Peak = extra memory of the process tree (parent RSS growth + "
        "children's USS). CPU s = user + system time of the subprocess tree (MPI ranks spin while they wait, so "
        "it counts some polling); MB per CPU s is the efficiency, which other users of the machine do not change "
        "much (2x it bounds what 2 idle cores could do). Every output was read back and compared with the volume "
        "(`equal`). The machine "
        "is shared: see the load averages below, and compare rows of one run as ratios.",
        markdown_table(
            ["contender", "filters", "s", "MB/s", "CPU s", "MB per CPU s", "peak MiB", "file MB", "equal"], rows
        ),
        "## Ratios",
        markdown_table(
            ["filters", "MPI -n 2 / serial h5py", "1 process / serial h5py",
             "MPI -n 2 / 90 MB/s parallel-HDF5 reference"],
            ratio_rows,
        ),
        "## Targets",
        markdown_table(["target", "measured", "verdict"], targets),
        "## Machine",
        markdown_table(["fact", "value"], facts.items()),
        "",
    ])
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "w") as f:
        f.write(text)
    log(f"results in {args.results}")


if __name__ == "__main__":
    sys.exit(main())
