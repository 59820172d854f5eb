"""blockfs_tasks: blockfs volumes, the Luigi tasks that write and export them, and their tools.

``from blockfs_tasks import Directory`` is the live API of the filesystem core;
the Luigi tasks live in :mod:`blockfs_tasks.tasks` so that importing this
package never imports luigi.
"""

from .core import Compression, Directory

__version__ = "0.1.0"
__all__ = ["Compression", "Directory", "__version__"]
