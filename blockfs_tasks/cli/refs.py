"""``blockfs-refs``: kerchunk / fsspec references that let zarr read a volume or pyramid without blockfs."""

from __future__ import annotations

import argparse

from .common import _entry, logger


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
    from ..zarr.refs import write_references

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
