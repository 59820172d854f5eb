"""``--storage-options``: fsspec options for the URLs a tool reads (s3://, gs://, https://).

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

from ..core.bytesource import is_remote, url_protocol


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

