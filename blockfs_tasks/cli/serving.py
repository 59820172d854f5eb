"""``blockfs-pyramid``, ``blockfs-serve`` and ``blockfs-precomputed``: levels, and Neuroglancer's view of them."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..core.errors import ConfigurationError
from .common import _entry, _progress, port_number, positive_int
from .storage import add_storage_options

if TYPE_CHECKING:
    from ..serve.server import CorsServer

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
    add_storage_options(p)
    return p


@_entry(_pyramid_parser)
def pyramid_main(args: argparse.Namespace) -> int:
    """blockfs-pyramid <level0.blockfs> <out_folder>"""
    from ..pyramid import build_pyramid, plan_pyramid, pyramid_blocks

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
    add_storage_options(p)
    return p


@_entry(_serve_parser, resumable=False)
def serve_main(args: argparse.Namespace) -> int:
    """blockfs-serve <volume> | --static DIR [--host H] [--port N]: prints the URLs, serves until Ctrl-C."""
    from ..serve import link

    base = args.neuroglancer or link.NEUROGLANCER
    if (args.volume is None) == (args.static is None):
        raise ConfigurationError("give either a volume (.blockfs file or pyramid folder) or --static DIR")
    server: CorsServer
    if args.static is not None:
        from ..serve.static_server import make_static_server

        server = make_static_server(args.static, args.host, args.port)
        print(server.url(), flush=True)
        print(f"Neuroglancer: {link.link_for_static_tree(args.static, server.url(), base)}", flush=True)
    else:
        from ..serve import open_precomputed
        from ..serve.server import make_server
        from ..zarr.view import ZarrView

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
    from ..serve import open_precomputed
    from ..serve.static import count_chunks, write_static_precomputed

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

