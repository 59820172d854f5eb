"""Codecs beyond Blosc: lossless float codecs (fpzip, pcodec), kempressed and the BitRound filter.

:mod:`.registry` maps the names users pick (``compression="fpzip"``) and the
ids of format 2.1.0 codec records to these codecs; the Blosc codec itself is
:class:`blockfs_tasks.core.codec.BlockCodec`.
"""
