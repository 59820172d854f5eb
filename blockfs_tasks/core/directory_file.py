"""Directory files: reading any known version (:func:`read_directory`, :func:`read_spec`) and writing 2.1.0."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from .bytesource import ByteSource
from .checks import check_positive
from .codec import checksum
from .errors import CorruptIndexError, FormatError, MissingFileError, TruncatedFileError, UnsupportedVersionError
from .format_v1 import read_v1
from .paged_index import PagedIndex, page_checksums
from .remote_index import RemotePagedIndex, SourceFile
from .spec import (
    CRC,
    HEADER,
    INDEX_DTYPE,
    KNOWN_VERSIONS,
    MAGIC,
    MMAP_THRESHOLD,
    PAGE_ENTRIES,
    VERSION,
    VERSION_1,
    VERSION_2_0,
    DirectoryContents,
    VolumeSpec,
    align8,
    check_names,
    max_frame_size,
    padded_json,
    parse_json,
    read_array,
    read_exactly,
    read_header,
    stored_int,
)


def read_directory(
    path: str | os.PathLike[str], mmap_threshold: int | None = None, source: ByteSource | None = None
) -> DirectoryContents:
    """Read a directory file of any known format version, checking what it can.

    With a remote ``source`` (:mod:`.bytesource`), ``path`` is a URL and a
    2.1.0 index is fetched page by page as blocks are looked up
    (:class:`~.remote_index.RemotePagedIndex`); older indexes are fetched whole.

    Every byte comes from one open file, so a directory replaced meanwhile is
    never read half old, half new. An index larger than ``mmap_threshold``
    bytes (default :data:`MMAP_THRESHOLD`) is memory-mapped
    (:class:`PagedIndex`), so opening costs the same
    whatever the volume's size. Malformed input raises a :class:`FormatError`
    (never more memory than the file's size justifies).
    """
    path = os.fspath(path)
    if mmap_threshold is None:
        mmap_threshold = MMAP_THRESHOLD
    with _open_directory(path, source) as f:
        size, head, md, index_offset = _read_head(path, f)
        version = md.get("Version")
        if version == VERSION:
            return _read_v21(path, f, size, head, md, index_offset, mmap_threshold)
        if version == VERSION_2_0:
            return _read_v20(path, f, size, len(head) - HEADER.size, md, index_offset, mmap_threshold)
        if version == VERSION_1:
            return read_v1(path, f, size, md, index_offset)
    raise _unknown_version(path, version)


def _open_directory(path: str, source: ByteSource | None = None) -> BinaryIO:
    if source is not None and source.remote:
        return SourceFile(source, path)  # type: ignore[return-value]  # the subset of BinaryIO read here
    try:
        return open(path, "rb")
    except FileNotFoundError as e:
        raise MissingFileError(f"{path}: no such blockfs directory file") from e


def _read_head(path: str, f: BinaryIO) -> tuple[int, bytes, dict[str, Any], int]:
    """File size, header + JSON bytes, parsed JSON and index offset of an open directory file."""
    size = f.size if isinstance(f, SourceFile) else os.fstat(f.fileno()).st_size
    head = f.read(HEADER.size)
    md_size, index_offset = read_header(path, head, MAGIC, "blockfs directory file")
    if md_size > size - HEADER.size:
        raise TruncatedFileError(f"{path}: metadata is cut short ({size - HEADER.size} of {md_size} bytes)")
    raw_md = read_exactly(f, md_size, path, "metadata")
    return size, head + raw_md, parse_json(path, raw_md, "metadata"), index_offset


def _check_head_crc(path: str, f: BinaryIO, head: bytes) -> None:
    """Read the CRC-32C after a 2.1.0 header + JSON (``f`` is positioned there) and check it."""
    stored_crc = CRC.unpack(read_exactly(f, CRC.size, path, "header checksum"))[0]
    if len(head) % 8 or stored_crc != checksum(head):
        raise CorruptIndexError(f"{path}: the header and JSON metadata do not match their CRC-32C (corrupt)")


def _unknown_version(path: str, version: Any) -> UnsupportedVersionError:
    return UnsupportedVersionError(
        f"{path}: format version {version!r:.40}; this reader knows {', '.join(KNOWN_VERSIONS)}"
    )

def read_spec(path: str | os.PathLike[str], source: ByteSource | None = None) -> VolumeSpec:
    """The spec of a directory file, reading only its header and JSON metadata (cheap, bounded).

    For 2.1.0 the header CRC-32C is checked; the index is neither read nor
    checked (:func:`read_directory` does that). A 1.0.0 directory is read
    whole: its spec needs the stored entries' layout checked first.
    """
    path = os.fspath(path)
    with _open_directory(path, source) as f:
        _, head, md, _ = _read_head(path, f)
        version = md.get("Version")
        if version == VERSION:
            _check_head_crc(path, f, head)
            return VolumeSpec.from_dict(md, path)
        if version == VERSION_2_0:
            return VolumeSpec.from_dict(md, path)
    if version == VERSION_1:
        return read_directory(path, source=source).spec
    raise _unknown_version(path, version)

def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The whole JSON metadata of a directory file (header only; for 2.1.0 its CRC-32C is checked).

    Commit files keep their commit record here (key ``Commit``, see :mod:`.format`).
    """
    path = os.fspath(path)
    with _open_directory(path) as f:
        _, head, md, _ = _read_head(path, f)
        if md.get("Version") == VERSION:
            _check_head_crc(path, f, head)
        return md


def _index_size_check(path: str, size: int, index_offset: int, n: int) -> None:
    expected = index_offset + n * INDEX_DTYPE.itemsize
    if size < expected:
        raise TruncatedFileError(f"{path}: directory is truncated: {size} bytes, expected {expected}")
    if size > expected:
        raise FormatError(f"{path}: {size - expected} unexpected bytes after the index")


def _read_v21(
    path: str, f: BinaryIO, size: int, head: bytes, md: dict[str, Any], index_offset: int, mmap_threshold: int
) -> DirectoryContents:
    _check_head_crc(path, f, head)
    spec = VolumeSpec.from_dict(md, path)
    names = check_names(path, md.get("BlockFiles"), relative=True)
    page_entries = stored_int(path, md, "IndexPageEntries", 1, 1 << 30)
    n = spec.grid.n_blocks
    n_pages = -(-n // page_entries)
    table_at = len(head) + CRC.size
    if index_offset != align8(table_at + 4 * n_pages):
        raise FormatError(f"{path}: the index starts at {index_offset}, expected {align8(table_at + 4 * n_pages)}")
    _index_size_check(path, size, index_offset, n)
    table = read_exactly(f, index_offset - table_at, path, "index page table")
    if any(table[4 * n_pages :]):
        raise FormatError(f"{path}: the padding after the index page table is not zero")
    page_crcs = np.frombuffer(table, "<u4", count=n_pages)
    return DirectoryContents(
        VERSION, spec, names,
        _read_index(path, f, spec, names, index_offset, page_entries, page_crcs, mmap_threshold, paged=True),
        True, True,
    )


def _read_v20(
    path: str, f: BinaryIO, size: int, md_size: int, md: dict[str, Any], index_offset: int, mmap_threshold: int
) -> DirectoryContents:
    spec = VolumeSpec.from_dict(md, path)
    names = check_names(path, md.get("BlockFiles", []), relative=True)
    crc = stored_int(path, md, "IndexCRC32C", 0, (1 << 32) - 1)
    if index_offset != HEADER.size + md_size:
        raise FormatError(f"{path}: the index starts at {index_offset}, expected {HEADER.size + md_size}")
    n = spec.grid.n_blocks
    _index_size_check(path, size, index_offset, n)
    index = _read_index(path, f, spec, names, index_offset, n, np.array([crc], "<u4"), mmap_threshold)
    return DirectoryContents(VERSION_2_0, spec, names, index, True, False)


def _read_index(
    path: str,
    f: BinaryIO,
    spec: VolumeSpec,
    names: list[str],
    index_offset: int,
    page_entries: int,
    page_crcs: np.ndarray,
    mmap_threshold: int,
    paged: bool = False,
) -> np.ndarray | PagedIndex:
    """Read and check a 2.x index, or map it for checking page by page (sizes already checked).

    ``paged``: the CRCs are 2.1.0's per page, so a remote index can be fetched page by page.
    """
    n = spec.grid.n_blocks
    if isinstance(f, SourceFile) and paged:  # 2.1.0 remote: each page fetched and checked when first used
        return RemotePagedIndex(
            f.source, path, index_offset, n, page_entries, page_crcs, len(names), max_frame_size(spec), f.prefix
        )
    if n * INDEX_DTYPE.itemsize > mmap_threshold and not isinstance(f, SourceFile):
        mapped = np.memmap(f, INDEX_DTYPE, mode="r", offset=index_offset, shape=(n,))
        return PagedIndex(path, mapped, page_entries, page_crcs, len(names), max_frame_size(spec))
    f.seek(index_offset)
    index = read_array(f, INDEX_DTYPE, n)
    if len(index) != n:
        raise TruncatedFileError(f"{path}: the index is cut short")
    checked = PagedIndex(path, index, page_entries, page_crcs, len(names), max_frame_size(spec))
    checked.check_all()
    return index



def encode_directory_header(
    spec: VolumeSpec, block_files: list[str], index: np.ndarray, page_entries: int = PAGE_ENTRIES
) -> bytes:
    """Everything of a version 2.1.0 directory file before its index ``index``."""
    if index.dtype != INDEX_DTYPE or len(index) != spec.grid.n_blocks:
        raise FormatError(f"index must be {spec.grid.n_blocks} entries of {INDEX_DTYPE}")
    md = spec.to_dict()
    md["BlockFiles"] = check_names("new directory", list(block_files), relative=True)
    md["IndexPageEntries"] = page_entries
    return header_with_table(md, page_checksums(np.asarray(index), page_entries))


def header_with_table(md: dict[str, Any], page_crcs: np.ndarray) -> bytes:
    body = padded_json(md, HEADER.size)
    table_end = HEADER.size + len(body) + CRC.size + 4 * len(page_crcs)
    head = HEADER.pack(MAGIC, len(body), align8(table_end)) + body
    table = np.asarray(page_crcs, "<u4").tobytes()
    return head + CRC.pack(checksum(head)) + table + bytes(align8(table_end) - table_end)


def rewrite_metadata(
    src: str,
    dest: str,
    update: Callable[[dict[str, Any]], dict[str, Any]],
    chunk_size: int = 1 << 20,
) -> None:
    """Write ``src`` to ``dest`` with its JSON metadata passed through ``update``.

    The source is checked first (a corrupt header is never given a fresh
    checksum). The index bytes (and a 2.1.0 page table) are copied unchanged,
    ``chunk_size`` bytes at a time, and ``dest`` is published atomically (it
    may be ``src`` itself) only if it has exactly the length it must have.
    Each format version keeps its own header layout.
    """
    from .atomic import published

    chunk_size = check_positive(chunk_size, "a chunk size (bytes)")
    contents = read_directory(src)
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        md_size, index_offset = read_header(src, f.read(HEADER.size), MAGIC, "blockfs directory file")
        md = parse_json(src, read_exactly(f, md_size, src, "metadata"), "metadata")
        if md.get("Version") != contents.version:
            raise FormatError(f"{src} changed while it was being rewritten")
        md = update(md)
        if contents.version == VERSION:
            table_at = HEADER.size + md_size + CRC.size
            n_pages = -(-contents.spec.grid.n_blocks // md["IndexPageEntries"])
            f.seek(table_at)
            head = header_with_table(md, np.frombuffer(read_exactly(f, 4 * n_pages, src, "page table"), "<u4"))
        else:
            raw = json.dumps(md).encode("utf-8")
            body = raw if contents.version == VERSION_1 else padded_json(md, HEADER.size)
            head = HEADER.pack(MAGIC, len(body), HEADER.size + len(body)) + body
        expected = len(head) + size - index_offset
        f.seek(index_offset)
        with published(dest) as tmp, open(tmp, "wb") as out:
            out.write(head)
            while chunk := f.read(chunk_size):
                out.write(chunk)
            out.flush()
            if out.tell() != expected:
                raise TruncatedFileError(f"{dest}: the rewritten directory has {out.tell()} bytes, expected {expected}")
