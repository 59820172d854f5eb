"""Export planes of a blockfs volume as one JPEG 2000 (``.jp2``) file per plane.

Plane ``z`` goes to ``pattern % z``, encoded by glymur (OpenJPEG): lossless
(reversible 5/3 wavelet, decodes identical) by default, or lossy with a PSNR
target. Each file is published atomically, so a file at a plane's path is
complete; see :mod:`blockfs_tasks.export.planes` for the ``existing`` rule.

Dtypes: glymur writes unsigned samples of 8 bits (uint8) or 16 bits (anything
else), so only ``uint8`` and ``uint16`` volumes are exported;
other dtypes raise :class:`UnsupportedDTypeError` (export them as TIFF or HDF5).

PSNR against the data's own bit depth
-------------------------------------
OpenJPEG measures PSNR against the peak of the declared precision, which glymur
sets to 16 bits for uint16: on 12-bit camera data (max 4095) a request of 40 dB
is met by an image 24 dB worse than asked. Here the PSNR is measured against
the peak of the data's bit depth, ``2**b - 1``, with ``b`` the bits of the
plane's maximum (or ``bit_depth`` if given), so the request is translated into
OpenJPEG's terms: ``psnr + 20*log10((2**precision - 1) / (2**b - 1))``.
OpenJPEG's rate allocation only approximates its target (and can fall far
below it at low rates), so each lossy plane is decoded and measured; below the
request it is encoded again with a higher target, and after
:data:`PSNR_ATTEMPTS` tries it is written losslessly. Every plane written with
``psnr`` therefore meets it.

HTJ2K
-----
``codec="htj2k"`` writes lossless High-Throughput JPEG 2000 (Part 15) raw
codestreams with imagecodecs (OpenJPH) instead: several times faster to encode,
a few percent larger, decodable by glymur and imagecodecs. They are not JP2
files, so the outputs should be named ``.j2c`` or ``.jhc``.

Finding OpenJPEG
----------------
glymur loads ``libopenjp2`` when it is first imported: from a ``glymurrc``
file, else from the system (Debian: ``apt-get install libopenjp2-7``). When
neither has it, :func:`load_glymur` points glymur at the ``libopenjp2`` that the
Pillow wheel bundles (``pip install pillow``), through a ``glymurrc`` in a
temporary config folder that exists only while glymur is imported. If none is
found, :class:`MissingLibraryError` says how to install one.
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib.util
import logging
import math
import os
import sys
import tempfile
import threading
from typing import Any

import numpy as np

from ..core.atomic import published, write_atomically
from ..core.checks import check_int
from ..core.errors import ConfigurationError, MissingLibraryError
from ..core.optional import require
from ..core.parallel import bounded_map
from .errors import UnsupportedDTypeError
from .planes import (
    DEFAULT_MEMORY_BUDGET,
    Progress,
    VolumeLike,
    check_pattern,
    default_threads,
    iter_planes,
    open_volume,
    planes_to_write,
    resolve_z_range,
)

logger = logging.getLogger(__name__)

#: Voxel dtypes a ``.jp2`` written by glymur holds without loss.
SUPPORTED_DTYPES = ("uint8", "uint16")

#: Encoders: JP2 by glymur (OpenJPEG), or lossless HTJ2K codestreams by imagecodecs (OpenJPH).
CODECS = ("jp2", "htj2k")

#: Lossy encodes of one plane before falling back to lossless.
PSNR_ATTEMPTS = 8

#: OpenJPEG's working memory per pixel while encoding (and decoding, to check PSNR), in bytes.
CODEC_BYTES_PER_PIXEL = 16

#: The OpenJPEG version glymur needs to write.
MIN_OPENJPEG = (2, 4)

_IMPORT_LOCK = threading.Lock()

_FIX = (
    "install OpenJPEG: 'apt-get install libopenjp2-7' (Debian/Ubuntu), or 'pip install pillow' "
    "(its wheel bundles libopenjp2, which blockfs_tasks finds by itself), or name the library in "
    "a glymurrc file ([library] openjp2 = /path/to/libopenjp2.so)"
)


# ------------------------------------------------------------------ OpenJPEG
def system_openjp2() -> str | None:
    """The system's libopenjp2 as ctypes finds it, or None."""
    return ctypes.util.find_library("openjp2")


