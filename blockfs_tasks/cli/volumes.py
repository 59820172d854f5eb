"""``blockfs-info``, ``blockfs-verify`` and ``blockfs-upgrade``: what a volume is, whether it is whole, its format."""

from __future__ import annotations

import argparse
import json

from .common import _entry, _progress, positive_int
from .storage import add_storage_options


def _info_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blockfs-info", description="Describe a blockfs volume.")
    p.add_argument("blockfs_file", help="The directory file of the volume (a path, or s3://, gs://, https:// URL).")
    p.add_argument("--json", action="store_true", help="Print JSON instead of text.")
    add_storage_options(p)
    return p


@_entry(_info_parser, resumable=False)
def info_main(args: argparse.Namespace) -> int:
    """blockfs-info <blockfs-file>"""
    from ..core.report import volume_info

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
    add_storage_options(p)
    return p


@_entry(_verify_parser, resumable=False)
def verify_main(args: argparse.Namespace) -> int:
    """blockfs-verify <blockfs-file>: exit 1 naming each bad block and index page.

    The summary says what the volume's format let it check ("format 1.0.0:
    decode check only").
    """
    from ..core.report import verify_volume

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
    from ..core.upgrade import upgrade_volume

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

