"""The one definition of valid class labels, applied by every dataset reader."""
from __future__ import annotations

import reprlib
from typing import Any

import numpy as np

from ..errors import DataError

_SHORT = reprlib.Repr()
_SHORT.maxstring = 40
_SHORT.maxother = 40


def _is_int(value: Any) -> bool:
    """A Python or numpy integer, but not a bool (True is an int in Python, never a class index)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _first_non_int(values: list[Any] | tuple[Any, ...]) -> tuple[int, Any] | None:
    return next(((i, v) for i, v in enumerate(values) if not _is_int(v)), None)


def _whole_number_hint(array: np.ndarray) -> str:
    if array.dtype.kind == "f" and array.size and bool(np.all(np.isfinite(array) & (array == np.round(array)))):
        return " (the values are whole numbers: store them with an integer dtype)"
    return ""


def _refusal(values: Any) -> str | None:
    """Why `values` is not a 1-D sequence of integers, or None when it is one."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            return f"an array of {values.dtype} with shape {values.shape}"
        if values.dtype.kind not in "iu":
            sample = f" (e.g. {_SHORT.repr(values[:1].tolist()[0])})" if values.size else ""
            return f"an array of {values.dtype}{sample}{_whole_number_hint(values)}"
        return None
    if isinstance(values, (list, tuple)):
        bad = _first_non_int(values)
        if bad is None:
            return None
        i, v = bad
        return f"a {type(values).__name__} whose item {i} is {type(v).__name__} {_SHORT.repr(v)}"
    return f"{type(values).__name__} {_SHORT.repr(values)}"


def check_labels(values: Any, num_classes: int, source: str, key: str | None = None) -> np.ndarray:
    """`values` as int64 [N], if it is a 1-D sequence of integer class indices in [0, num_classes).

    Accepted: a 1-D numpy array of an integer dtype, or a list/tuple of Python or numpy ints.
    Everything else is a DataError naming `source` (the file) and `key` (the entry in it): floats
    (even 3.0 -- nothing is rounded or truncated), bools, strings, None, nested sequences, and
    indices outside the range. An empty sequence is zero labels.
    """
    where = f"{source}: {key!r}" if key is not None else f"{source}: labels"
    expected = f"a 1-D sequence of integer class indices in 0..{num_classes - 1}"
    refusal = _refusal(values)
    if refusal is not None:
        raise DataError(f"{where} must be {expected}; got {refusal}")
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = (int(values.min()), int(values.max())) if isinstance(values, np.ndarray) else (min(values), max(values))
    if low < 0 or high >= num_classes:
        raise DataError(f"{where} span {low}..{high}; expected {expected}")
    return np.asarray(values, dtype=np.int64)
