"""The exports: ``blockfs2hdf`` (HDF5, under mpiexec or not), ``blockfs2tif`` and ``blockfs2jp2k`` (per plane)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ..core.errors import BlockfsError
from .common import EXIT_INTERRUPTED, _bar_callback, _entry, _progress, positive_int
from .storage import add_storage_options


def _hdf5_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs2hdf",
        description="Copy a blockfs volume (or planes [z0, z1) of it) into one dataset of an HDF5 file, "
        "with chunks = blocks. Run it as 'mpiexec -n N blockfs2hdf ...' to read and compress on N "
        "processes while rank 0 writes; without mpiexec it uses threads in one process.",
        epilog="Each completed plane range is recorded in the dataset's attributes, so exporting "
        "[z0, z1) slabs one by one resumes where an interrupted export stopped.",
    )
    p.add_argument("src", help="The directory file of the volume, e.g. precomputed.blockfs.")
    p.add_argument("dest", help="The HDF5 file; created if missing, other datasets in it are kept.")
    p.add_argument("name", help="Path of the dataset inside the file, e.g. /raw or channel0/data.")
    p.add_argument(
        "--compression", choices=("gzip", "lzf", "none"), default="gzip", help="HDF5 compression (default: gzip)."
    )
    p.add_argument("--compression-opts", type=int, default=None, help="gzip level 0-9 (default: 4).")
    p.add_argument("--shuffle", action="store_true", help="Byte-shuffle before compressing (HDF5 shuffle filter).")
    p.add_argument("--z0", type=int, default=0, help="First plane, inclusive, on a block row (default: 0).")
    p.add_argument("--z1", type=int, default=None, help="Last plane, exclusive, on a block row (default: the end).")
    p.add_argument("--n-threads", type=positive_int, default=None,
                   help="Compressing threads per process (default: cores / ranks).")
    p.add_argument("--silent", action="store_true", help="No progress bar.")
    p.add_argument(
        "--progress-lines", action="store_true",
        help="Also print 'progress DONE TOTAL' lines (chunks) on stdout at each whole percent, for a parent process.",
    )
    add_storage_options(p)
    return p


@_entry(_hdf5_parser)
def hdf5_main(args: argparse.Namespace) -> int:
    """blockfs2hdf <src> <dest> <name> [--compression ...] [--z0 Z --z1 Z]; under mpiexec or not."""
    from ..core import Directory
    from ..export.hdf5 import check_plane_range, export_hdf5, present_blocks
    from ..export.hdf5_mpi import export_hdf5_mpi, launched_by_mpiexec, world_comm

    comm = world_comm() if launched_by_mpiexec() else None
    rank = comm.Get_rank() if comm is not None else 0
    total = None
    if rank == 0 and not args.silent:
        try:  # only for the bar: export_hdf5 reports a bad volume or range on every rank alike
            d = Directory.open(args.src)
            total = len(present_blocks(d, *check_plane_range(d, args.z0, args.z1)))
        except (BlockfsError, OSError):
            total = None
    bar = _progress(total, args.silent or rank != 0, "chunk")
    progress = _bar_callback(bar)
    if args.progress_lines and rank == 0:
        progress = _with_progress_lines(progress)
    options = dict(
        compression=args.compression, compression_opts=args.compression_opts, shuffle=args.shuffle,
        z0=args.z0, z1=args.z1, n_threads=args.n_threads, progress=progress,
    )
    try:
        if comm is not None and comm.Get_size() > 1:
            result = export_hdf5_mpi(comm, args.src, args.dest, args.name, **options)
        else:
            result = export_hdf5(args.src, args.dest, args.name, **options)
    except KeyboardInterrupt:
        if comm is None:
            raise
        bar.close()
        if rank != 0:  # every rank gets Ctrl-C from mpiexec; rank 0 says it once. Wait in MPI_Finalize for rank 0
            return EXIT_INTERRUPTED  # (exiting at once would let mpiexec kill rank 0 before it rolls the file back)
        print("blockfs2hdf: interrupted; rerun the same command to resume", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # The file is rolled back. MPI_Finalize with messages still in flight can make MPICH abort with a
        # stack dump: leave without it.
        os._exit(EXIT_INTERRUPTED)
    finally:
        bar.close()
    if rank == 0:  # after the bar is closed, on the bar's stream, so mpiexec cannot interleave them
        print(
            f"{result.dest}:{result.name}: planes [{result.z0}, {result.z1}), {result.chunks_written} chunks, "
            f"{result.raw_bytes / 1e6:.1f} MB -> {result.stored_bytes / 1e6:.1f} MB stored, "
            f"{result.seconds:.1f} s ({result.mb_per_s:.1f} MB/s) on {result.ranks} rank(s)",
            file=sys.stderr, flush=True,
        )
    return 0


def _with_progress_lines(progress: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """Also print ``progress DONE TOTAL`` on stdout at each whole percent (for a parent process, e.g. a Luigi task)."""
    shown = -1

    def update(done: int, total: int) -> None:
        nonlocal shown
        progress(done, total)
        percent = 100 * done // max(total, 1)
        if percent != shown:
            shown = percent
            print(f"progress {done} {total}", flush=True)

    return update



def _byte_size(text: str) -> int:
    """A size in bytes: an integer with an optional K, M, G or T suffix (powers of 1024)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number, unit = text.strip().upper().rstrip("B"), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 512M or 2G, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return value


