"""Provenance: where a volume came from, kept in its metadata and served as cloud-volume expects.

A volume's application metadata may hold ``"provenance": {"sources": [...],
"processing": [...]}``; each processing step is a record of what made or
changed the volume: the method (e.g. ``blockfs_tasks.BuildDirectory``), its
parameters, the Luigi task id where it does not depend on the volume's own
path, who ran it (user@host), and the versions of the packages involved; no
time and no destination path, so a rebuilt or resumed volume keeps the same
bytes (a commit records when, and ``CommitVolume`` the full task ids). ``blockfs-serve`` answers
``/provenance`` with it in the shape of cloud-volume's
``DataLayerProvenance`` (``description``, ``sources``, ``processing``,
``owners``), adding the commit a served version is.
"""

from __future__ import annotations

import datetime
import getpass
import importlib.metadata
import platform
import socket
from typing import Any

KEY = "provenance"
PACKAGES = ("blockfs_tasks", "numpy", "numcodecs", "luigi", "tifffile", "h5py", "zarr")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (those installed) and of Python."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _who() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return socket.gethostname()


def processing_step(
    method: str, parameters: dict[str, Any], task_id: str | None = None, dated: bool = False
) -> dict[str, Any]:
    """One processing record: method, parameters, task id, who, package versions (and when, UTC, if ``dated``).

    Undated by default, so a build resumed after a crash writes the same bytes
    as one that never stopped; a commit of the volume records the time.
    """
    step: dict[str, Any] = {"method": method, "parameters": parameters, "by": _who(), "versions": package_versions()}
    if dated:
        step["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if task_id is not None:
        step["task_id"] = task_id
    return step


def with_step(
    metadata: dict[str, Any], step: dict[str, Any], sources: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """A copy of ``metadata`` whose provenance gained ``sources`` (each once) and ``step``."""
    out = dict(metadata)
    record = dict(out.get(KEY) or {})
    known = list(record.get("sources") or [])
    record["sources"] = known + [s for s in sources if s not in known]
    record["processing"] = list(record.get("processing") or []) + [step]
    out[KEY] = record
    return out


def cloudvolume_provenance(metadata: dict[str, Any], commit: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``/provenance`` JSON (cloud-volume's ``DataLayerProvenance``) of a volume's metadata."""
    stored = metadata.get(KEY)
    record: dict[str, Any] = stored if isinstance(stored, dict) else {}
    sources = [str(s) for s in record.get("sources") or []]
    processing = [p for p in record.get("processing") or [] if isinstance(p, dict)]
    description = "blockfs volume"
    if commit is not None:
        description = f"blockfs volume, commit {commit.get('Id')}: {commit.get('Message', '')}"
        processing = [*processing, {"method": "blockfs commit", "by": commit.get("Author"),
                                    "date": commit.get("Time"), "commit": commit.get("Id"),
                                    "message": commit.get("Message"), "parents": commit.get("Parents")}]
    return {"description": description, "sources": list(dict.fromkeys(sources)), "processing": processing,
            "owners": []}
