"""Console scripts: each is ``main(argv) -> int`` over a plain function.

Errors of the package become exit code 1 with a one-line message; argparse
errors exit 2. Long work shows a tqdm bar unless ``--silent``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence

from .core.errors import BlockfsError

logger = logging.getLogger("blockfs_tasks")

Main = Callable[[Sequence[str] | None], int]


def _entry(parser_factory: Callable[[], argparse.ArgumentParser]) -> Callable[[Callable[[argparse.Namespace], int]], Main]:
    """Wrap a subcommand: parse argv, set up logging, turn package errors into exit 1."""

    def wrap(run: Callable[[argparse.Namespace], int]) -> Main:
        @functools.wraps(run)
        def main(argv: Sequence[str] | None = None) -> int:
            parser = parser_factory()
            parser.add_argument("--log-level", default="WARNING", help="Logging level (default: WARNING).")
            args = parser.parse_args(argv)
            logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
            try:
                return run(args)
            except (BlockfsError, OSError) as e:
                print(f"{parser.prog}: error: {e}", file=sys.stderr)
                return 1

        return main

    return wrap


def _progress(total: int, silent: bool, unit: str):  # type: ignore[no-untyped-def]
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


@_entry(_mv_parser("blockfs-cp", "Copy"))
def cp_main(args: argparse.Namespace) -> int:
    """blockfs-cp <src> <dest>"""
    from .core.relocate import copy_volume

    print(copy_volume(args.source, args.dest_directory, move=False))
    return 0


def _rebase_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-rebase",
        description="Rewrite a directory file to use the block files beside it, after moving them by hand.",
    )
    p.add_argument("index_file", help="The .blockfs directory file to rewrite.")
    p.add_argument("--block-size", type=int, default=4096 * 16, help="Bytes per read when copying the index.")
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
    p.add_argument("blockfs_file", help="The directory file of the volume.")
    p.add_argument("--json", action="store_true", help="Print JSON instead of text.")
    return p


@_entry(_info_parser)
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
        prog="blockfs-verify", description="Decode every block of a volume and check its checksum."
    )
    p.add_argument("blockfs_file", help="The directory file of the volume.")
    p.add_argument("--n-workers", type=int, default=None, help="Threads (default: one per core).")
    p.add_argument("--silent", action="store_true", help="No progress bar.")
    return p


@_entry(_verify_parser)
def verify_main(args: argparse.Namespace) -> int:
    """blockfs-verify <blockfs-file>: exit 1 naming each bad block."""
    from .core import Directory
    from .core.report import verify_volume

    bar = _progress(len(Directory.open(args.blockfs_file)), args.silent, "block")
    try:
        bad = verify_volume(args.blockfs_file, args.n_workers, bar.update)
    finally:
        bar.close()
    for block in bad:
        print(f"BAD {block}")
    print(f"{args.blockfs_file}: {bar.n - len(bad)} blocks good, {len(bad)} bad")
    return 1 if bad else 0
