"""The package's Luigi defaults (``defaults.cfg``), at the lowest priority wherever luigi runs.

Luigi reads ``./luigi.cfg`` from the current folder only, and users run the
pipeline from their data folders: without these defaults a failed run would
exit 0 (no ``[retcode]``) and log at DEBUG. Importing
:mod:`blockfs_tasks.tasks` (which ``luigi --module blockfs_tasks.tasks`` does
before it reads ``[retcode]`` or ``[core] log_level``) calls
:func:`install_defaults`: the file goes first in luigi's config search path,
so every later file (``/etc/luigi/luigi.cfg``, ``./luigi.cfg``,
``LUIGI_CONFIG_PATH``) and the command line override it.
"""

from __future__ import annotations

import configparser
import logging
from pathlib import Path

from luigi.configuration import get_config
from luigi.configuration.cfg_parser import LuigiConfigParser

logger = logging.getLogger(__name__)

#: The defaults file shipped with the package; the checkout's ``luigi.cfg`` is a copy.
DEFAULTS_PATH = Path(__file__).with_name("defaults.cfg")


def read_defaults() -> configparser.RawConfigParser:
    """The defaults file as raw (uninterpolated) sections and values."""
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep keys as written, as luigi does
    with open(DEFAULTS_PATH, encoding="utf-8") as f:
        parser.read_file(f)
    return parser


def install_defaults() -> None:
    """Put ``defaults.cfg`` under every other luigi config source; idempotent.

    The path goes first in ``LuigiConfigParser``'s search list (so a later
    ``reload()`` reads it before the user's files), and the options the loaded
    config lacks are filled in now, without re-reading the user's files (which
    would undo values set with ``config.set``). Only luigi's default ``cfg``
    parser is served; under ``LUIGI_CONFIG_PARSER=toml`` nothing changes.
    """
    path = str(DEFAULTS_PATH)
    search = LuigiConfigParser._config_paths
    if path in search:
        return
    search.insert(0, path)
    config = get_config()
    if not isinstance(config, LuigiConfigParser):
        logger.debug("config parser %s: blockfs_tasks defaults not applied", type(config).__name__)
        return
    defaults = read_defaults()
    for section in defaults.sections():
        for key, value in defaults.items(section):
            if not config.has_option(section, key):
                config.set(section, key, value)
