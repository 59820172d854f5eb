"""Console scripts: each is ``main(argv) -> int`` over a plain function.

Errors of the package become exit code 1 with a one-line message; argparse
errors (a bad option value included: numbers that must be positive, ports)
exit 2 with argparse's usage line and one error line, never a traceback.
Ctrl-C ends in one line and exit code 130. Long work shows a tqdm bar unless
``--silent``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .core.errors import BlockfsError, ConfigurationError

if TYPE_CHECKING:  # imported where used: a console script starts without them
    from tqdm import tqdm

    from .serve.server import CorsServer

logger = logging.getLogger("blockfs_tasks")

Main = Callable[[Sequence[str] | None], int]


#: Exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (worker counts, batch sizes, bytes per read)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0-65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def _entry(
    parser_factory: Callable[[], argparse.ArgumentParser], resumable: bool = True
) -> Callable[[Callable[[argparse.Namespace], int]], Main]:
    """Wrap a subcommand: parse argv, set up logging, turn package errors into exit 1.

    Ctrl-C prints one line (with "rerun the same command to resume" when
    ``resumable``) and returns :data:`EXIT_INTERRUPTED`, no traceback.
    """

    def wrap(run: Callable[[argparse.Namespace], int]) -> Main:
        @functools.wraps(run)
        def main(argv: Sequence[str] | None = None) -> int:
            parser = parser_factory()
            parser.add_argument("--log-level", default="WARNING", help="Logging level (default: WARNING).")
            args = parser.parse_args(argv)
            logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
            try:
                if getattr(args, "storage_options", None):
                    from .cli_remote import apply_storage_options

                    apply_storage_options(args)
                return run(args)
            except (BlockfsError, OSError) as e:
                print(f"{parser.prog}: error: {e}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                hint = "; rerun the same command to resume" if resumable else ""
                print(f"{parser.prog}: interrupted{hint}", file=sys.stderr)
                return EXIT_INTERRUPTED

        return main

    return wrap


def _remote_options(p: argparse.ArgumentParser) -> None:
    """``--storage-options JSON`` for a tool that reads volumes (see :mod:`.cli_remote`)."""
    from .cli_remote import add_storage_options

    add_storage_options(p)


def _progress(total: int | None, silent: bool, unit: str) -> tqdm:
    """A tqdm bar (or a silent stand-in with the same ``update``/``close``)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=silent, file=sys.stderr)


# ------------------------------------------------------------ mv / cp / rebase
def _mv_parser(prog: str, verb: str) -> Callable[[], argparse.ArgumentParser]:
    def make() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog=prog,
            description=f"{verb} a blockfs directory file and its block files into another folder.",
            epilog="The folder is created if it does not exist (its parent must exist).",
        )
        p.add_argument("source", help="The directory file of the volume.")
        p.add_argument("dest_directory", help="The folder to put the volume in.")
        return p

    return make


@_entry(_mv_parser("blockfs-mv", "Move"))
def mv_main(args: argparse.Namespace) -> int:
    """blockfs-mv <src> <dest>"""
    from .core.relocate import copy_volume

    print(copy_volume(args.source, args.dest_directory, move=True))
    return 0


def _cp_parser() -> argparse.ArgumentParser:
    from .cli_codecs import add_codec_arguments

    p = _mv_parser("blockfs-cp", "Copy")()
    add_codec_arguments(p, "With --compression, every block is re-encoded into a new volume (else copied as is).")
    p.add_argument("--silent", action="store_true", help="No progress bar (re-encoding).")
    return p


@_entry(_cp_parser)
def cp_main(args: argparse.Namespace) -> int:
    """blockfs-cp <src> <dest> [--compression NAME ...]"""
    from .cli_codecs import codec_options_given
    from .core.codecs.recode import recode_volume
    from .core.relocate import copy_volume

    if args.compression is None:
        if codec_options_given(args):
            raise ConfigurationError("--compression-level, --shuffle and --bitround-keepbits need --compression")
        print(copy_volume(args.source, args.dest_directory, move=False))
        return 0
    bar = _progress(None, args.silent, "block")
    try:
        print(recode_volume(args.source, args.dest_directory, args.compression, args.compression_level,
                            args.shuffle, args.bitround_keepbits, progress=bar.update))
    finally:
        bar.close()
    return 0