def user_glymurrc() -> str | None:
    """A glymurrc file glymur would read (current folder, then its config folder), or None."""
    candidates = [os.path.join(os.getcwd(), "glymurrc")]
    if "XDG_CONFIG_HOME" in os.environ:
        candidates.append(os.path.join(os.environ["XDG_CONFIG_HOME"], "glymur", "glymurrc"))
    elif "HOME" in os.environ:
        candidates.append(os.path.join(os.environ["HOME"], ".config", "glymur", "glymurrc"))
    return next((c for c in candidates if os.path.exists(c)), None)


def pillow_openjp2() -> str | None:
    """The libopenjp2 bundled in the installed Pillow wheel, or None (Pillow is not imported)."""
    spec = importlib.util.find_spec("PIL")
    if spec is None or spec.origin is None:
        return None
    pil = os.path.dirname(spec.origin)
    patterns = [
        os.path.join(os.path.dirname(pil), "pillow.libs", "libopenjp2*.so*"),  # manylinux wheels
        os.path.join(pil, ".dylibs", "libopenjp2*.dylib"),  # macOS wheels
        os.path.join(os.path.dirname(pil), "pillow.libs", "openjp2*.dll"),  # Windows wheels
    ]
    found = sorted(f for p in patterns for f in glob.glob(p))
    return found[0] if found else None


def _openjpeg_version(glymur: Any) -> tuple[int, ...]:
    return tuple(int(p) for p in glymur.version.openjpeg_version.split(".")[:2])


def load_glymur() -> Any:
    """Import glymur with an OpenJPEG library it can write with, finding one if needed.

    Order: a user's glymurrc or the system library (glymur's own lookup), then
    the library bundled with Pillow. Raises :class:`MissingLibraryError` naming
    the fix when glymur or OpenJPEG >= 2.4 is missing.
    """
    with _IMPORT_LOCK:
        glymur = sys.modules.get("glymur")
        if glymur is None:
            glymur = _import_glymur()
    if _openjpeg_version(glymur) < MIN_OPENJPEG:
        if glymur.version.openjpeg_version == "0.0.0":
            raise MissingLibraryError(
                "JPEG 2000 export needs the OpenJPEG library (libopenjp2), which glymur did not find "
                f"when it was imported: {_FIX}"
            )
        raise MissingLibraryError(
            f"JPEG 2000 export needs OpenJPEG >= 2.4; glymur loaded {glymur.version.openjpeg_version}: {_FIX}"
        )
    return glymur


def _import_glymur() -> Any:
    """Import glymur for the first time, through a temporary glymurrc naming Pillow's library if needed."""
    if importlib.util.find_spec("glymur") is None:  # not installed: no need to look for OpenJPEG
        return require("glymur", None, "JPEG 2000 export")  # raises MissingDependencyError
    bundled = None if (user_glymurrc() or system_openjp2()) else pillow_openjp2()
    if bundled is None:
        return require("glymur", None, "JPEG 2000 export")
    logger.info("using the OpenJPEG library bundled with Pillow: %s", bundled)
    with tempfile.TemporaryDirectory(prefix="blockfs-glymurrc-") as config:
        os.makedirs(os.path.join(config, "glymur"))
        with open(os.path.join(config, "glymur", "glymurrc"), "w") as f:
            f.write(f"[library]\nopenjp2 = {bundled}\n")
        saved = os.environ.get("XDG_CONFIG_HOME")
        os.environ["XDG_CONFIG_HOME"] = config
        try:
            return require("glymur", None, "JPEG 2000 export")
        finally:
            if saved is None:
                del os.environ["XDG_CONFIG_HOME"]
            else:
                os.environ["XDG_CONFIG_HOME"] = saved


