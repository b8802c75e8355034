"""Restricted unpickling for CIFAR's python-pickle batches: numpy arrays and builtins only."""
from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

from ..errors import DataError

# (module, name) pairs a CIFAR batch may reference: what numpy needs to rebuild an array.
# `numpy.core` is numpy 1's module name (the original files, pickled by Python 2);
# `numpy._core` is numpy 2's. `_frombuffer` is what numpy writes under pickle protocol 5.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy", "ndarray"): (None, "ndarray"),
    ("numpy", "dtype"): (None, "dtype"),
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list."""


def _numpy_object(submodule: str | None, name: str) -> Any:
    if submodule is None:
        return getattr(importlib.import_module("numpy"), name)
    for base in ("numpy._core", "numpy.core"):  # numpy 2, then numpy 1
        try:
            return getattr(importlib.import_module(f"{base}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this numpy has no {submodule}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves no global except the numpy array constructors in `_ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise RefusedGlobal(
                f"refusing to load global {module}.{name}: only numpy arrays and builtin "
                f"containers are allowed in a dataset pickle"
            )
        return _numpy_object(*target)


def safe_load(path: Path) -> Any:
    """Unpickle `path` (Python 2 or 3 pickle) through RestrictedUnpickler; DataError on any failure.

    Python 2 strings are decoded as latin-1 (numpy's recommendation), so keys come back as str.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from exc
    return safe_loads(data, source=str(path))


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Like safe_load, for bytes already in memory."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as exc:
        raise DataError(f"{source}: not a safe dataset pickle ({exc})") from None
    except Exception as exc:  # truncated or garbled files raise many different types
        raise DataError(f"{source}: corrupt pickle ({type(exc).__name__}: {exc}); re-extract the original archive") from None
