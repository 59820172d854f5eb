"""Fragment and journal files: encoding their header and entries, reading them back.

A fragment (batch writer) and a journal (live writer) share one layout (see
:mod:`.format`): a checked header with the volume's spec, then 32-byte
entries in commit order, each with its own CRC-32C.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codec import checksum
from .errors import CorruptIndexError, FormatError, MissingFileError, TruncatedFileError, UnsupportedVersionError
from .spec import (
    CRC,
    ENTRY_DTYPE,
    ENTRY_STRUCT,
    FRAGMENT_MAGIC,
    HEADER,
    MAX_OFFSET,
    VERSION,
    VERSION_2_0,
    VolumeSpec,
    max_frame_size,
    padded_json,
    parse_json,
    read_header,
)


@dataclass
class Fragment:
    """A fragment or journal as read: the spec it was written for and its valid entries."""

    spec: VolumeSpec
    entries: np.ndarray  # ENTRY_DTYPE, commit order
    dropped: int  # torn or corrupt entries left out


def encode_fragment_header(spec: VolumeSpec, batch: dict[str, Any] | None = None) -> bytes:
    """Header of a fragment or journal file for a volume of ``spec``.

    ``batch`` (a fragment's optional "Batch" key) says what the batch covers,
    so that a changed plan is not mistaken for a finished batch.
    """
    md = spec.to_dict()
    if batch is not None:
        md["Batch"] = batch
    body = padded_json(md, HEADER.size)
    head = HEADER.pack(FRAGMENT_MAGIC, len(body), HEADER.size + len(body) + 8) + body
    return head + CRC.pack(checksum(head)) + bytes(4)


def encode_entry(position: int, file: int, offset: int, size: int, crc: int) -> bytes:
    """One 32-byte fragment entry, its own checksum included."""
    head = ENTRY_STRUCT.pack(position, offset, size, file, crc)
    return head + checksum(head).to_bytes(4, "little")


def _fragment_head(path: str, data: bytes) -> tuple[VolumeSpec, dict[str, Any], int]:
    """Spec, JSON and entries' offset of a fragment whose first bytes are ``data`` (header CRC checked)."""
    md_size, start = read_header(path, data, FRAGMENT_MAGIC, "blockfs fragment file")
    if md_size > len(data) - HEADER.size:
        raise TruncatedFileError(f"{path}: fragment header is cut short")
    head = data[: HEADER.size + md_size]
    md = parse_json(path, head[HEADER.size :], "fragment spec")
    version = md.get("Version")
    if version == VERSION:
        expected = len(head) + 8
        if len(head) % 8 or len(data) < expected or CRC.unpack_from(data, len(head))[0] != checksum(head):
            raise CorruptIndexError(f"{path}: the fragment header does not match its CRC-32C (corrupt)")
        if any(data[len(head) + CRC.size : expected]):
            raise FormatError(f"{path}: the padding after the fragment header is not zero")
    elif version == VERSION_2_0:
        expected = len(head)
    else:
        raise UnsupportedVersionError(
            f"{path}: fragment of format version {version!r:.40}; this reader knows {VERSION_2_0}, {VERSION}"
        )
    if start != expected:
        raise FormatError(f"{path}: fragment entries start at {start}, expected {expected}")
    return VolumeSpec.from_dict(md, path), md, start


def read_fragment_header(path: str) -> tuple[VolumeSpec, dict[str, Any] | None]:
    """The volume spec and "Batch" of a fragment, reading only its header (cheap, bounded)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(HEADER.size)
            md_size, _ = read_header(path, head, FRAGMENT_MAGIC, "blockfs fragment file")
            data = head + f.read(min(md_size, size) + 8)
    except FileNotFoundError as e:
        raise MissingFileError(f"{path}: no such fragment file") from e
    spec, md, _ = _fragment_head(path, data)
    return spec, md.get("Batch")


def read_fragment(path: str, strict: bool = True) -> Fragment:
    """Read a fragment file; ``strict`` makes any torn or corrupt entry an error.

    A journal is read with ``strict=False``: a writer killed mid-append leaves
    a torn last entry, which is dropped, not an error. A corrupt header is an
    error either way.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise MissingFileError(f"{path}: no such fragment file") from e
    return parse_fragment(path, data, strict)


def fragment_batch(path: str, data: bytes) -> tuple[VolumeSpec, dict[str, Any] | None]:
    """The volume spec and "Batch" of the fragment whose bytes (its header at least) are ``data``."""
    spec, md, _ = _fragment_head(path, data)
    return spec, md.get("Batch")


def parse_fragment(path: str, data: bytes, strict: bool = True) -> Fragment:
    """A fragment from its bytes (read from a file, or an object store's object named ``path``)."""
    spec, _, start = _fragment_head(path, data)
    body = data[start:]
    tail = len(body) % ENTRY_DTYPE.itemsize
    if tail and strict:
        raise TruncatedFileError(f"{path}: fragment ends in a partial entry ({tail} bytes)")
    n = len(body) // ENTRY_DTYPE.itemsize
    entries = np.frombuffer(body, ENTRY_DTYPE, count=n)
    step = ENTRY_DTYPE.itemsize
    ok = np.fromiter(
        (checksum(body[i : i + 28]) for i in range(0, n * step, step)), np.uint32, count=n
    ) == entries["entry_crc32c"]
    ok &= (entries["position"] < spec.grid.n_blocks) & (entries["offset"] < MAX_OFFSET)
    ok &= entries["size"] <= max_frame_size(spec)
    bad = int(n - ok.sum())
    if bad and strict:
        first = int(np.flatnonzero(~ok)[0])
        raise FormatError(f"{path}: {bad} corrupt fragment entries (first: entry {first})")
    return Fragment(spec, entries[ok].copy(), bad + (1 if tail else 0))


def newest_entries(entries: np.ndarray) -> np.ndarray:
    """Keep, for each position, only the last entry (entries in commit order)."""
    if len(entries) == 0:
        return entries
    reversed_positions = entries["position"][::-1]
    _, first_in_reversed = np.unique(reversed_positions, return_index=True)
    return entries[len(entries) - 1 - first_in_reversed]
