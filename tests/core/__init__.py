"""Tests of the filesystem core (blockfs_tasks.core) and its helpers."""