# ---------------------------------------------------------------------- PSNR
def psnr_db(original: np.ndarray, decoded: np.ndarray, peak: float) -> float:
    """PSNR of ``decoded`` against ``original``, in dB, for a signal peak of ``peak``; inf if identical."""
    squared = 0.0
    rows = max(1, (1 << 20) // max(original.shape[-1], 1))
    for y in range(0, original.shape[0], rows):
        diff = original[y : y + rows].astype(np.float64) - decoded[y : y + rows]
        squared += float(np.dot(diff.ravel(), diff.ravel()))
    mse = squared / max(original.size, 1)
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def data_peak(plane: np.ndarray, bit_depth: int | None) -> int:
    """``2**b - 1``: the peak of ``bit_depth`` bits, or of the bits the plane's maximum needs."""
    bits = bit_depth if bit_depth is not None else max(1, int(plane.max()).bit_length())
    return (1 << bits) - 1


def openjpeg_psnr(psnr: float, peak: int, precision: int) -> float:
    """The PSNR to ask OpenJPEG for, which measures against ``2**precision - 1``, to get ``psnr`` against ``peak``."""
    return psnr + 20.0 * math.log10(((1 << precision) - 1) / peak)


def check_psnr(psnr: float | None) -> float | None:
    """``psnr`` as a float if it is None or a positive finite number of dB, else ConfigurationError."""
    if psnr is None:
        return None
    if isinstance(psnr, bool) or not isinstance(psnr, (int, float, np.integer, np.floating)) or not (
        0 < float(psnr) < math.inf
    ):
        raise ConfigurationError(f"Expected psnr to be a positive number of dB or None. Got {psnr!r} instead.")
    return float(psnr)


# -------------------------------------------------------------------- writing
def _htj2k_encoder() -> Any:
    imagecodecs = require("imagecodecs", None, "codec='htj2k'")
    htj2k = getattr(imagecodecs, "HTJ2K", None)
    if htj2k is None or not htj2k.available:
        raise MissingLibraryError("codec='htj2k' needs an imagecodecs build with HTJ2K (OpenJPH)")
    return imagecodecs.htj2k_encode


def _numres(shape: tuple[int, int]) -> int:
    """Wavelet resolutions: glymur's 6, fewer for planes too small for them."""
    return max(1, min(6, int(math.log2(max(1, min(shape)))) + 1))


def _write_jp2(glymur: Any, plane: np.ndarray, path: str, psnr: float | None = None) -> None:
    """Encode ``plane`` into a JP2 file at ``path`` (any name: the JP2 container is chosen here)."""
    if os.path.exists(path):
        os.unlink(path)
    jp2 = glymur.Jp2k(path, shape=plane.shape, numres=_numres(plane.shape), psnr=None if psnr is None else [psnr])
    jp2._codec_format = glymur.lib.openjp2.CODEC_JP2  # glymur picks JP2 by file extension; a temp name has none
    jp2[:] = np.ascontiguousarray(plane)


def encode_plane(
    glymur: Any, plane: np.ndarray, path: str, psnr: float | None = None, bit_depth: int | None = None
) -> float:
    """Write ``plane`` as a JP2 file at ``path``; return its PSNR (inf = lossless) against the data's peak.

    With ``psnr``, the file is decoded and measured, and re-encoded until it
    meets ``psnr`` (see the module docstring).
    """
    if psnr is None or not plane.any():
        _write_jp2(glymur, plane, path)
        return math.inf
    peak = data_peak(plane, bit_depth)
    precision = 8 if plane.dtype == np.uint8 else 16
    target = openjpeg_psnr(psnr, peak, precision)
    for attempt in range(PSNR_ATTEMPTS):
        _write_jp2(glymur, plane, path, target)
        achieved = psnr_db(plane, glymur.Jp2k(path)[:], peak)
        if achieved >= psnr:
            logger.debug("%s: %.2f dB >= %.2f dB after %d encodes", path, achieved, psnr, attempt + 1)
            return achieved
        target += min(max(psnr - achieved, 0.5), 3.0)
    logger.info("%s: OpenJPEG missed %.2f dB %d times; writing the plane losslessly", path, psnr, PSNR_ATTEMPTS)
    _write_jp2(glymur, plane, path)
    return math.inf


def export_jp2k(
    volume: VolumeLike,
    pattern: str,
    z0: int = 0,
    z1: int | None = None,
    *,
    psnr: float | None = None,
    bit_depth: int | None = None,
    codec: str = "jp2",
    n_threads: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    existing: str = "replace",
    progress: Progress | None = None,
) -> list[str]:
    """Write planes ``[z0, z1)`` of ``volume`` as JPEG 2000 files ``pattern % z``.

    Parameters
    ----------
    volume
        A :class:`Directory` or the path of its directory file (uint8 or uint16).
    pattern
        Output path with one ``%d``-style field, e.g. ``"/out/img_%04d.jp2"``;
        missing folders are created.
    z0, z1
        Planes to export, ``[z0, z1)``; ``z1=None`` means to the last plane.
    psnr
        None (default) for lossless; else the PSNR in dB every plane must meet,
        measured against the data's bit depth.
    bit_depth
        Bits of the data (e.g. 12 for a 12-bit camera) for the PSNR peak;
        default: the bits of each plane's maximum.
    codec
        ``"jp2"`` (default): JP2 files by glymur/OpenJPEG. ``"htj2k"``: lossless
        High-Throughput JPEG 2000 raw codestreams by imagecodecs (OpenJPH), several
        times faster to encode and a few percent larger; name them ``.j2c`` or
        ``.jhc`` (they are not JP2 files); glymur and imagecodecs decode them.
    n_threads
        Planes encoded at once, and threads decoding blocks (default: one per core);
        fewer when ``memory_budget`` cannot hold that many planes being encoded.
    memory_budget
        Upper bound, in bytes, for planes in memory plus OpenJPEG's working memory
        (estimated at :data:`CODEC_BYTES_PER_PIXEL` per pixel of each plane being encoded).
    existing
        ``"replace"`` (default), ``"skip"`` or ``"error"`` for outputs that exist.
    progress
        Called as ``progress(done, total)`` in planes after each plane is
        published (``total`` = planes to write); not called when none is.

    Returns
    -------
    list of str
        The paths of planes ``[z0, z1)``, in z order (written or skipped).
    """
    directory = open_volume(volume)
    pattern = check_pattern(pattern)
    z0, z1 = resolve_z_range(directory, z0, z1)
    if directory.dtype.name not in SUPPORTED_DTYPES:
        raise UnsupportedDTypeError(
            f"{directory.directory_filename}: JPEG 2000 export cannot hold {directory.dtype.name} voxels "
            f"without loss; supported dtypes: {', '.join(SUPPORTED_DTYPES)} (export as TIFF or HDF5 instead)"
        )
    psnr = check_psnr(psnr)
    if codec not in CODECS:
        raise ConfigurationError(f"Invalid codec={codec!r}; expected one of {CODECS}")
    if codec == "htj2k" and psnr is not None:
        raise ConfigurationError("psnr needs codec='jp2': the HTJ2K export is lossless only")
    if codec == "htj2k" and pattern.lower().endswith((".jp2", ".jpx")):
        raise ConfigurationError(
            f"Output pattern {pattern!r}: codec='htj2k' writes raw codestreams, not JP2 files; "
            f"name them .j2c or .jhc"
        )
    precision = directory.dtype.itemsize * 8
    if bit_depth is not None:
        bit_depth = check_int(bit_depth, f"bit_depth for {directory.dtype.name} data", 1, precision)
    threads = default_threads(n_threads)
    _, ny, nx = directory.shape
    plane_bytes = ny * nx * directory.dtype.itemsize
    per_thread = ny * nx * CODEC_BYTES_PER_PIXEL + 2 * plane_bytes  # codec memory + its plane, read twice over
    fit = memory_budget // per_thread
    if fit < 1:
        raise ConfigurationError(
            f"memory_budget={memory_budget} bytes is below the {per_thread} bytes needed to encode one "
            f"{ny}x{nx} plane as JPEG 2000 (a whole plane is encoded at once); raise memory_budget"
        )
    if fit < threads:
        logger.info("encoding %d planes at a time, not %d, to stay within memory_budget=%d", fit, threads,
                    memory_budget)
        threads = int(fit)
    working = threads * ny * nx * CODEC_BYTES_PER_PIXEL
    if codec == "htj2k":
        htj2k_encode = _htj2k_encoder()
    else:
        glymur = load_glymur()
    planes = planes_to_write(pattern, z0, z1, existing)

    def write(item: tuple[int, np.ndarray]) -> int:
        z, plane = item
        if codec == "htj2k":
            write_atomically(pattern % z, [htj2k_encode(np.ascontiguousarray(plane), reversible=True)])
        else:
            with published(pattern % z) as tmp:
                encode_plane(glymur, plane, tmp, psnr, bit_depth)
        return z

    # Planes still encoding keep their group alive while the next group is read: two groups at most.
    source = iter_planes(directory, planes, threads, (memory_budget - working) // 2)
    for done, _ in enumerate(bounded_map(write, source, threads, max_in_flight=threads), 1):
        if progress is not None:
            progress(done, len(planes))
    return [pattern % z for z in range(z0, z1)]


__all__ = [
    "CODECS",
    "SUPPORTED_DTYPES",
    "check_psnr",
    "data_peak",
    "encode_plane",
    "export_jp2k",
    "load_glymur",
    "openjpeg_psnr",
    "pillow_openjp2",
    "psnr_db",
    "system_openjp2",
    "user_glymurrc",
]
