"""``CommitVolume``: one commit of a volume per pipeline run, exactly once.

The task's target is the tag ``run-<key>``, where the key hashes the task's
id (its family and significant parameters): it exists only once the run's
commit is on the branch and tagged. ``run()`` first looks along the branch
for a commit of this run (its key is in the commit's ``Extra``), so a run
killed between its commit and its tag, rerun later, tags that commit
instead of committing again; a commit redone after a crash gets the same id
(:mod:`blockfs_tasks.core.versions`). By default it commits the volume that
``BuildDirectory(dest=volume, source=source)`` builds; subclass and override
``requires()`` to commit after another task (e.g. a pyramid level after
``Downsample``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, cast

import luigi

from ..core import versions
from ..core.naming import commit_file_name
from .ingest import BuildDirectory
from .progress import TaskProgress

logger = logging.getLogger(__name__)

SEARCH_DEPTH = 1000  # commits looked at along the branch for an earlier commit of this run


class RunTagTarget(luigi.Target):
    """The tag ``run-<key>`` of a volume, pointing at a commit file that exists."""

    def __init__(self, volume: str, key: str) -> None:
        self.volume = os.path.abspath(volume)
        self.tag = f"run-{key}"

    def exists(self) -> bool:
        commit = versions.read_ref(self.volume, versions.TAGS, self.tag).commit
        return commit is not None and os.path.exists(commit_file_name(self.volume, commit))


class CommitVolume(luigi.Task):
    """Commit the working volume once per pipeline run, the run's parameters in the commit."""

    volume = luigi.PathParameter(description="Directory file of the volume to commit.")
    source = luigi.Parameter(default="", description="Source to build the volume from first (BuildDirectory); "
                             "empty: the volume exists already.")
    message = luigi.Parameter(default="pipeline run", description="The commit message (the run key is added).")
    run_parameters = cast(
        "Any", luigi.DictParameter(default={}, description="The run's parameters, kept in the commit.")
    )

    def requires(self) -> Any:
        return BuildDirectory(dest=self.volume, source=self.source) if self.source else []

    @property
    def run_key(self) -> str:
        """16 hex digits naming this run: the hash of the task id."""
        return hashlib.sha256(self.task_id.encode()).hexdigest()[:16]

    def output(self) -> RunTagTarget:
        return RunTagTarget(os.fspath(self.volume), self.run_key)

    def run(self) -> None:
        volume = os.path.abspath(self.volume)
        progress = TaskProgress(self, "committing")
        key = self.run_key
        commit = self._earlier_commit(volume, key)
        if commit is None:
            upstream = [t.task_id for t in luigi.task.flatten(self.requires())]
            extra = {"run_key": key, "task_id": self.task_id, "upstream_task_ids": upstream,
                     "parameters": dict(self.to_str_params()),
                     "run_parameters": luigi.freezing.recursively_unfreeze(self.run_parameters)}
            commit = versions.commit_working(volume, f"{self.message} [run {key}]", extra=extra)
        versions.create_ref(volume, versions.TAGS, self.output().tag, commit)
        progress.finish(f"commit {commit[:12]} tagged {self.output().tag}")

    @staticmethod
    def _earlier_commit(volume: str, key: str) -> str | None:
        """A commit of this run already on the checked-out branch (a run killed before it tagged)."""
        state = versions.read_head(volume)
        head = versions.read_ref(volume, versions.HEADS, state.branch).commit if state.branch else None
        for info in versions.history(volume, head, SEARCH_DEPTH):
            if info.extra.get("run_key") == key:
                return info.id
        return None
