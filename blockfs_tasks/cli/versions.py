"""Console scripts of versions: ``blockfs-version``, ``blockfs-compact`` and ``blockfs-delete``.

Each is a ``main(argv) -> int`` over :mod:`blockfs_tasks.core.versions`, wrapped by
:func:`blockfs_tasks.cli.common._entry` (package errors: exit 1 with one line).
"""

from __future__ import annotations

import argparse
import json

from .common import _entry


def _version_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-version",
        description="Versions of a blockfs volume: commits, branches, tags, checkout, diff.",
        epilog="A version opens read-only as VOL@REF (a tag, a branch or a unique commit-id prefix) "
        "everywhere a volume path is taken, e.g. blockfs-serve vol.blockfs@v1.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    c = sub.add_parser("commit", help="Commit the working volume onto its branch; prints the commit id.")
    c.add_argument("volume", help="The volume's directory file.")
    c.add_argument("-m", "--message", required=True, help="What changed.")
    c.add_argument("--author", default=None, help="Who committed (default: user@host).")
    lg = sub.add_parser("log", help="Commits, newest first: id, time, author, blocks changed, message.")
    lg.add_argument("volume", help="The volume's directory file.")
    lg.add_argument("ref", nargs="?", default=None, help="Where to start (default: the checked-out branch).")
    lg.add_argument("-n", type=int, default=None, help="At most this many commits.")
    lg.add_argument("--json", action="store_true", help="Print JSON lines.")
    for kind in ("tag", "branch"):
        t = sub.add_parser(kind, help=f"Create a {kind} at REF (default: the working volume's commit), "
                           f"delete one with -d, or list them.")
        t.add_argument("volume", help="The volume's directory file.")
        t.add_argument("name", nargs="?", default=None, help=f"The {kind}'s name (none: list every {kind}).")
        t.add_argument("ref", nargs="?", default=None, help="The commit (tag, branch or id prefix).")
        t.add_argument("-d", "--delete", metavar="NAME", default=None, help=f"Delete the {kind} NAME.")
    co = sub.add_parser("checkout", help="Make the working volume a branch's head (or a commit, read-only).")
    co.add_argument("volume", help="The volume's directory file.")
    co.add_argument("ref", help="A branch, tag or commit id prefix.")
    co.add_argument("--force", action="store_true", help="Drop uncommitted changes of the working volume.")
    d = sub.add_parser("diff", help="Block positions (x, y, z origins) that differ between A and B.")
    d.add_argument("volume", help="The volume's directory file.")
    d.add_argument("a", help="A ref, or WORKING for the working volume.")
    d.add_argument("b", nargs="?", default="WORKING", help="A ref (default: WORKING).")
    d.add_argument("--json", action="store_true", help="Print JSON.")
    s = sub.add_parser("status", help="The checked-out branch, its commit, and whether the volume changed since.")
    s.add_argument("volume", help="The volume's directory file.")
    return p


@_entry(_version_parser, resumable=False)
def version_main(args: argparse.Namespace) -> int:
    """blockfs-version COMMAND VOL ...: one function per subcommand."""
    return {"commit": _commit, "log": _log, "tag": _ref, "branch": _ref, "checkout": _checkout,
            "diff": _diff, "status": _status}[args.command](args)


def _commit(args: argparse.Namespace) -> int:
    from ..core.versions import commit_working

    print(commit_working(args.volume, args.message, args.author))
    return 0


def _log(args: argparse.Namespace) -> int:
    from ..core.versions import history, read_head, resolve

    start = resolve(args.volume, args.ref) if args.ref else _branch_head(args.volume, read_head(args.volume))
    for info in history(args.volume, start, args.n):
        if args.json:
            print(json.dumps(info.to_dict()))
        else:
            first = info.message.splitlines()[0] if info.message else ""
            print(f"{info.id[:12]}  {info.time}  {info.author}  {info.changed:>8} blocks  {first}")
    return 0


def _branch_head(volume: str, state: object) -> str | None:
    from ..core.versions import HEADS, read_ref

    branch, base = state.branch, state.base  # type: ignore[attr-defined]  # a HeadState
    return read_ref(volume, HEADS, branch).commit if branch else base