def _plane_export_parser(prog: str, what: str, example: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=f"Export a blockfs volume as one {what} file per z-plane.",
        epilog="Each file is written under a temporary name and renamed into place, so a file at a "
        "plane's path is always complete. Missing folders are created.",
    )
    p.add_argument("--input", required=True,
                   help="The directory file (.blockfs) of the volume (a path, or s3://, gs://, https:// URL).")
    add_storage_options(p)
    p.add_argument(
        "--output-pattern", required=True,
        help=f"Output path with a %%d field for the plane number, e.g. {example.replace('%', '%%')}."
    )
    p.add_argument("--n-workers", type=positive_int, default=None, help="Threads (default: one per core).")
    p.add_argument("--silent", action="store_true", help="No progress bar.")
    p.add_argument("--z0", type=int, default=0, help="First plane to export (default: 0).")
    p.add_argument("--z1", type=int, default=None, help="Plane after the last one to export (default: the z extent).")
    p.add_argument(
        "--existing", choices=("replace", "skip", "error"), default="replace",
        help="Outputs that exist: replace them (default), skip those planes, or stop with an error.",
    )
    p.add_argument(
        "--memory-budget", type=_byte_size, default=None, metavar="SIZE",
        help="Peak memory for plane data, e.g. 512M or 4G (default: 1G).",
    )
    return p


def _tif_parser() -> argparse.ArgumentParser:
    p = _plane_export_parser("blockfs2tif", "2D TIFF", "/out/img_%04d.tiff")
    p.add_argument(
        "--compression", type=int, default=3, choices=range(10), metavar="0-9",
        help="zlib (deflate) level; 0 writes uncompressed TIFF (default: 3).",
    )
    return p



def _run_plane_export(
    args: argparse.Namespace, export: Callable[..., list[str]], progress_in_rows: bool = False, **options: object
) -> int:
    """Run a per-plane exporter with a bar in planes (its progress is in planes, or in plane rows)."""
    from ..core import Directory
    from ..export.planes import DEFAULT_MEMORY_BUDGET

    directory = Directory.open(args.input)
    z1 = directory.shape[0] if args.z1 is None else args.z1
    bar = _progress(max(z1 - args.z0, 0), args.silent, "plane")
    try:
        export(
            directory, args.output_pattern, args.z0, args.z1, n_threads=args.n_workers,
            memory_budget=args.memory_budget or DEFAULT_MEMORY_BUDGET, existing=args.existing,
            progress=_bar_callback(bar, directory.shape[1] if progress_in_rows else 1), **options,
        )
    finally:
        bar.close()
    return 0


@_entry(_tif_parser)
def tif_main(args: argparse.Namespace) -> int:
    """blockfs2tif --input <blockfs-file> --output-pattern <pattern> [--compression 0-9]"""
    from ..export.tiff import export_tiff

    return _run_plane_export(args, export_tiff, progress_in_rows=True, level=args.compression)


def _jp2k_parser() -> argparse.ArgumentParser:
    p = _plane_export_parser("blockfs2jp2k", "JPEG 2000 (.jp2)", "/out/img_%04d.jp2")
    p.add_argument(
        "--psnr", type=float, default=None, metavar="dB",
        help="Lossy: every plane meets this PSNR, measured against the data's bit depth (default: lossless).",
    )
    p.add_argument(
        "--bit-depth", type=int, default=None,
        help="Bits of the data for --psnr, e.g. 12 (default: the bits of each plane's maximum).",
    )
    p.add_argument(
        "--htj2k", dest="codec", action="store_const", const="htj2k", default="jp2",
        help="Write lossless High-Throughput JPEG 2000 codestreams (name them .j2c or .jhc), much faster to encode.",
    )
    return p


@_entry(_jp2k_parser)
def jp2k_main(args: argparse.Namespace) -> int:
    """blockfs2jp2k --input <blockfs-file> --output-pattern <pattern> [--psnr dB]"""
    from ..export.jp2k import export_jp2k

    return _run_plane_export(args, export_jp2k, psnr=args.psnr, bit_depth=args.bit_depth, codec=args.codec)

