"""The kerchunk / fsspec ``ReferenceFileSystem`` document (version 1) of a volume's OME-Zarr group.

With it, a reader without blockfs opens the volume with zarr alone::

    zarr.open_group("reference://", storage_options={"fo": "volume.json"}, mode="r")

Each interior chunk is a reference ``[block file, offset, size]`` into the
volume's own block files (never copied). Edge chunks, which zarr needs padded
to the full chunk shape, are padded once into ONE side file beside the JSON
(``<name>.edges``), or inlined as base64 with ``inline_edges``.

Paths are written relative to the JSON's folder (fsspec resolves relative
paths against the working directory: run from that folder, or pass
``remote_protocol="dir", remote_options={"path": folder}``), or as
``url_prefix + relative path`` (e.g. ``s3://bucket/path/`` after copying the
JSON's folder, volume included, to object storage). Block files are named
once in ``templates`` (``{{f0}}``...), so a reference costs ~30 bytes of JSON.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from ..core.atomic import published, write_all
from .chunks import LIST_SLICE, LevelChunks, pad_frame, padding_codec
from .view import ZarrView


@dataclass(frozen=True)
class RefsSummary:
    """What :func:`write_references` wrote."""

    json_path: str
    side_path: str | None  # None when there were no edge chunks or they were inlined
    chunks: int  # references to stored frames (interior chunks)
    edge_chunks: int  # padded chunks (side file or inline)
    json_bytes: int
    side_bytes: int
    stored_bytes: int  # bytes of the frames the references point at


def side_file_path(json_path: str) -> str:
    """The edge side file beside ``json_path``: ``out.json`` -> ``out.edges``."""
    root, ext = os.path.splitext(json_path)
    return (root if ext == ".json" else json_path) + ".edges"


def _location(path: str, folder: str, url_prefix: str | None) -> str:
    rel = os.path.relpath(path, folder).replace(os.sep, "/")
    if url_prefix is None:
        return rel
    return url_prefix.rstrip("/") + "/" + rel


def write_references(
    path: str | os.PathLike[str],
    json_path: str | os.PathLike[str],
    url_prefix: str | None = None,
    inline_edges: bool = False,
    zarr_format: int = 2,
    resolution_nm_xyz: Sequence[float] | None = None,
) -> RefsSummary:
    """Write the references document of a volume or pyramid to ``json_path`` (atomically).

    Parameters
    ----------
    path
        A ``.blockfs`` directory file or a pyramid folder.
    json_path
        The JSON to write; the edge side file goes beside it.
    url_prefix
        What the JSON's folder is called for readers (``s3://bucket/path/``);
        default: paths relative to the JSON's folder.
    inline_edges
        Put padded edge chunks into the JSON (base64) instead of a side file.
    zarr_format, resolution_nm_xyz
        As for :class:`~.view.ZarrView`.
    """
    view = ZarrView(path, zarr_format, resolution_nm_xyz, verify_checksums=True)
    try:
        return _write(view, os.path.abspath(os.fspath(json_path)), url_prefix, inline_edges)
    finally:
        view.close()


def _write(view: ZarrView, json_path: str, url_prefix: str | None, inline_edges: bool) -> RefsSummary:
    """The body of :func:`write_references` over an open view."""
    folder = os.path.dirname(json_path)
    os.makedirs(folder, exist_ok=True)
    side_path = side_file_path(json_path)
    templates: dict[str, str] = {}
    template_of: dict[str, str] = {}
    for chunks in view.levels:
        for p in chunks.paths:
            if p not in template_of:
                template_of[p] = f"f{len(template_of)}"
                templates[template_of[p]] = _location(p, folder, url_prefix)
    has_edges = any(any(n % c for n, c in zip(ch.shape, ch.chunk_shape)) for ch in view.levels)
    if has_edges and not inline_edges:
        templates["e"] = _location(side_path, folder, url_prefix)
    counts = {"chunks": 0, "edges": 0, "side": 0, "stored": 0}
    with published(json_path) as json_tmp, published(side_path) as side_tmp:
        side_fd = os.open(side_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with open(json_tmp, "w", encoding="utf-8") as out:
                out.write('{"version": 1,\n"templates": ' + json.dumps(templates) + ',\n"refs": {\n')
                out.write(",\n".join(f"{json.dumps(k)}: {json.dumps(v.decode('utf-8'))}" for k, v in view.documents.items()))
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
    )


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
    """Append the references of one level's present chunks (``LIST_SLICE`` index entries at a time).

    Interior chunks become ``["{{fN}}", offset, size]``; edge chunks are padded
    with the volume's own codec and appended to the side file (or inlined).
    """
    gz, gy, gx = chunks.grid_shape
    first_edge = [s // c for s, c in zip(chunks.shape, chunks.chunk_shape)]
    names = [template_of[p] for p in chunks.paths]
    prefix = f"{level}/{'c/' if view.zarr_format == 3 else ''}"
    for start in range(0, gz * gy * gx, LIST_SLICE):
        entries = np.asarray(chunks.index[start : start + LIST_SLICE])
        present = np.flatnonzero(entries["file"])
        if not len(present):
            continue
        positions = present + start
        iz, rest = np.divmod(positions, gy * gx)
        iy, ix = np.divmod(rest, gx)
        edge = (iz >= first_edge[0]) | (iy >= first_edge[1]) | (ix >= first_edge[2])
        sel = entries[present]
        interior = ~edge
        counts["chunks"] += int(interior.sum())
        counts["stored"] += int(sel["size"][interior].sum())
        lines = [
            f'"{prefix}{z}/{y}/{x}": ["{{{{{names[f - 1]}}}}}", {o}, {s}]'
            for z, y, x, f, o, s in zip(
                iz[interior].tolist(), iy[interior].tolist(), ix[interior].tolist(),
                sel["file"][interior].tolist(), sel["offset"][interior].tolist(), sel["size"][interior].tolist(),
            )
        ]
        for z, y, x in zip(iz[edge].tolist(), iy[edge].tolist(), ix[edge].tolist()):
            frame = chunks.locate((z, y, x))
            if frame is None:  # cannot happen: the position is present
                continue
            padded = pad_frame(chunks.read_frame(frame), chunks, (z, y, x), padding_codec(chunks.directory.spec.codec, fast=False))
            counts["edges"] += 1
            if inline_edges:
                lines.append(f'"{prefix}{z}/{y}/{x}": "base64:{base64.b64encode(padded).decode("ascii")}"')
            else:
                lines.append(f'"{prefix}{z}/{y}/{x}": ["{{{{e}}}}", {counts["side"]}, {len(padded)}]')
                write_all(side_fd, padded)
                counts["side"] += len(padded)
        if lines:
            out.write(",\n" + ",\n".join(lines))
