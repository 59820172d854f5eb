"""The kerchunk / fsspec ``ReferenceFileSystem`` references of a volume's OME-Zarr group.

With them, a reader without blockfs opens the volume with zarr alone, from
any working directory::

    zarr.open_group("reference://", storage_options={"fo": "/abs/volume.json"}, mode="r")

Two containers:

* **JSON** (version 1, the default): one document. Block files are named once
  in ``templates`` (``{{f0}}``...), so a reference costs ~40 bytes of JSON.
* **Parquet** (``fmt="parquet"``, kerchunk's lazy layout that fsspec's
  ``LazyReferenceMapper`` reads with ``fo=<folder>``): a folder with a
  ``.zmetadata`` file and ``<level>/refs.<record>.parq`` files of
  ``record_size`` chunk positions each. A reader loads only the records it
  touches, so opening a 20-million-block volume reads one small file. Needs
  pandas and fastparquet (fsspec's default parquet engine) on both sides;
  zarr v2 only (kerchunk's lazy layout knows ``.zarray`` and "." chunk keys).

Each interior chunk is a reference ``[block file, offset, size]`` into the
volume's own block files (never copied). Edge chunks, which zarr needs padded
to the full chunk shape, are padded once with the volume's own codec into ONE
side file (``<name>.edges`` beside the JSON, ``edges`` inside a parquet folder),
or inlined as base64 in the JSON with ``inline_edges``.

Where the files are, for readers:

* default: absolute ``file://`` URLs, so the references open from any working
  directory (fsspec resolves relative paths against the working directory,
  not against the references' folder);
* ``relative=True``: paths relative to the references' folder; open them from
  that folder (or with ``remote_protocol="dir", remote_options={"path":
  folder, "target_protocol": "file"}``): for a folder that moves as a whole;
* ``url_prefix``: ``url_prefix + relative path``, e.g. ``s3://bucket/path/``
  after copying the references' folder, volume included, to object storage.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from ..core.atomic import fsync_folder, published, temporary_name, write_all
from ..core.errors import ConfigurationError
from ..core.optional import require
from .chunks import LIST_SLICE, LevelChunks, pad_frame
from .codecs import DECODED, chunk_kind
from .view import ZarrView

#: Reference containers :func:`write_references` writes.
FORMATS = ("json", "parquet")
#: Chunk positions per parquet file (kerchunk's ``record_size``).
RECORD_SIZE = 100_000
#: The side file inside a parquet references folder.
PARQUET_SIDE_NAME = "edges"


@dataclass(frozen=True)
class RefsSummary:
    """What :func:`write_references` wrote.

    ``json_path`` is the JSON file, or the folder of parquet references.
    """

    json_path: str
    side_path: str | None  # None when there were no edge chunks or they were inlined
    chunks: int  # references to stored frames (interior chunks)
    edge_chunks: int  # padded chunks (side file or inline)
    json_bytes: int  # the JSON, or every file of the parquet folder but the side file
    side_bytes: int
    stored_bytes: int  # bytes of the frames the references point at (interior chunks)
    edge_stored_bytes: int = 0  # bytes of the stored (truncated) edge blocks that were padded


def side_file_path(json_path: str) -> str:
    """The edge side file beside ``json_path``: ``out.json`` -> ``out.edges``."""
    root, ext = os.path.splitext(json_path)
    return (root if ext == ".json" else json_path) + ".edges"


class _Locations:
    """How the references name a file: absolute ``file://`` URL, relative path, or ``url_prefix`` + relative path."""

    def __init__(self, folder: str, url_prefix: str | None, relative: bool) -> None:
        if url_prefix is not None and relative:
            raise ConfigurationError("Expected either url_prefix or relative, not both.")
        self.folder = folder
        self.url_prefix = url_prefix
        self.relative = relative

    def __call__(self, path: str) -> str:
        if self.url_prefix is None and not self.relative:
            return "file://" + os.path.abspath(path).replace(os.sep, "/")
        rel = os.path.relpath(path, self.folder).replace(os.sep, "/")
        if self.url_prefix is None:
            return rel
        return self.url_prefix.rstrip("/") + "/" + rel


