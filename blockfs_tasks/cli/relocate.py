"""``blockfs-mv``, ``blockfs-cp`` (local, re-encoding, or to and from a bucket) and ``blockfs-rebase``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..core.bytesource import is_remote
from ..core.errors import ConfigurationError
from .common import _entry, _progress, positive_int
from .storage import add_storage_options


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
    from ..core.relocate import copy_volume

    print(copy_volume(args.source, args.dest_directory, move=True))
    return 0


def _cp_parser() -> argparse.ArgumentParser:
    from .codecs import add_codec_arguments

    p = _mv_parser("blockfs-cp", "Copy")()
    p.description = (
        "Copy a blockfs directory file and its block files into another folder, or to or from a bucket "
        "(s3://bucket/prefix/, gs://...; from https:// too)."
    )
    p.epilog = (
        "The folder is created if it does not exist (its parent must exist). To or from a bucket: block files "
        "first, several at once, the directory file last; a rerun skips files already copied (same size and "
        "CRC-32C), so an interrupted copy resumes."
    )
    add_codec_arguments(p, "With --compression, every block is re-encoded into a new volume (else copied as is).")
    p.add_argument("--silent", action="store_true", help="No progress bar.")
    p.add_argument("--n-workers", type=positive_int, default=None,
                   help="Files copied at once to or from a bucket (default: 8).")
    add_storage_options(p)
    return p


@_entry(_cp_parser)
def cp_main(args: argparse.Namespace) -> int:
    """blockfs-cp <src> <dest>: local to local (re-encoding with --compression), or to or from a bucket."""
    from .codecs import codec_options_given

    if args.compression is None and codec_options_given(args):
        raise ConfigurationError("--compression-level, --shuffle and --bitround-keepbits need --compression")
    if is_remote(args.source) or is_remote(args.dest_directory):
        return _copy_remote(args)
    if args.compression is None:
        from ..core.relocate import copy_volume

        print(copy_volume(args.source, args.dest_directory, move=False))
        return 0
    from ..core.codecs.recode import recode_volume

    bar = _progress(None, args.silent, "block")
    try:
        print(recode_volume(args.source, args.dest_directory, args.compression, args.compression_level,
                            args.shuffle, args.bitround_keepbits, progress=bar.update))
    finally:
        bar.close()
    return 0


def _copy_remote(args: argparse.Namespace) -> int:
    """Copy a volume to or from a bucket, as it is (block files in parallel, the directory last)."""
    if args.compression is not None:
        raise ConfigurationError(
            "--compression re-encodes into a local volume: copy to or from the bucket first, then re-encode locally"
        )
    from ..core.remote_copy import copy_remote

    bar = _progress(None, args.silent, "B")
    try:
        dest = copy_remote(args.source, args.dest_directory, args.storage_options, args.n_workers, bar.update)
    finally:
        bar.close()
    print(dest)
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
    from ..core.relocate import rebase_volume

    rebase_volume(args.index_file, args.block_size)
    return 0

