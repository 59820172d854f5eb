"""The shared argument checks and the optional-import helper."""

from __future__ import annotations

import numpy as np
import pytest

from blockfs_tasks.core.checks import check_int, check_level, check_optional_positive, check_positive
from blockfs_tasks.core.errors import ConfigurationError, MissingDependencyError
from blockfs_tasks.core.optional import require
from blockfs_tasks.ingest.errors import SourceError


def test_check_int_accepts_integers_of_any_kind() -> None:
    assert check_int(np.int64(3), "x") == 3 and type(check_int(np.uint8(3), "x")) is int
    assert check_positive(1, "n") == 1 and check_optional_positive(None, "n") is None
    assert check_level(0) == 0 and check_level(9) == 9


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: check_int(True, "n"), "Expected n to be an integer. Got True instead."),
        (lambda: check_int(2.0, "n"), "Expected n to be an integer. Got float 2.0 instead."),
        (lambda: check_positive(0, "n_threads"), "Expected n_threads to be a positive integer. Got 0 instead."),
        (lambda: check_level(12), "Expected a compression level from the inclusive range (0, 9). Got 12 instead."),
        (lambda: check_int(-1, "z0", minimum=0), "Expected z0 to be an integer >= 0. Got -1 instead."),
    ],
)
def test_messages_say_what_was_expected_and_what_came(call, message: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        call()
    assert str(e.value) == message


def test_the_callers_error_class() -> None:
    with pytest.raises(SourceError):
        check_positive(-3, "a plane count", error=SourceError)


def test_require_names_the_extra() -> None:
    assert require("json", extra=None, purpose="tests").dumps([]) == "[]"
    with pytest.raises(MissingDependencyError, match=r"pip install 'blockfs_tasks\[zarr\]'") as e:
        require("no_such_module_here", extra="zarr", purpose="the zarr view")
    assert isinstance(e.value, ImportError)
