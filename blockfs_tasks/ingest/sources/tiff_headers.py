"""Knowing that a TIFF file has the header of one already parsed, without parsing it.

tifffile's parse of a file is a function of the bytes it reads, the file's
size and its name's extension: where it reads next comes from what it read
before. So if another file has the same size and extension and the same bytes
at every offset tifffile read from the first, tifffile would read the same
bytes from it in the same order and build the same pages. :class:`ReadLog`
records those reads while tifffile parses a file; :meth:`HeaderRecord.matches`
then checks another file with a positioned read or two. The planes of a stack
written by one program usually repeat their header byte for byte; a plane
whose header differs anywhere (a time stamp in a tag) is simply parsed.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any


def _extension(name: object) -> str:
    return os.path.splitext(str(name))[1].lower()


class ReadLog:
    """A binary file (over ``raw``) that records every byte range read through it.

    ``complete`` turns False once ``fileno()`` has been asked for: reads may
    then bypass the log (a memory map), and the record must not be trusted.
    """

    def __init__(self, raw: io.FileIO) -> None:
        self._raw = raw
        self.name = raw.name
        self.mode = "rb"
        self.reads: list[tuple[int, bytes]] = []
        self.complete = True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        at = self._raw.tell()
        data = self._raw.read(size) or b""
        self.reads.append((at, data))
        return data

    def readinto(self, buffer: Any) -> int:
        at = self._raw.tell()
        n = self._raw.readinto(buffer) or 0
        try:
            self.reads.append((at, bytes(memoryview(buffer).cast("B")[:n])))
        except (TypeError, ValueError):  # a buffer the log cannot copy: do not trust this record
            self.complete = False
        return n

    def fileno(self) -> int:
        self.complete = False
        return self._raw.fileno()

    def record(self, size: int) -> HeaderRecord:
        """What was read, as spans of contiguous bytes, for a file of ``size`` bytes."""
        spans: list[tuple[int, bytearray]] = []
        for at, data in sorted(self.reads, key=lambda r: r[0]):
            if spans and at <= spans[-1][0] + len(spans[-1][1]):
                start, span = spans[-1]
                span += data[start + len(span) - at :]
            elif data:
                spans.append((at, bytearray(data)))
        return HeaderRecord(size, _extension(self.name), tuple((at, bytes(span)) for at, span in spans))


@dataclass(frozen=True)
class HeaderRecord:
    """The bytes tifffile read to parse one file (``spans``: offset, bytes), its size and extension."""

    size: int
    extension: str
    spans: tuple[tuple[int, bytes], ...]

    def matches(self, fh: io.FileIO, size: int) -> bool:
        """True if the open file ``fh`` of ``size`` bytes would parse like the recorded one."""
        if size != self.size or _extension(fh.name) != self.extension:
            return False
        for at, data in self.spans:
            fh.seek(at)
            if fh.read(len(data)) != data:
                return False
        return True