def _rebase_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-rebase",
        description="Rewrite a directory file to use the block files beside it, after moving them by hand.",
    )
    p.add_argument("index_file", help="The .blockfs directory file to rewrite.")
    p.add_argument("--block-size", type=positive_int, default=4096 * 16, help="Bytes per read when copying the index.")
    return p


@_entry(_rebase_parser)
def rebase_main(args: argparse.Namespace) -> int:
    """blockfs-rebase <blockfs-file> [--block-size N]"""
    from .core.relocate import rebase_volume

    rebase_volume(args.index_file, args.block_size)
    return 0


# ------------------------------------------------------------- info / verify
def _info_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blockfs-info", description="Describe a blockfs volume.")
    p.add_argument("blockfs_file", help="The directory file of the volume (a path, or s3://, gs://, https:// URL).")
    p.add_argument("--json", action="store_true", help="Print JSON instead of text.")
    _remote_options(p)
    return p


@_entry(_info_parser, resumable=False)
def info_main(args: argparse.Namespace) -> int:
    """blockfs-info <blockfs-file>"""
    from .core.report import volume_info

    info = volume_info(args.blockfs_file)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    for key, value in info.items():
        print(f"{key:18} {value}")
    return 0


def _verify_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-verify",
        description="Recompute every checksum of a volume (header, metadata, index pages, blocks) "
        "and decode every block.",
    )
    p.add_argument("blockfs_file", help="The directory file of the volume (a path, or s3://, gs://, https:// URL).")
    p.add_argument("--n-workers", type=positive_int, default=None,
                   help="Threads (default: one per core; 32 for a remote volume).")
    p.add_argument("--silent", action="store_true", help="No progress bar.")
    _remote_options(p)
    return p


@_entry(_verify_parser, resumable=False)
def verify_main(args: argparse.Namespace) -> int:
    """blockfs-verify <blockfs-file>: exit 1 naming each bad block and index page.

    The summary says what the volume's format let it check ("format 1.0.0:
    decode check only").
    """
    from .core.report import verify_volume

    bar = _progress(0, args.silent, "block")

    def started(total: int) -> None:
        bar.total = total
        bar.refresh()

    try:
        report = verify_volume(args.blockfs_file, args.n_workers, bar.update, started)
    finally:
        bar.close()
    for page in report.bad_index_pages:
        print(f"BAD {page}")
    for block in report.bad_blocks:
        print(f"BAD {block}")
    print(report.summary())
    return 0 if report.ok else 1


def _upgrade_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-upgrade",
        description="Rewrite a format 1.0.0 or 2.0.0 volume's directory as format 2.1.0, with checksums. "
        "Every block is decoded before its checksum is recorded; block files are shared, not copied.",
        epilog="With no NEW the directory file is replaced in place (atomically). A rerun is harmless.",
    )
    p.add_argument("old", metavar="OLD", help="The directory file of the volume.")
    p.add_argument("new", metavar="NEW", nargs="?", default=None, help="Where to write the 2.1.0 directory file.")
    p.add_argument("--drop-bad", action="store_true",
                   help="Write the new directory even if blocks fail to decode, leaving them out (they read as zeros).")
    p.add_argument("--n-workers", type=positive_int, default=None, help="Threads (default: one per core).")
    p.add_argument("--silent", action="store_true", help="No progress bar.")
    return p


@_entry(_upgrade_parser)
def upgrade_main(args: argparse.Namespace) -> int:
    """blockfs-upgrade OLD [NEW]: exit 1 naming each block that does not decode (written only with --drop-bad)."""
    from .core.upgrade import upgrade_volume

    bar = _progress(0, args.silent, "block")

    def started(total: int) -> None:
        bar.total = total
        bar.refresh()

    try:
        report = upgrade_volume(args.old, args.new, args.n_workers, args.drop_bad, bar.update, started)
    finally:
        bar.close()
    for block in report.bad_blocks:
        print(f"BAD {block}")
    print(report.summary())
    return 1 if report.bad_blocks else 0


# ------------------------------------------------------------------ blockfs2hdf
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
    _remote_options(p)
    return p


