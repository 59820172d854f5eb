"""Export tasks: TIFF, JPEG 2000 and HDF5, checkpointed per slab of planes.

``ExportTiff --output-pattern '/out/img_%04d.tiff'`` exports the volume named by
``--volume`` (an existing directory file) or, without it, the volume that
``BuildDirectory`` (its ``--BuildDirectory-source`` / ``--BuildDirectory-dest``)
builds first. One slab task per z row of blocks (``[export] slab_planes``) does
the work; a plane's file is published atomically, so a slab is complete when
all its files exist and an interrupted slab skips the planes already written.
HDF5 slabs run one at a time (one writer per file) through ``mpiexec``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Generator, Sequence
from typing import TextIO, cast

import luigi

from ..export.planes import plane_path, plane_slabs
from .config import export, io_resources
from .ingest import BuildDirectory
from .progress import TaskProgress
from .targets import PlaneFilesTarget, VolumeTarget


class ExistingVolume(luigi.ExternalTask):
    """A volume that already exists: its directory file."""

    path = luigi.PathParameter(description="Directory file of the volume.")

    def output(self) -> VolumeTarget:
        return VolumeTarget(self.path)  # exists only as a blockfs volume


class FromVolume(luigi.Task):
    """Mixin: the task reads an existing volume or the one BuildDirectory builds."""

    volume = luigi.OptionalPathParameter(
        default=None, description="Directory file of an existing volume; unset = the volume of [BuildDirectory]."
    )

    def volume_task(self) -> luigi.Task:
        return ExistingVolume(path=self.volume) if self.volume else BuildDirectory()

    def volume_path(self) -> str:
        return self.volume_task().output().path

    def slabs(self) -> list[tuple[int, int]]:
        """Plane ranges [z0, z1) of ``[export] slab_planes`` planes, rounded up to whole block rows."""
        return plane_slabs(self.volume_path(), export().slab_planes or None)


class _PlaneSlab(luigi.Task):
    """One slab of planes of a per-plane export; its targets are the plane files."""

    volume = luigi.PathParameter(description="Directory file of the volume.")
    output_pattern = luigi.Parameter(  # %% : argparse formats help
        description="Output path with a %%d field, e.g. /out/img_%%04d.tiff."
    )
    z0 = luigi.IntParameter(description="First plane, inclusive.")
    z1 = luigi.IntParameter(description="Last plane, exclusive.")

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]  # luigi declares resources a plain attribute
        return io_resources()

    def requires(self) -> luigi.Task:
        return ExistingVolume(path=self.volume)

    def output(self) -> PlaneFilesTarget:
        paths = [plane_path(self.output_pattern, z) for z in range(self.z0, self.z1)]
        return PlaneFilesTarget(paths, os.path.abspath(self.volume))

    def progress(self) -> TaskProgress:
        """The exporter's ``progress(done, total)``; resets the UI's progress as the slab starts."""
        return TaskProgress(self, f"planes {self.z0}-{self.z1}")


class ExportTiffSlab(_PlaneSlab):
    """Planes [z0, z1) of a volume as 2D TIFF files."""

    compression = luigi.IntParameter(default=3, description="zlib/deflate level 0-9 (0 = uncompressed).")

    def run(self) -> None:
        from ..export.tiff import export_tiff

        config = export()
        progress = self.progress()
        export_tiff(
            self.volume, self.output_pattern, self.z0, self.z1, level=self.compression,
            n_threads=config.threads, memory_budget=config.memory_budget_mb << 20, existing="skip",
            progress=progress,
        )
        progress.finish()


class ExportJp2kSlab(_PlaneSlab):
    """Planes [z0, z1) of a volume as JPEG 2000 files."""

    psnr = luigi.OptionalFloatParameter(default=None, description="Target PSNR in dB; unset = lossless.")

    def run(self) -> None:
        from ..export.jp2k import export_jp2k

        config = export()
        progress = self.progress()
        export_jp2k(
            self.volume, self.output_pattern, self.z0, self.z1, psnr=self.psnr,
            n_threads=config.threads, memory_budget=config.memory_budget_mb << 20, existing="skip",
            progress=progress,
        )
        progress.finish()


class _SlabbedExport(FromVolume):
    """A whole export: complete when every slab task is."""

    def slab_tasks(self) -> Sequence[luigi.Task]:
        raise NotImplementedError

    def requires(self) -> luigi.Task:
        return self.volume_task()

    def complete(self) -> bool:
        return self.volume_task().complete() and all(t.complete() for t in self.slab_tasks())

    def run(self) -> Generator[Sequence[luigi.Task], object, None]:
        yield self.slab_tasks()  # dynamic: the slabs are known once the volume exists


class _PlaneExport(_SlabbedExport):
    """A per-plane export (TIFF, JPEG 2000)."""

    output_pattern = luigi.Parameter(  # %% : argparse formats help
        description="Output path with a %%d field, e.g. /out/img_%%04d.tiff."
    )


class ExportTiff(_PlaneExport):
    """Export a volume as one 2D TIFF per z-plane."""

    compression = luigi.IntParameter(default=3, description="zlib/deflate level 0-9 (0 = uncompressed).")

    def slab_tasks(self) -> list[_PlaneSlab]:
        return [
            ExportTiffSlab(volume=self.volume_path(), output_pattern=self.output_pattern, z0=a, z1=b,
                           compression=self.compression)
            for a, b in self.slabs()
        ]


class ExportJp2k(_PlaneExport):
    """Export a volume as one JPEG 2000 file per z-plane."""

    psnr = luigi.OptionalFloatParameter(default=None, description="Target PSNR in dB; unset = lossless.")

    def slab_tasks(self) -> list[_PlaneSlab]:
        return [
            ExportJp2kSlab(volume=self.volume_path(), output_pattern=self.output_pattern, z0=a, z1=b, psnr=self.psnr)
            for a, b in self.slabs()
        ]


class Hdf5SlabTarget(luigi.Target):
    """Planes [z0, z1) recorded as exported in an HDF5 dataset."""

    def __init__(self, dest: str, name: str, z0: int, z1: int, volume: str) -> None:
        self.dest, self.name, self.z0, self.z1, self.volume = dest, name, z0, z1, volume

    def exists(self) -> bool:
        from ..export.hdf5 import planes_complete

        return planes_complete(self.dest, self.name, self.z0, self.z1, self.volume)


class ExportHdf5Slab(luigi.Task):
    """Planes [z0, z1) into one HDF5 dataset, by ``mpiexec -n [export] mpi_ranks blockfs2hdf``."""

    volume = luigi.PathParameter(description="Directory file of the volume.")
    dest = luigi.PathParameter(description="HDF5 file (created if missing; other datasets are kept).")
    name = luigi.Parameter(default="data", description="Dataset path in the file.")
    compression = luigi.Parameter(default="gzip", description="gzip, lzf or none.")
    compression_opts = luigi.OptionalIntParameter(default=None, description="gzip level 0-9.")
    shuffle = luigi.BoolParameter(default=False, description="Byte-shuffle before compressing (HDF5 shuffle filter).")
    z0 = luigi.IntParameter(description="First plane, inclusive (on a block row).")
    z1 = luigi.IntParameter(description="Last plane, exclusive.")

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]  # luigi declares resources a plain attribute
        return {**io_resources(), "hdf5_writer": 1}  # one writer per HDF5 file at a time

    def requires(self) -> luigi.Task:
        return ExistingVolume(path=self.volume)

    def output(self) -> Hdf5SlabTarget:
        return Hdf5SlabTarget(os.path.abspath(self.dest), self.name, self.z0, self.z1, os.path.abspath(self.volume))

    def run(self) -> None:
        # MPI must not be initialised inside a luigi worker: run the ranks as a subprocess.
        ranks = export().mpi_ranks
        command = [os.path.join(os.path.dirname(sys.executable), "blockfs2hdf")]
        if ranks > 1:
            command = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", str(ranks), *command]
        command += [os.path.abspath(self.volume), os.path.abspath(self.dest), self.name,
                    "--compression", self.compression, "--z0", str(self.z0), "--z1", str(self.z1),
                    "--silent", "--progress-lines"]
        if self.shuffle:
            command.append("--shuffle")
        if self.compression_opts is not None:
            command += ["--compression-opts", str(self.compression_opts)]
        progress = TaskProgress(self, f"planes {self.z0}-{self.z1} on {max(1, ranks)} MPI ranks")
        returncode, errors = _run_with_progress_lines(command, progress)
        if returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({returncode}): {errors[-2000:]}")
        progress.finish()


def _run_with_progress_lines(command: list[str], progress: TaskProgress) -> tuple[int, str]:
    """Run ``blockfs2hdf --progress-lines``, passing its ``progress DONE TOTAL`` lines to ``progress``.

    Returns the exit code and the command's stderr (for the error message).
    """
    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as proc:
            for line in cast(TextIO, proc.stdout):  # stdout=PIPE
                words = line.split()
                if len(words) == 3 and words[0] == "progress":
                    progress(int(words[1]), int(words[2]))
        errors.seek(0)
        return proc.returncode, errors.read().decode(errors="replace").strip()


class ExportHdf5(_SlabbedExport):
    """Export a volume into one HDF5 dataset, slab by slab."""

    dest = luigi.PathParameter(description="HDF5 file (created if missing; other datasets are kept).")
    name = luigi.Parameter(default="data", description="Dataset path in the file.")
    compression = luigi.Parameter(default="gzip", description="gzip, lzf or none.")
    compression_opts = luigi.OptionalIntParameter(default=None, description="gzip level 0-9.")
    shuffle = luigi.BoolParameter(default=False, description="Byte-shuffle before compressing (HDF5 shuffle filter).")

    def slab_tasks(self) -> list[ExportHdf5Slab]:
        return [
            ExportHdf5Slab(volume=self.volume_path(), dest=self.dest, name=self.name, compression=self.compression,
                           compression_opts=self.compression_opts, shuffle=self.shuffle, z0=a, z1=b)
            for a, b in self.slabs()
        ]
