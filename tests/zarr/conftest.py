"""Fixtures of the zarr view tests (defined in ``zarr_fixtures``).

This folder has no ``__init__.py`` on purpose: a package named ``zarr`` here
would shadow the real zarr for every test.
"""

from zarr_fixtures import pyramid, serve, volume  # noqa: F401
