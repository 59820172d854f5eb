"""Exports of a blockfs volume to per-plane TIFF and JPEG 2000 files, and to HDF5.

Each exporter is a plain function over a :class:`~blockfs_tasks.core.Directory`
and a range of z-planes ``[z0, z1)``, so that a Luigi task can export one slab
of planes at a time and use the planes' files as its checkpoint:

* :func:`blockfs_tasks.export.tiff.export_tiff` - one 2D TIFF per plane;
* :func:`blockfs_tasks.export.jp2k.export_jp2k` - one ``.jp2`` per plane;
* :func:`blockfs_tasks.export.hdf5.export_hdf5` - one dataset in one HDF5 file, in
  this process; :func:`blockfs_tasks.export.hdf5_mpi.export_hdf5_mpi` - the same
  over the ranks of ``mpiexec`` (the caller chooses). Their parts:
  ``hdf5_chunks`` (filters, chunk encoder), ``hdf5_record`` (resume record),
  ``hdf5_writer`` (the job and the one writer), ``rollback`` (crash safety);
* :mod:`blockfs_tasks.export.planes` - output paths (``pattern % z``), which
  planes are complete, plane ranges and slabs, and reading planes with bounded memory;
* :mod:`blockfs_tasks.export.errors` - the errors only exports raise.

Every file is written under a temporary name and renamed into place, so a file
at a plane's path is always complete. Optional dependencies (tifffile, glymur, h5py)
are imported only by the exporter that needs them; nothing here imports luigi.
"""
