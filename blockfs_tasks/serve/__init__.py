"""Serving blockfs volumes and pyramids to Neuroglancer (precomputed format).

:mod:`.precomputed` maps a volume or pyramid to the ``info`` JSON and the
chunks of the Neuroglancer precomputed format; :mod:`.server` serves them over
HTTP, :mod:`.static` writes them out as files. Nothing here imports luigi.
"""

from .precomputed import PrecomputedVolume, Scale, open_precomputed

__all__ = ["PrecomputedVolume", "Scale", "open_precomputed"]
