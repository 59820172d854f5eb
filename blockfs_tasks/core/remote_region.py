"""Region reads of a remote volume: every frame of the region fetched at once, neighbours in one ranged GET.

A region read of a local volume issues one ``pread`` per block. Remotely, each
request costs a round trip, so the frames a region needs are fetched before
decoding: frames that lie close together in one block file (written one after
another by the same batch, as neighbouring blocks usually are) are merged
into one ranged GET of at most :data:`COALESCE_MAX` bytes, fetching at most
:data:`COALESCE_GAP` bytes of unneeded frames between two needed ones, and all
the requests run concurrently. Each frame is then checked (length, CRC-32C)
and decoded as any other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .blockfile import BlockFileReader
from .grid import XYZ, BlockGrid
from .region import AxisRange

#: Most bytes of frames the region does not need fetched between two it needs, to save a request.
COALESCE_GAP = 256 << 10
#: Most bytes fetched by one merged request.
COALESCE_MAX = 16 << 20


def fetch_frames(reader: BlockFileReader, entries: dict[XYZ, np.void]) -> dict[XYZ, bytes]:
    """The stored bytes of each present entry's frame (unchecked), adjacent frames merged into one request."""
    groups: list[tuple[int, int, int, list[tuple[XYZ, int, int]]]] = []  # (file, start, end, members)
    for origin, e in sorted(entries.items(), key=lambda kv: (int(kv[1]["file"]), int(kv[1]["offset"]))):
        file, offset, size = int(e["file"]), int(e["offset"]), int(e["size"])
        if groups:
            g_file, start, end, members = groups[-1]
            new_end = max(end, offset + size)
            if g_file == file and offset - end <= COALESCE_GAP and new_end - start <= COALESCE_MAX:
                members.append((origin, offset, size))
                groups[-1] = (file, start, new_end, members)
                continue
        groups.append((file, offset, offset + size, [(origin, offset, size)]))
    data = reader.source.read_many([(reader.paths[file - 1], start, end - start) for file, start, end, _ in groups])
    frames: dict[XYZ, bytes] = {}
    for (_, start, _, members), chunk in zip(groups, data, strict=True):
        for origin, offset, size in members:
            frames[origin] = chunk[offset - start : offset - start + size]  # short if the object is: checked later
    return frames


def region_frames(
    slices: list[AxisRange], grid: BlockGrid, entry_of: Callable[[XYZ], np.void], reader: BlockFileReader
) -> dict[XYZ, bytes]:
    """The frames of every present block the (z, y, x) region ``slices`` touches."""
    (z0, z1, _), (y0, y1, _), (x0, x1, _) = slices
    entries = {o: e for o in grid.origins_in_region(z0, z1, y0, y1, x0, x1) if (e := entry_of(o))["file"]}
    return fetch_frames(reader, entries) if entries else {}