def write_references(
    path: str | os.PathLike[str],
    json_path: str | os.PathLike[str],
    url_prefix: str | None = None,
    inline_edges: bool = False,
    zarr_format: int = 2,
    resolution_nm_xyz: Sequence[float] | None = None,
    relative: bool = False,
    fmt: str = "json",
    record_size: int = RECORD_SIZE,
) -> RefsSummary:
    """Write the references of a volume or pyramid to ``json_path`` (atomically).

    Parameters
    ----------
    path
        A ``.blockfs`` directory file or a pyramid folder.
    json_path
        The JSON to write (the edge side file goes beside it), or the folder of
        parquet references (``fmt="parquet"``; replaced as a whole).
    url_prefix
        What the references' folder is called for readers (``s3://bucket/path/``).
    inline_edges
        Put padded edge chunks into the JSON (base64) instead of a side file (JSON only).
    zarr_format, resolution_nm_xyz
        As for :class:`~.view.ZarrView` (parquet: zarr v2 only).
    relative
        Paths relative to the references' folder (open from that folder);
        default: absolute ``file://`` URLs, which open from anywhere.
    fmt
        ``"json"`` (default) or ``"parquet"``.
    record_size
        Chunk positions per parquet file.
    """
    if fmt not in FORMATS:
        raise ConfigurationError(f"Expected a references format in {FORMATS}. Got {fmt!r} instead.")
    out = os.path.abspath(os.fspath(json_path))
    if fmt == "parquet":
        if zarr_format != 2:
            raise ConfigurationError(
                f"Parquet references are zarr v2 (kerchunk's lazy layout). Got zarr_format={zarr_format!r}."
            )
        if inline_edges:
            raise ConfigurationError(
                "Parquet references keep padded edge chunks in their side file; inline_edges is for JSON."
            )
        if isinstance(record_size, bool) or not isinstance(record_size, int) or record_size < 1:
            raise ConfigurationError(f"Expected a positive integer record_size. Got {record_size!r} instead.")
    view = ZarrView(path, zarr_format, resolution_nm_xyz, verify_checksums=True)
    try:
        codecs = [c.directory.spec.codec for c in view.levels]
        decoded = [c.compression for c in codecs if chunk_kind(c) == DECODED]
        if decoded:
            raise ConfigurationError(
                f"{view.path}: the codec {decoded[0]!r} has no zarr codec, so references cannot point at its "
                f"frames (nothing was written); read it through BlockfsStore or blockfs-serve's /zarr/ route, "
                f"or re-encode it with blockfs-cp --compression pcodec"
            )
        if fmt == "parquet":
            return _write_parquet(view, out, _Locations(out, url_prefix, relative), record_size)
        return _write(view, out, _Locations(os.path.dirname(out), url_prefix, relative), inline_edges)
    finally:
        view.close()


def _has_edges(view: ZarrView) -> bool:
    return any(any(n % c for n, c in zip(ch.shape, ch.chunk_shape, strict=True)) for ch in view.levels)


