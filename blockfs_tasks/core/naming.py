"""Every file name of a volume, in one place.

For the directory file ``vol.blockfs``:

- block file ``k``: ``vol.blockfs.<k>``
- block file ``k`` written by a copying compaction: ``vol.blockfs.compact-<k>``
- a copying compaction's list of block files to retire: ``vol.blockfs.compaction``
- its fragment (batch writer): ``vol.blockfs.<k>.fragment``
- its journal (live writer): ``vol.blockfs.<k>.journal``
- the journal shared by the live writers before format 2.1: ``vol.blockfs.journal``
- the writing session: ``vol.blockfs.session``
- a commit (an immutable directory file, see :mod:`.versions`): ``vol.blockfs.commit-<id>``
- generation ``g`` of a branch or tag: ``vol.blockfs.refs/heads/<name>/<g>`` or ``.../tags/<name>/<g>``
- what the working volume has checked out: ``vol.blockfs.HEAD``
- a temporary file of any of them: ``<path>.tmp-<host>-<token>-<pid>`` (see :mod:`.atomic`)

Names only: nothing here writes a file (:func:`volume_files` lists a folder).
"""

from __future__ import annotations

import os
import re

FRAGMENT_SUFFIX = ".fragment"
JOURNAL_SUFFIX = ".journal"
SESSION_SUFFIX = ".session"
TEMP_MARKER = ".tmp-"
COMMIT_MARKER = ".commit-"
COMPACT_MARKER = ".compact-"
COMPACTION_SUFFIX = ".compaction"
REFS_SUFFIX = ".refs"
HEAD_SUFFIX = ".HEAD"
GENERATION_DIGITS = 12


def block_file_name(directory_path: str, number: int) -> str:
    """Path of block file ``number`` of the volume at ``directory_path``."""
    return f"{directory_path}.{number}"


def compacted_block_name(directory_path: str, number: int) -> str:
    """Path of block file ``number`` written by a copying compaction (only compaction makes these names)."""
    return f"{directory_path}{COMPACT_MARKER}{number}"


def compacted_block_names(directory_path: str) -> list[str]:
    """Every block file a copying compaction wrote that exists now (temporary files aside)."""
    pattern = re.compile(re.escape(os.path.basename(directory_path) + COMPACT_MARKER) + r"\d+")
    folder = os.path.dirname(directory_path) or "."
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if pattern.fullmatch(f))


def compaction_plan_name(directory_path: str) -> str:
    """Path of the list of block files a copying compaction retires once nothing names them."""
    return f"{directory_path}{COMPACTION_SUFFIX}"


def fragment_name(directory_path: str, number: int) -> str:
    """Path of the fragment that indexes block file ``number``."""
    return f"{block_file_name(directory_path, number)}{FRAGMENT_SUFFIX}"


def journal_name(directory_path: str, number: int = 0) -> str:
    """Path of the journal of block file ``number`` (written by that file's live writer only)."""
    return f"{block_file_name(directory_path, number)}{JOURNAL_SUFFIX}"


def legacy_journal_name(directory_path: str) -> str:
    """The journal that all live writers of a session shared before 2.1 (replayed, never written)."""
    return f"{directory_path}{JOURNAL_SUFFIX}"


def session_file_name(directory_path: str) -> str:
    """Path of the session file of the volume at ``directory_path``."""
    return f"{directory_path}{SESSION_SUFFIX}"


def temporary_name_for(path: str, owner: str) -> str:
    """The temporary path beside ``path`` of the process ``owner`` (``<host>-<token>-<pid>``)."""
    return f"{path}{TEMP_MARKER}{owner}"


def temporary_owner(temporary_path: str) -> str:
    """The ``<host>-<token>-<pid>`` part of a temporary path."""
    return temporary_path.rsplit(TEMP_MARKER, 1)[1]


def block_file_number(directory_path: str, path: str) -> int | None:
    """The ``k`` of a block file path ``<directory>.<k>``, or None for any other path."""
    match = re.fullmatch(re.escape(os.path.basename(directory_path)) + r"\.(\d+)", os.path.basename(path))
    return int(match.group(1)) if match else None


def journal_number(directory_path: str, name: str) -> int | None:
    """The ``k`` of a journal file name ``<directory name>.<k>.journal``, or None for any other name.

    String tests only (no regex): this runs on every file of the folder before each read of a session.
    """
    base = os.path.basename(directory_path)
    if not (name.startswith(base) and name.endswith(JOURNAL_SUFFIX) and name[len(base) : len(base) + 1] == "."):
        return None
    number = name[len(base) + 1 : -len(JOURNAL_SUFFIX)]
    return int(number) if number.isdigit() else None


def volume_files(directory_path: str) -> list[str]:
    """Every block, fragment and journal file of a volume that exists now."""
    base = os.path.basename(directory_path)
    pattern = re.compile(
        re.escape(base) + r"\.(\d+(" + re.escape(FRAGMENT_SUFFIX) + "|" + re.escape(JOURNAL_SUFFIX) + r")?|journal"
        r"|compact-\d+|compaction)"
    )
    folder = os.path.dirname(directory_path) or "."
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if pattern.fullmatch(f))


def version_files(directory_path: str) -> list[str]:
    """The commit files, refs folder and HEAD of a volume that exist now (empty: no versions)."""
    base = os.path.basename(directory_path)
    folder = os.path.dirname(directory_path) or "."
    names = {base + REFS_SUFFIX, base + HEAD_SUFFIX}
    try:
        listing = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(
        os.path.join(folder, f) for f in listing if f in names or f.startswith(base + COMMIT_MARKER)
    )


def resolve_block_path(directory_path: str, name: str) -> str:
    """Where a block file named in a directory file is now.

    Relative names are relative to the directory file's folder. An absolute
    name that no longer exists (a format 1.0.0 volume copied off a cluster)
    falls back to the file of the same name beside the directory file.
    """
    folder = os.path.dirname(directory_path)
    if not os.path.isabs(name):
        return os.path.join(folder, name)
    if os.path.exists(name):
        return name
    return os.path.join(folder, os.path.basename(name))


def commit_file_name(directory_path: str, commit_id: str) -> str:
    """Path of commit ``commit_id`` of the volume: beside it, so its block file names resolve unchanged."""
    return f"{directory_path}{COMMIT_MARKER}{commit_id}"


def commit_id_of(directory_path: str, name: str) -> str | None:
    """The id of a commit file name ``<directory name>.commit-<id>``, or None for any other name."""
    prefix = os.path.basename(directory_path) + COMMIT_MARKER
    if not name.startswith(prefix) or TEMP_MARKER in name:
        return None
    commit_id = name[len(prefix) :]
    return commit_id if re.fullmatch(r"[0-9a-f]{40}", commit_id) else None


def refs_folder(directory_path: str) -> str:
    """The folder holding the volume's branches and tags."""
    return f"{directory_path}{REFS_SUFFIX}"


def ref_folder(directory_path: str, kind: str, name: str) -> str:
    """The folder of one ref (``kind`` "heads" or "tags"): one file per generation."""
    return os.path.join(refs_folder(directory_path), kind, name)


def ref_generation_name(directory_path: str, kind: str, name: str, generation: int) -> str:
    """Path of generation ``generation`` of a ref; the newest generation is the ref's value."""
    return os.path.join(ref_folder(directory_path, kind, name), f"{generation:0{GENERATION_DIGITS}d}")


def head_state_name(directory_path: str) -> str:
    """Path of the file naming the working volume's branch and the commit it was last in step with."""
    return f"{directory_path}{HEAD_SUFFIX}"
