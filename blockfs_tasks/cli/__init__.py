"""Console scripts: each is ``main(argv) -> int`` over a plain function, one module per family of tools.

Errors of the package become exit code 1 with a one-line message; argparse
errors (a bad option value included: numbers that must be positive, ports)
exit 2 with argparse's usage line and one error line, never a traceback.
Ctrl-C ends in one line and exit code 130. Long work shows a tqdm bar unless
``--silent``. The shared wrapper is :func:`.common._entry`.
"""

from __future__ import annotations

from .common import EXIT_INTERRUPTED, positive_int
from .exports import hdf5_main, jp2k_main, tif_main
from .refs import refs_main
from .relocate import cp_main, mv_main, rebase_main
from .serving import precomputed_main, pyramid_main, serve_main
from .tune import main as tune_main
from .versions import compact_main, delete_main, version_main
from .volumes import info_main, upgrade_main, verify_main

__all__ = [
    "EXIT_INTERRUPTED", "compact_main", "cp_main", "delete_main", "hdf5_main", "info_main", "jp2k_main", "mv_main",
    "positive_int", "precomputed_main", "pyramid_main", "rebase_main", "refs_main", "serve_main", "tif_main",
    "tune_main", "upgrade_main", "verify_main", "version_main",
]
