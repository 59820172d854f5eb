"""Command-line options that choose a codec (``blockfs-cp --compression ...``), shared by the tools."""

from __future__ import annotations

import argparse

from ..core.codec import SHUFFLES, known_compressions


def add_codec_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """Add ``--compression``, ``--compression-level``, ``--shuffle``, ``--bitround-keepbits`` under ``what``."""
    g = p.add_argument_group("codec", what)
    g.add_argument("--compression", default=None, choices=known_compressions(),
                   help="Blosc compressor, or fpzip / pcodec (lossless) / kempressed for float volumes.")
    g.add_argument("--compression-level", type=int, default=None,
                   help="Blosc 0-9 (default 5), pcodec 0-12 (default 8); fpzip and kempressed have none.")
    g.add_argument("--shuffle", type=int, choices=sorted(SHUFFLES), default=1,
                   help="Blosc shuffle: 0 none, 1 byte (default), 2 bit.")
    g.add_argument("--bitround-keepbits", type=int, default=None, metavar="N",
                   help="Lossy, float volumes: keep N mantissa bits (relative error <= 2**-(N+1)).")


def codec_options_given(args: argparse.Namespace) -> bool:
    """True when any codec option other than ``--compression`` differs from its default."""
    return args.compression_level is not None or args.shuffle != 1 or args.bitround_keepbits is not None