def _ref(args: argparse.Namespace) -> int:
    from ..core.errors import ConfigurationError
    from ..core.versions import HEADS, TAGS, create_ref, delete_ref, list_refs, read_head

    kind = TAGS if args.command == "tag" else HEADS
    if args.delete is not None:
        if args.name is not None:
            raise ConfigurationError(f"{args.command} -d NAME takes no other name")
        cid = delete_ref(args.volume, kind, args.delete)
        print(f"deleted {args.command} {args.delete} (was {cid[:12]})")
        return 0
    if args.name is None:
        current = read_head(args.volume).branch if kind == HEADS else None
        for name, cid in list_refs(args.volume, kind).items():
            print(f"{'*' if name == current else ' '} {name:24} {cid[:12]}")
        return 0
    print(create_ref(args.volume, kind, args.name, args.ref))
    return 0


def _checkout(args: argparse.Namespace) -> int:
    from ..core.versions import checkout

    print(checkout(args.volume, args.ref, args.force))
    return 0


def _diff(args: argparse.Namespace) -> int:
    from ..core.versions import diff

    origins = diff(args.volume, args.a, args.b)
    if args.json:
        print(json.dumps({"count": len(origins), "origins_xyz": origins}))
        return 0
    for origin in origins:
        print(" ".join(str(v) for v in origin))
    print(f"{len(origins)} block(s) differ")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ..core.versions import diff, read_head

    state = read_head(args.volume)
    head = _branch_head(args.volume, state)
    changed = diff(args.volume, state.base, None) if state.base else None
    print(f"branch   {state.branch or '(none: a commit is checked out)'}")
    print(f"commit   {state.base or '(none yet)'}")
    if state.branch and head != state.base:
        print(f"behind   the branch is at {head}: 'blockfs-version checkout VOL {state.branch}' catches up")
    if changed is not None:
        print(f"changed  {len(changed)} block(s) since the commit")
    return 0


def _compact_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-compact",
        description="Give back the space of block frames that neither the working volume nor any commit reachable "
        "from a branch or tag references: holes punched in place (nothing is rewritten or republished), or, "
        "where the filesystem cannot punch holes, live frames copied to new block files and the directory and "
        "commit files that name them republished (commit ids do not change).",
        epilog="Refuses while a writing session is open. Safe to kill at any point; rerun to finish.",
    )
    p.add_argument("volume", help="The volume's directory file.")
    p.add_argument("--grace-seconds", type=float, default=24 * 3600.0,
                   help="Remove unreachable commits only once older than this (default: one day).")
    p.add_argument("--method", choices=("auto", "punch", "copy"), default="auto",
                   help="punch: holes in place; copy: live frames to new block files; "
                   "auto (default): punch where the filesystem can, else copy.")
    p.add_argument("--json", action="store_true", help="Print JSON.")
    return p


@_entry(_compact_parser)
def compact_main(args: argparse.Namespace) -> int:
    """blockfs-compact VOL: prints bytes reclaimed, live and dead."""
    from ..core.versions import compact

    report = compact(args.volume, args.grace_seconds, args.method)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"reclaimed {report.reclaimed_bytes} bytes; live {report.live_bytes}, dead left {report.dead_bytes} "
              f"(with punch: frames sharing a filesystem block with a live one); {len(report.commits_removed)} "
              f"unreachable commit(s) removed")
        if report.retired_waiting:
            print(f"{len(report.retired_waiting)} block file(s) copied away are removed by a compaction once "
                  f"--grace-seconds old: {', '.join(report.retired_waiting)}")
    return 0


def _delete_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blockfs-delete",
        description="Clear a block-aligned region of a volume: its blocks read as zeros "
        "(their space comes back at the next blockfs-compact, once no commit references them).",
    )
    p.add_argument("volume", help="The volume's directory file.")
    for axis in "xyz":
        p.add_argument(f"--{axis}0", type=int, default=0, help=f"First voxel in {axis}, on the block grid (default 0).")
        p.add_argument(f"--{axis}1", type=int, default=None,
                       help=f"End voxel in {axis}, exclusive, on the block grid or the extent (default: the extent).")
    return p


@_entry(_delete_parser)
def delete_main(args: argparse.Namespace) -> int:
    """blockfs-delete VOL [--x0 --x1 --y0 --y1 --z0 --z1]: prints how many blocks were cleared."""
    from ..core import format as fmt
    from ..core.versions import delete_region

    ex, ey, ez = fmt.read_spec(args.volume).grid.extent_xyz
    n = delete_region(args.volume, args.x0, ex if args.x1 is None else args.x1, args.y0,
                      ey if args.y1 is None else args.y1, args.z0, ez if args.z1 is None else args.z1)
    print(f"{n} block(s) cleared")
    return 0