@_entry(_hdf5_parser)
def hdf5_main(args: argparse.Namespace) -> int:
    """blockfs2hdf <src> <dest> <name> [--compression ...] [--z0 Z --z1 Z]; under mpiexec or not."""
    from .core import Directory
    from .export.hdf5 import check_plane_range, export_hdf5, present_blocks
    from .export.hdf5_mpi import export_hdf5_mpi, launched_by_mpiexec, world_comm

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


# ------------------------------------------------ pyramid / serve / precomputed
def _xyz_ints(text: str) -> tuple[int, int, int]:
    """Parse ``X,Y,Z`` downsampling factors."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers X,Y,Z, got {text!r}")
    return values


def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", choices=("image", "segmentation"), default=None,
                   help="Layer type (default: the pyramid's, else image).")
    p.add_argument("--resolution", nargs=3, type=float, metavar=("X", "Y", "Z"), default=None,
                   help="Voxel size of the finest level in nm, x y z (default: the pyramid's, else 1 1 1).")


def _pyramid_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-pyramid",
        description="Build a multi-resolution pyramid of a blockfs volume: one folder per level and an info file.",
        epilog="Levels are keyed by their downsampling factors (x_y_z). See docs/pyramid.md.",
    )
    p.add_argument("level0", help="The directory file (.blockfs) of level 0.")
    p.add_argument("out_folder", help="The pyramid folder to write.")
    p.add_argument("--type", choices=("image", "segmentation"), default="image",
                   help="image: mean of each window; segmentation: most frequent label (default: image).")
    p.add_argument("--resolution", nargs=3, type=float, metavar=("X", "Y", "Z"), default=(1.0, 1.0, 1.0),
                   help="Voxel size of level 0 in nm, x y z (default: 1 1 1); drives anisotropic steps.")
    p.add_argument("--max-levels", type=positive_int, default=None,
                   help="Most levels, level 0 included (default: until one block).")
    p.add_argument("--factors", type=_xyz_ints, action="append", default=None, metavar="X,Y,Z",
                   help="Step of each level after level 0 (repeat per level); overrides the automatic choice.")
    p.add_argument("--level0", dest="level0_placement", choices=("link", "copy", "reference"), default="link",
                   help="Hard-link (default), copy, or only reference level 0 from the pyramid folder.")
    p.add_argument("--blocks-per-batch", type=positive_int, default=256, help="Blocks per batch file (default: 256).")
    p.add_argument("--n-workers", type=positive_int, default=None, help="Threads (default: one per core).")
    p.add_argument("--overwrite", action="store_true", help="Replace a finished pyramid in out_folder.")
    p.add_argument("--silent", action="store_true", help="No progress bar.")
    _remote_options(p)
    return p


@_entry(_pyramid_parser)
def pyramid_main(args: argparse.Namespace) -> int:
    """blockfs-pyramid <level0.blockfs> <out_folder>"""
    from .pyramid import build_pyramid, plan_pyramid, pyramid_blocks

    mode = "mode" if args.type == "segmentation" else "mean"
    plan = plan_pyramid(
        args.level0, args.out_folder, args.resolution, mode, args.max_levels, args.factors, args.level0_placement
    )
    bar = _progress(pyramid_blocks(plan), args.silent, "block")
    try:
        pyramid = build_pyramid(
            args.level0, args.out_folder, args.resolution, mode, args.max_levels, args.factors,
            args.level0_placement, args.blocks_per_batch, args.n_workers, args.overwrite, bar.update,
        )
    finally:
        bar.close()
    for level in pyramid.levels:
        print(f"{level.key:12} extent (x, y, z) {level.extent_xyz}  resolution (nm) {level.resolution_nm_xyz}")
    print(pyramid.folder)
    return 0


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-serve",
        description="Serve a blockfs volume or pyramid to Neuroglancer as a precomputed data source over HTTP, "
        "or (--static DIR) a static precomputed tree written by blockfs-precomputed.",
        epilog="Prints the precomputed://http://... source URL, then a Neuroglancer link whose contrast fits "
        "the data. A volume whose directory file changes (new blocks published) is reopened on the next "
        "request. Ctrl-C stops the server.",
    )
    p.add_argument("volume", nargs="?", default=None, help="A .blockfs directory file (one level) or a pyramid folder.")
    p.add_argument("--static", metavar="DIR", default=None,
                   help="Serve this static precomputed tree instead: CORS, HTTP Range (sharded trees), "
                   "<chunk> answered from <chunk>.gz with Content-Encoding: gzip (--gzip trees), "
                   "404 for missing chunks.")
    p.add_argument("--host", default="127.0.0.1", help="Address to bind (default: 127.0.0.1, this machine only).")
    p.add_argument("--port", type=port_number, default=8000, help="Port, 0-65535 (default: 8000; 0 picks a free one).")
    _add_source_options(p)
    p.add_argument("--gzip-level", type=int, choices=range(10), metavar="0-9", default=1,
                   help="gzip level for clients that accept it, 0 = off (default: 1).")
    p.add_argument("--neuroglancer", default=None, metavar="URL",
                   help="Neuroglancer to link to (default: https://neuroglancer-demo.appspot.com).")
    _remote_options(p)
    return p


@_entry(_serve_parser, resumable=False)
def serve_main(args: argparse.Namespace) -> int:
    """blockfs-serve <volume> | --static DIR [--host H] [--port N]: prints the URLs, serves until Ctrl-C."""
    from .serve import link

    base = args.neuroglancer or link.NEUROGLANCER
    if (args.volume is None) == (args.static is None):
        raise ConfigurationError("give either a volume (.blockfs file or pyramid folder) or --static DIR")
    server: CorsServer
    if args.static is not None:
        from .serve.static_server import make_static_server

        server = make_static_server(args.static, args.host, args.port)
        print(server.url(), flush=True)
        print(f"Neuroglancer: {link.link_for_static_tree(args.static, server.url(), base)}", flush=True)
    else:
        from .serve import open_precomputed
        from .serve.server import make_server
        from .zarr.view import ZarrView

        source = open_precomputed(args.volume, args.type, args.resolution)
        view = ZarrView(args.volume, resolution_nm_xyz=args.resolution)
        server = make_server(source, args.host, args.port, args.gzip_level, view)  # logs the URL at INFO
        print(server.url(), flush=True)
        print(f"Neuroglancer: {link.link_for_volume(source, server.url(), base)}", flush=True)
        http = server.url().removeprefix("precomputed://")
        print(f"zarr (OME-Zarr): {http}/zarr   napari: {http}/blockfs.zarr", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nblockfs-serve: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def _precomputed_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-precomputed",
        description="Export a blockfs volume or pyramid as a static Neuroglancer precomputed tree "
        "(info + chunk files).",
        epilog="Serve the tree with 'blockfs-serve --static OUT_FOLDER': Neuroglancer needs CORS on every "
        "response, --sharded trees need HTTP Range, and --gzip trees need <chunk> answered from <chunk>.gz with "
        "Content-Encoding: gzip, which plain file servers (python -m http.server) do not give.",
    )
    p.add_argument("volume", help="A .blockfs directory file (one level) or a pyramid folder.")
    p.add_argument("out_folder", help="The folder to write (created if missing).")
    _add_source_options(p)
    p.add_argument("--gzip", action="store_true", help="Gzip chunks (<chunk>.gz files, or gzip shard encodings).")
    p.add_argument("--sharded", action="store_true", help="Write neuroglancer_uint64_sharded_v1 shard files.")
    p.add_argument("--encoding", choices=("raw", "fpzip", "kempressed"), default="raw",
                   help="Chunk encoding: raw (default; Neuroglancer, tensorstore), or CloudVolume's fpzip or "
                   "kempressed for float volumes (CloudVolume only; fpzip volumes' frames are copied as they are).")
    p.add_argument("--n-workers", type=positive_int, default=None, help="Threads (default: one per core).")
    p.add_argument("--silent", action="store_true", help="No progress bar.")
    return p


@_entry(_precomputed_parser)
def precomputed_main(args: argparse.Namespace) -> int:
    """blockfs-precomputed <volume> <out_folder>"""
    from .serve import open_precomputed
    from .serve.static import count_chunks, write_static_precomputed

    source = open_precomputed(args.volume, args.type, args.resolution)
    bar = _progress(count_chunks(source), args.silent, "chunk")
    try:
        write_static_precomputed(
            source, args.out_folder, args.gzip, args.sharded, n_threads=args.n_workers, progress=bar.update,
            encoding=args.encoding,
        )
    finally:
        bar.close()
    print(args.out_folder)
    return 0


# ------------------------------------------------- blockfs2tif / blockfs2jp2k
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
    _remote_options(p)
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


def _bar_callback(bar: tqdm, per_unit: int = 1) -> Callable[[int, int], None]:
    """An exporter's ``progress(done, total)`` shown on ``bar`` in units of ``per_unit`` (e.g. rows per plane)."""

    def update(done: int, total: int) -> None:
        if bar.total != total // per_unit:
            bar.total = total // per_unit
            bar.refresh()
        if done < total:
            bar.update(done // per_unit - bar.n)
        else:
            bar.n = done // per_unit  # shown once, by close(): an update here would print the final bar twice

    return update


def _run_plane_export(
    args: argparse.Namespace, export: Callable[..., list[str]], progress_in_rows: bool = False, **options: object
) -> int:
    """Run a per-plane exporter with a bar in planes (its progress is in planes, or in plane rows)."""
    from .core import Directory
    from .export.planes import DEFAULT_MEMORY_BUDGET

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
    from .export.tiff import export_tiff

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
    from .export.jp2k import export_jp2k

    return _run_plane_export(args, export_jp2k, psnr=args.psnr, bit_depth=args.bit_depth, codec=args.codec)


# ------------------------------------------------------------------ blockfs-refs
def _refs_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-refs",
        description="Write kerchunk / fsspec references (a JSON, or a parquet folder for very large volumes): "
        "the volume or pyramid as an OME-Zarr group that zarr reads with no blockfs installed. Block files "
        "are referenced, never copied.",
        epilog='Read it with zarr.open_group("reference://", storage_options={"fo": "/abs/out.json"}, mode="r") '
        "from any folder (absolute file:// URLs by default; with --relative, open from the references' folder).",
    )
    p.add_argument("volume", help="A .blockfs directory file (one level) or a pyramid folder.")
    p.add_argument("out_json", help="The references JSON to write (padded edge chunks go beside it, <name>.edges), "
                   "or with --format parquet the references folder (replaced; padded edge chunks inside it).")
    p.add_argument("--format", dest="fmt", choices=("json", "parquet"), default="json",
                   help="json (default) or parquet (kerchunk's lazy layout, fsspec's fo=<folder>; needs pandas and "
                   "fastparquet to write and read; zarr v2 only).")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--relative", action="store_true",
                       help="Paths relative to the references' folder: open from that folder "
                       "(default: absolute file:// URLs).")
    where.add_argument("--url-prefix", default=None, metavar="PREFIX",
                       help="What the references' folder is called for readers, e.g. s3://bucket/path/.")
    p.add_argument("--inline-edges", action="store_true",
                   help="Put padded edge chunks into the JSON (base64), no side file.")
    p.add_argument("--zarr-format", type=int, choices=(2, 3), default=2, help="2: NGFF 0.4 (default); 3: NGFF 0.5.")
    p.add_argument("--resolution", nargs=3, type=float, metavar=("X", "Y", "Z"), default=None,
                   help="Voxel size of the finest level in nm, x y z "
                   "(default: the pyramid's or the volume's metadata).")
    return p


@_entry(_refs_parser)
def refs_main(args: argparse.Namespace) -> int:
    """blockfs-refs <volume|pyramid> <out.json|out.parq> [--format parquet] [--relative | --url-prefix PREFIX]"""
    from .zarr.refs import write_references

    summary = write_references(
        args.volume, args.out_json, args.url_prefix, args.inline_edges, args.zarr_format, args.resolution,
        relative=args.relative, fmt=args.fmt,
    )
    logger.info(
        "%d chunk references, %d padded edge chunks (%d bytes of side file), references %d bytes",
        summary.chunks, summary.edge_chunks, summary.side_bytes, summary.json_bytes,
    )
    print(summary.json_path)
    return 0
