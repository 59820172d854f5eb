"""``ExportReferences``: a kerchunk / fsspec references file of a volume or pyramid, as a Luigi task.

The file lets readers without blockfs open the volume as an OME-Zarr group
(``zarr.open_group("reference://", storage_options={"fo": ...})``); it names
the volume's own block files, so nothing is copied but padded edge chunks.
"""

from __future__ import annotations

import json
import os

import luigi

from ..core.errors import ConfigurationError
from ..pyramid.layout import is_pyramid
from .export import ExistingVolume
from .progress import running

#: What a volume's modification time is read from: a pyramid's info file, else the directory file.
_INFO = "info"


def _volume_mtime(volume: str) -> float:
    return os.path.getmtime(os.path.join(volume, _INFO) if os.path.isdir(volume) else volume)


class ReferencesTarget(luigi.LocalTarget):
    """A references JSON that is done when it is a references document newer than its volume.

    A file at the path that is not a references document is an error (never
    taken as done, never overwritten); one older than the volume is stale and
    is written again.
    """

    def __init__(self, path: str, volume: str) -> None:
        super().__init__(path)
        self.volume = volume

    def exists(self) -> bool:
        if not os.path.exists(self.path):
            return False
        try:
            with open(self.path, encoding="utf-8") as f:
                document = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigurationError(
                f"{self.path} exists but is not a references file ({e}); remove it or choose another --out-json"
            ) from None
        if not isinstance(document, dict) or document.get("version") != 1 or "refs" not in document:
            raise ConfigurationError(
                f"{self.path} exists but is not a references file (no version 1 'refs'); "
                f"remove it or choose another --out-json"
            )
        return os.path.getmtime(self.path) >= _volume_mtime(self.volume)


class ExportReferences(luigi.Task):
    """Write the references JSON of a volume (``.blockfs``) or a pyramid folder (with its edge side file)."""

    volume = luigi.PathParameter(description="Directory file of a volume, or a pyramid folder.")
    out_json = luigi.PathParameter(description="The references JSON to write; the edge side file goes beside it.")
    url_prefix = luigi.OptionalParameter(
        default=None,
        description="What the JSON's folder is called for readers (s3://bucket/path/); unset = absolute file:// URLs.",
    )
    inline_edges = luigi.BoolParameter(
        default=False, description="Put padded edge chunks in the JSON, not a side file."
    )
    relative = luigi.BoolParameter(
        default=False, description="Paths relative to the JSON's folder (readers then open it from that folder)."
    )

    def requires(self) -> luigi.Task | None:
        if os.path.isdir(self.volume):
            if not is_pyramid(self.volume):
                raise ConfigurationError(f"{self.volume} is a folder without a pyramid info file")
            return None
        return ExistingVolume(path=self.volume)

    def output(self) -> ReferencesTarget:
        return ReferencesTarget(os.path.abspath(self.out_json), os.path.abspath(self.volume))

    def run(self) -> None:
        from ..zarr.refs import write_references

        task = running(self)
        task.set_progress_percentage(0)
        task.set_status_message(f"references of {self.volume}")
        summary = write_references(
            self.volume, self.output().path, self.url_prefix, self.inline_edges, relative=self.relative
        )
        task.set_status_message(
            f"{summary.chunks} chunks referenced, {summary.edge_chunks} padded edge chunks "
            f"({summary.json_bytes + summary.side_bytes} bytes beside {summary.stored_bytes} stored)"
        )
        task.set_progress_percentage(100)
