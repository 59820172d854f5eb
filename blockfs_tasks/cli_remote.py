"""Console scripts and options for remote volumes: ``blockfs-cp`` to and from buckets, ``--storage-options``.

Every tool that reads a volume accepts a URL (``s3://bucket/vol.blockfs``,
``gs://...``, ``https://...``). Credentials and endpoints come from the
environment as for any fsspec client (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, ``FSSPEC_S3_ENDPOINT_URL``...), or from
``--storage-options JSON``: fsspec's options for the URLs' protocol, applied
as fsspec's own configuration for this process (what ``FSSPEC_S3='{...}'``
does), so every reader the tool starts (threads, worker processes, MPI
ranks that parse the same command line) gets them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .cli import _entry, _progress, positive_int
from .core.bytesource import is_remote, url_protocol
from .core.errors import ConfigurationError


def storage_options_json(text: str) -> dict[str, Any]:
    """argparse type: a JSON object of fsspec storage options."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, e.g. '{{\"anon\": true}}': {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, e.g. '{{\"anon\": true}}', got {text!r}")
    return value


def add_storage_options(p: argparse.ArgumentParser) -> None:
    """Add ``--storage-options JSON`` to a tool that reads volumes."""
    p.add_argument(
        "--storage-options", type=storage_options_json, default=None, metavar="JSON",
        help="fsspec options for s3://, gs://, http(s):// volumes, e.g. '{\"endpoint_url\": \"http://host:9000\"}' "
        "or '{\"anon\": true}' (default: from the environment, e.g. AWS_* variables).",
    )


def apply_storage_options(args: argparse.Namespace) -> None:
    """Make ``args.storage_options`` fsspec's configuration for the protocols of the URLs in ``args``."""
    options = getattr(args, "storage_options", None)
    if not options:
        return
    import fsspec.config

    values = [v for v in vars(args).values() if isinstance(v, str)]
    for protocol in {url_protocol(v) for v in values if is_remote(v)}:
        fsspec.config.conf.setdefault(str(protocol), {}).update(options)


def _cp_parser() -> argparse.ArgumentParser:
    from . import cli

    p = cli._cp_parser()
    p.description = (
        "Copy a blockfs directory file and its block files into another folder, or to or from a bucket "
        "(s3://bucket/prefix/, gs://...; from https:// too)."
    )
    p.epilog = (
        "The folder is created if it does not exist (its parent must exist). To or from a bucket: block files "
        "first, several at once, the directory file last; a rerun skips files already copied (same size and "
        "CRC-32C), so an interrupted copy resumes."
    )
    p.add_argument("--n-workers", type=positive_int, default=None,
                   help="Files copied at once to or from a bucket (default: 8).")
    add_storage_options(p)
    return p


@_entry(_cp_parser)
def cp_main(args: argparse.Namespace) -> int:
    """blockfs-cp <src> <dest>: local to local (re-encoding with --compression), or to or from a bucket."""
    from . import cli

    if not (is_remote(args.source) or is_remote(args.dest_directory)):
        return int(cli.cp_main.__wrapped__(args))  # type: ignore[attr-defined]  # functools.wraps sets it
    if args.compression is not None:
        raise ConfigurationError(
            "--compression re-encodes into a local volume: copy to or from the bucket first, then re-encode locally"
        )
    from .core.remote_copy import copy_remote

    bar = _progress(None, args.silent, "B")
    try:
        dest = copy_remote(args.source, args.dest_directory, args.storage_options, args.n_workers, bar.update)
    finally:
        bar.close()
    print(dest)
    return 0
