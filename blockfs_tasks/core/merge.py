"""Applying fragment and journal entries to an index: the one home of "the newest entry wins".

Both the live writer's session (:class:`~.directory.Directory`: journal
replay and ``close()``) and the batch writer's :func:`~.batch.build_directory`
fill the directory's index with an :class:`IndexMerger`, so they keep the
same rules and raise the same errors.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import FormatError, MissingFileError, TruncatedFileError
from .fragment import newest_entries
from .naming import block_file_name


class IndexMerger:
    """An index (``INDEX_DTYPE``) and its block file names, to which entries are applied in commit order.

    ``index`` is changed in place (pass a copy when readers may hold it);
    ``block_names`` (names relative to the directory file) only grows, so
    index file numbers already handed out stay valid.
    """

    def __init__(self, directory_path: str, index: np.ndarray, block_names: list[str]) -> None:
        self.directory_path = directory_path
        self.index = index
        self.block_names = block_names
        self._slot_of = {name: i for i, name in enumerate(block_names)}

    def apply(self, entries: np.ndarray, where: str, expected_file: int | None = None) -> int:
        """Apply ``entries`` (``ENTRY_DTYPE``, commit order): for each position the newest wins.

        Entry file numbers ``k`` become the index's 1-based slots of the
        block file names ``<directory name>.<k>``. Raises :class:`FormatError`
        naming ``where`` for an entry outside the volume, or (with
        ``expected_file``) one that points into another block file than
        ``expected_file``. Returns the number of positions set.
        """
        entries = newest_entries(entries)
        if len(entries) == 0:
            return 0
        if expected_file is not None and np.any(entries["file"] != expected_file):
            raise FormatError(f"{where}: entries point outside block file {expected_file}")
        positions = entries["position"].astype(np.int64)
        if int(positions.max()) >= len(self.index):
            raise FormatError(
                f"{where}: block position {int(positions.max())} outside the volume's {len(self.index)} blocks"
            )
        file_column = np.empty(len(entries), np.uint32)
        for number in np.unique(entries["file"]):
            name = os.path.basename(block_file_name(self.directory_path, int(number)))
            if name not in self._slot_of:
                self._slot_of[name] = len(self.block_names)
                self.block_names.append(name)
            file_column[entries["file"] == number] = self._slot_of[name] + 1
        self.index["offset"][positions] = entries["offset"]
        self.index["size"][positions] = entries["size"]
        self.index["file"][positions] = file_column
        self.index["crc32c"][positions] = entries["crc32c"]
        return len(entries)

    def drop_unused_names(self) -> None:
        """Forget block files no entry points at any more (every block superseded), renumbering the index."""
        used = np.unique(self.index["file"][self.index["file"] > 0])
        if len(used) < len(self.block_names):
            remap = np.zeros(len(self.block_names) + 1, np.uint32)
            remap[used] = np.arange(1, len(used) + 1, dtype=np.uint32)
            self.index["file"] = remap[self.index["file"]]
            self.block_names = [self.block_names[i - 1] for i in used]
            self._slot_of = {name: i for i, name in enumerate(self.block_names)}


def check_block_file_holds(block_path: str, entries: np.ndarray) -> None:
    """Raise unless the block file at ``block_path`` holds every frame ``entries`` point at."""
    if len(entries) == 0:
        return
    try:
        size = os.path.getsize(block_path)
    except FileNotFoundError as e:
        raise MissingFileError(f"{block_path}: block file of a committed fragment is missing") from e
    end = int((entries["offset"] + entries["size"]).max())
    if size < end:
        raise TruncatedFileError(f"{block_path}: block file is truncated: {size} bytes, fragment needs {end}")
