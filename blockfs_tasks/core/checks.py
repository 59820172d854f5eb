"""Argument checks shared by every layer: integers, ranges, levels.

Each check returns the value as a plain Python type or raises the caller's
error class (a :class:`~.errors.BlockfsError` subclass) with a message in one
style: what was expected, and what came::

    Expected a compression level from the inclusive range (0, 9). Got 12 instead.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .errors import BlockfsError, ConfigurationError


def check_int(
    value: Any,
    what: str,
    minimum: int | None = None,
    maximum: int | None = None,
    error: type[BlockfsError] = ConfigurationError,
) -> int:
    """``value`` as an ``int`` within [minimum, maximum] (either bound optional); bools and floats are refused.

    ``what`` names the value in the message ("a compression level", "n_threads").
    """
    # with both bounds, say the range even when the value is no integer at all
    an_integer = "an integer" if minimum is None or maximum is None else (
        f"an integer from the inclusive range ({minimum}, {maximum})"
    )
    if isinstance(value, bool) or getattr(value, "dtype", None) == np.dtype(bool):
        raise error(f"Expected {what} to be {an_integer}. Got {value!r} instead.")
    try:
        number = operator.index(value)
    except TypeError:
        raise error(f"Expected {what} to be {an_integer}. Got {type(value).__name__} {value!r} instead.") from None
    low_ok = minimum is None or number >= minimum
    high_ok = maximum is None or number <= maximum
    if not (low_ok and high_ok):
        if maximum is None:
            wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise error(f"Expected {what} to be {wanted}. Got {value!r} instead.")
        if minimum is None:
            raise error(f"Expected {what} to be an integer <= {maximum}. Got {value!r} instead.")
        raise error(f"Expected {what} from the inclusive range ({minimum}, {maximum}). Got {value!r} instead.")
    return number


def check_positive(value: Any, what: str, error: type[BlockfsError] = ConfigurationError) -> int:
    """``value`` as an ``int`` >= 1."""
    return check_int(value, what, minimum=1, error=error)


def check_optional_positive(value: Any, what: str, error: type[BlockfsError] = ConfigurationError) -> int | None:
    """None, or ``value`` as an ``int`` >= 1 (thread counts where None means 'one per core')."""
    return None if value is None else check_positive(value, what, error)


def check_level(value: Any, what: str = "a compression level", maximum: int = 9) -> int:
    """A compression level from 0 to ``maximum`` (Blosc, zlib/deflate, gzip: 0-9)."""
    return check_int(value, what, minimum=0, maximum=maximum)