def _write(view: ZarrView, json_path: str, location: _Locations, inline_edges: bool) -> RefsSummary:
    """The JSON body of :func:`write_references` over an open view."""
    folder = os.path.dirname(json_path)
    os.makedirs(folder, exist_ok=True)
    side_path = side_file_path(json_path)
    templates: dict[str, str] = {}
    template_of: dict[str, str] = {}
    for chunks in view.levels:
        for p in chunks.paths:
            if p not in template_of:
                template_of[p] = f"f{len(template_of)}"
                templates[template_of[p]] = location(p)
    if _has_edges(view) and not inline_edges:
        templates["e"] = location(side_path)
    counts = {"chunks": 0, "edges": 0, "side": 0, "stored": 0, "edge_stored": 0}
    with published(json_path) as json_tmp, published(side_path) as side_tmp:
        side_fd = os.open(side_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with open(json_tmp, "w", encoding="utf-8") as out:
                out.write('{"version": 1,\n"templates": ' + json.dumps(templates) + ',\n"refs": {\n')
                docs = view.documents.items()
                out.write(",\n".join(f"{json.dumps(k)}: {json.dumps(v.decode('utf-8'))}" for k, v in docs))
                for level, chunks in enumerate(view.levels):
                    _write_level(view, level, chunks, out, side_fd, inline_edges, template_of, counts)
                out.write("\n}}\n")
        finally:
            os.close(side_fd)
    # The side file is published before the JSON that points into it; an empty one is removed.
    has_side = counts["side"] > 0
    if not has_side:
        os.unlink(side_path)
    return RefsSummary(
        json_path,
        side_path if has_side else None,
        counts["chunks"],
        counts["edges"],
        os.path.getsize(json_path),
        counts["side"],
        counts["stored"],
        counts["edge_stored"],
    )


def _level_slices(chunks: LevelChunks, step: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(start, present positions, their index entries, edge mask) for each ``step`` index entries of a level."""
    gz, gy, gx = chunks.grid_shape
    first_edge = [s // c for s, c in zip(chunks.shape, chunks.chunk_shape, strict=True)]
    for start in range(0, gz * gy * gx, step):
        entries = np.asarray(chunks.index[start : start + step])
        present = np.flatnonzero(entries["file"])
        positions = present + start
        iz, rest = np.divmod(positions, gy * gx)
        iy, ix = np.divmod(rest, gx)
        edge = (iz >= first_edge[0]) | (iy >= first_edge[1]) | (ix >= first_edge[2])
        yield start, positions, entries[present], edge


def _chunk_of(chunks: LevelChunks, position: int) -> tuple[int, int, int]:
    _, gy, gx = chunks.grid_shape
    iz, rest = divmod(position, gy * gx)
    iy, ix = divmod(rest, gx)
    return iz, iy, ix


def _padded_edge(chunks: LevelChunks, chunk: tuple[int, int, int], counts: dict[str, int]) -> bytes:
    """An edge chunk padded with the volume's own codec (zeros cost almost nothing compressed)."""
    frame = chunks.locate(chunk)
    if frame is None:  # cannot happen: the position is present
        raise ConfigurationError(f"chunk {chunk} vanished while writing references")
    counts["edges"] += 1
    counts["edge_stored"] += frame.size
    return pad_frame(chunks.read_frame(frame), chunks, chunk, chunks.directory.spec.codec)


def _write_level(
    view: ZarrView,
    level: int,
    chunks: LevelChunks,
    out: TextIO,
    side_fd: int,
    inline_edges: bool,
    template_of: dict[str, str],
    counts: dict[str, int],
) -> None:
    """Append the JSON references of one level's present chunks (``LIST_SLICE`` index entries at a time).

    Interior chunks become ``["{{fN}}", offset, size]``; edge chunks are padded
    with the volume's own codec and appended to the side file (or inlined).
    """
    gz, gy, gx = chunks.grid_shape
    names = [template_of[p] for p in chunks.paths]
    prefix = f"{level}/{'c/' if view.zarr_format == 3 else ''}"
    for _, positions, sel, edge in _level_slices(chunks, LIST_SLICE):
        if not len(positions):
            continue
        iz, rest = np.divmod(positions, gy * gx)
        iy, ix = np.divmod(rest, gx)
        interior = ~edge
        counts["chunks"] += int(interior.sum())
        counts["stored"] += int(sel["size"][interior].sum())
        lines = [
            f'"{prefix}{z}/{y}/{x}": ["{{{{{names[f - 1]}}}}}", {o}, {s}]'
            for z, y, x, f, o, s in zip(
                iz[interior].tolist(), iy[interior].tolist(), ix[interior].tolist(),
                sel["file"][interior].tolist(), sel["offset"][interior].tolist(), sel["size"][interior].tolist(),
                strict=True,
            )
        ]
        for z, y, x in zip(iz[edge].tolist(), iy[edge].tolist(), ix[edge].tolist(), strict=True):
            padded = _padded_edge(chunks, (z, y, x), counts)
            if inline_edges:
                lines.append(f'"{prefix}{z}/{y}/{x}": "base64:{base64.b64encode(padded).decode("ascii")}"')
            else:
                lines.append(f'"{prefix}{z}/{y}/{x}": ["{{{{e}}}}", {counts["side"]}, {len(padded)}]')
                write_all(side_fd, padded)
                counts["side"] += len(padded)
        if lines:
            out.write(",\n" + ",\n".join(lines))


# ------------------------------------------------------------------ parquet
def _parquet_metadata(view: ZarrView, record_size: int) -> bytes:
    """kerchunk's ``.zmetadata``: the group's documents, chunk keys with "." (the lazy layout's keys)."""
    metadata: dict[str, Any] = {}
    for key, doc in view.documents.items():
        if key == ".zmetadata":  # the lazy layout's own .zmetadata is the consolidated metadata
            continue
        value = json.loads(doc)
        if key.endswith(".zarray"):
            value["dimension_separator"] = "."
        metadata[key] = value
    return json.dumps({"metadata": metadata, "record_size": record_size}).encode("utf-8")


def _write_parquet(view: ZarrView, folder: str, location: _Locations, record_size: int) -> RefsSummary:
    """Write the parquet references folder: built beside ``folder``, then renamed into place."""
    pd = require("pandas", "zarr", "parquet references")
    require("fastparquet", "zarr", "parquet references")
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = temporary_name(folder)
    os.makedirs(tmp)
    counts = {"chunks": 0, "edges": 0, "side": 0, "stored": 0, "edge_stored": 0}
    try:
        side_path = os.path.join(folder, PARQUET_SIDE_NAME)
        side_url = location(side_path)
        side_fd = os.open(os.path.join(tmp, PARQUET_SIDE_NAME), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for level, chunks in enumerate(view.levels):
                urls = [location(p) for p in chunks.paths]
                _write_parquet_level(pd, tmp, level, chunks, urls, side_url, side_fd, record_size, counts)
            os.fsync(side_fd)
        finally:
            os.close(side_fd)
        with open(os.path.join(tmp, ".zmetadata"), "wb") as f:
            f.write(_parquet_metadata(view, record_size))
            f.flush()
            os.fsync(f.fileno())
        if counts["side"] == 0:
            os.unlink(os.path.join(tmp, PARQUET_SIDE_NAME))
        total = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(tmp) for n in names)
        if os.path.isdir(folder):
            old = temporary_name(folder + ".old")
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old)
        else:
            os.rename(tmp, folder)
        fsync_folder(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RefsSummary(
        folder,
        side_path if counts["side"] else None,
        counts["chunks"],
        counts["edges"],
        total - counts["side"],
        counts["side"],
        counts["stored"],
        counts["edge_stored"],
    )


def _write_parquet_level(
    pd: Any,
    root: str,
    level: int,
    chunks: LevelChunks,
    urls: list[str],
    side_url: str,
    side_fd: int,
    record_size: int,
    counts: dict[str, int],
) -> None:
    """One parquet file per ``record_size`` chunk positions that hold a block (chunk number = index position).

    Columns ``path`` (a block file or the side file), ``offset`` and ``size``;
    a position without a block has no path (zarr reads its fill value), a
    record without any block has no file.
    """
    names = np.array([*urls, side_url, None], dtype=object)  # code -1 = the last: None
    side_code = len(urls)
    os.makedirs(os.path.join(root, str(level)))
    for start, positions, sel, edge in _level_slices(chunks, record_size):
        if not len(positions):
            continue
        rows = positions - start
        n = min(record_size, int(np.prod(chunks.grid_shape)) - start)
        codes = np.full(n, -1, np.int32)
        offsets = np.zeros(n, np.int64)
        sizes = np.zeros(n, np.int64)
        interior = ~edge
        codes[rows[interior]] = sel["file"][interior].astype(np.int32) - 1
        offsets[rows[interior]] = sel["offset"][interior]
        sizes[rows[interior]] = sel["size"][interior]
        counts["chunks"] += int(interior.sum())
        counts["stored"] += int(sel["size"][interior].sum())
        for row, position in zip(rows[edge].tolist(), positions[edge].tolist(), strict=True):
            padded = _padded_edge(chunks, _chunk_of(chunks, position), counts)
            codes[row], offsets[row], sizes[row] = side_code, counts["side"], len(padded)
            write_all(side_fd, padded)
            counts["side"] += len(padded)
        # Plain object strings, None where no block: fsspec's reader treats None (not a categorical's NaN) as absent.
        frame = pd.DataFrame({"path": names[codes], "offset": offsets, "size": sizes}, copy=False)
        frame.to_parquet(
            os.path.join(root, str(level), f"refs.{start // record_size}.parq"),
            engine="fastparquet", compression="zstd", index=False, stats=False,
            object_encoding={"path": "utf8"}, has_nulls=["path"],
        )
