"""A tree: the index of one state of a volume (working or committed), compared and combined by numpy.

A tree is what a directory file indexes: one entry per block position and
the block file names the entries' ``file`` numbers point into. Two trees can
name their block files in different orders, so they are compared on
(block file name, offset, size, CRC-32C), never on raw file numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import format as fmt
from ..directory_file import read_metadata
from ..errors import CorruptIndexError, FormatError, UnsupportedVersionError
from ..naming import resolve_block_path
from ..paged_index import PagedIndex, page_checksums
from ..spec import PAGE_ENTRIES


@dataclass
class Tree:
    """One state of a volume: its spec, block file names (relative) and index (``INDEX_DTYPE``)."""

    spec: fmt.VolumeSpec
    names: list[str]
    index: np.ndarray
    page_crcs: np.ndarray | None = None  # of ``index`` as loaded (PAGE_ENTRIES pages); None once changed

    @classmethod
    def empty(cls, spec: fmt.VolumeSpec) -> Tree:
        return cls(spec, [], np.zeros(spec.grid.n_blocks, fmt.INDEX_DTYPE))

    def copy(self) -> Tree:
        """A copy to change (without page CRCs)."""
        return Tree(self.spec, list(self.names), self.index.copy())


def load_tree(path: str) -> Tree:
    """The tree of a 2.x directory or commit file, every index page checked against its CRC-32C.

    One pass over the whole index (mapped, copied, CRCs recomputed), which at
    20 million entries costs a fraction of checking it page by page. Entries
    are not range-checked here: a commit copies them as they are, and every
    reader checks each page's entries when it first uses them. The page CRCs
    are kept, so an unchanged tree is written again without recomputing them.
    """
    contents = fmt.read_directory(path, mmap_threshold=0)
    if contents.version == fmt.VERSION_1:
        raise UnsupportedVersionError(f"{path}: format 1.0.0 volumes have no versions; blockfs-upgrade it first")
    paged = contents.index
    if not isinstance(paged, PagedIndex):
        raise FormatError(f"{path}: expected a memory-mapped index")
    index = np.array(paged._array)  # the mapped entries, unchecked: checked right below, all at once
    crcs = page_checksums(index, paged.page_entries)
    bad = np.flatnonzero(crcs != paged.page_crcs)
    if len(bad):
        raise CorruptIndexError(f"{path}: index page {int(bad[0])} does not match its CRC-32C "
                                f"({len(bad)} bad page(s))")
    page_crcs = crcs if contents.version == fmt.VERSION and paged.page_entries == PAGE_ENTRIES else None
    return Tree(contents.spec, list(contents.block_files), index, page_crcs)


def _name_ids(names: list[str], table: dict[str, int]) -> np.ndarray:
    """Map file numbers (0 = absent, 1 + i) of a tree to ids in a shared ``table`` of names (0 = absent)."""
    ids = np.zeros(len(names) + 1, np.uint32)
    for i, name in enumerate(names):
        ids[i + 1] = table.setdefault(name, len(table) + 1)
    return ids


def _words(index: np.ndarray) -> np.ndarray:
    """An index as (N, 5) u32 words: offset low, offset high, size, file, crc32c."""
    return np.ascontiguousarray(index).view("<u4").reshape(-1, 5)


def changed_positions(a: Tree, b: Tree) -> np.ndarray:
    """Block positions whose entry differs between two trees of the same grid, ascending.

    Absent entries are all zeros (every writer clears them so).
    """
    wa, wb = _words(a.index), _words(b.index)
    unequal = (wa != wb).reshape(-1, 5)  # one flat comparison, then four ORs (faster than any(axis=1))
    if a.names != b.names:  # the same file may have another number in each tree
        table: dict[str, int] = {}
        ids_a, ids_b = _name_ids(a.names, table), _name_ids(b.names, table)
        unequal[:, 3] = ids_a[wa[:, 3]] != ids_b[wb[:, 3]]
    differ = unequal[:, 0] | unequal[:, 1]
    for column in (2, 3, 4):
        differ |= unequal[:, column]
    return np.flatnonzero(differ)


def same_entries(a: Tree, b: Tree, positions: np.ndarray) -> np.ndarray:
    """For each of ``positions``, True if both trees hold the same block there."""
    table: dict[str, int] = {}
    ids_a, ids_b = _name_ids(a.names, table), _name_ids(b.names, table)
    ea, eb = a.index[positions], b.index[positions]
    fa, fb = ids_a[ea["file"]], ids_b[eb["file"]]
    same = fa == fb
    present = fa != 0
    for column in ("offset", "size", "crc32c"):
        same &= (ea[column] == eb[column]) | ~present
    result: np.ndarray = np.asarray(same, bool)
    return result


def overlay(base: Tree, top: Tree, positions: np.ndarray) -> Tree:
    """``base`` with ``top``'s entries at ``positions`` (block file names merged, unused ones dropped)."""
    out = base.copy()
    slot = {name: i + 1 for i, name in enumerate(out.names)}
    remap = np.zeros(len(top.names) + 1, np.uint32)
    for i, name in enumerate(top.names):
        if name not in slot:
            out.names.append(name)
            slot[name] = len(out.names)
        remap[i + 1] = slot[name]
    entries = top.index[positions]
    entries["file"] = remap[entries["file"]]
    out.index[positions] = entries
    return drop_unused_names(out)


def drop_unused_names(tree: Tree) -> Tree:
    """The tree without block file names no entry points into (renumbering the entries)."""
    used = np.unique(tree.index["file"][tree.index["file"] > 0])
    if len(used) == len(tree.names):
        return tree
    remap = np.zeros(len(tree.names) + 1, np.uint32)
    remap[used] = np.arange(1, len(used) + 1, dtype=np.uint32)
    tree.index["file"] = remap[tree.index["file"]]
    tree.names = [tree.names[i - 1] for i in used]
    return tree


def frames_by_file(tree: Tree, directory_path: str) -> dict[str, np.ndarray]:
    """Absolute block file path -> (offset, size) rows of the frames the tree references."""
    out: dict[str, np.ndarray] = {}
    files = tree.index["file"]
    present = np.flatnonzero(files)
    if len(present) == 0:
        return out
    entries = tree.index[present]
    order = np.argsort(entries["file"], kind="stable")
    entries = entries[order]
    bounds = np.flatnonzero(np.diff(entries["file"])) + 1
    for chunk in np.split(entries, bounds):
        name = tree.names[int(chunk["file"][0]) - 1]
        rows = np.stack([chunk["offset"].astype(np.uint64), chunk["size"].astype(np.uint64)], axis=1)
        out[resolve_block_path(directory_path, name)] = rows
    return out


def is_commit_file(path: str) -> bool:
    """True if a directory file carries a commit record."""
    return "Commit" in read_metadata(path)
