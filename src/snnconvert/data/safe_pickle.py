"""Restricted unpickling for CIFAR's python-pickle batches: plain data and numpy arrays only.

What a pickle may reference (everything else is refused before anything is called):
numpy's array, dtype and scalar constructors, and the two helpers Python 3 itself writes for
`bytes` under protocol 2 -- each wrapped so that it can only rebuild bytes. Dicts, lists, tuples,
str, bytes, ints, floats, bools and None need no global at all. So Python 2 pickles (the original
CIFAR files) and Python 3 pickles of protocols 2 to 5 of such data load; no other code can run.
"""
from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list, or called an allowed one unusually."""


def _latin1_bytes(text: Any, encoding: Any) -> bytes:
    """`_codecs.encode(text, 'latin1')`, as Python 3 pickles bytes under protocol 2; nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedGlobal(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}): only (str, 'latin1') rebuilds bytes")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """`bytes()`, as Python 3 pickles b'' under protocol 2; any argument is refused (bytes(n) allocates n)."""
    if args:
        raise RefusedGlobal("refusing bytes(...) with arguments: only bytes() rebuilds b''")
    return b""


def _numpy_object(submodule: str | None, name: str) -> Callable[..., Any]:
    if submodule is None:
        return getattr(importlib.import_module("numpy"), name)
    for base in ("numpy._core", "numpy.core"):  # numpy 2, then numpy 1
        try:
            return getattr(importlib.import_module(f"{base}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this numpy has no {submodule}.{name}")


def _numpy(submodule: str | None, name: str) -> Callable[[], Callable[..., Any]]:
    return lambda: _numpy_object(submodule, name)


# (module, name) a dataset pickle may reference -> a function returning what to give it.
# `numpy.core` is numpy 1's module name (the original files, pickled by Python 2 + numpy 1);
# `numpy._core` is numpy 2's. `_frombuffer` is what numpy writes under protocol 5, `scalar`
# rebuilds numpy scalars (e.g. a list of np.int64 labels). `__builtin__` is Python 2's name of
# `builtins`, which Python 3 writes under protocol 2 (the unpickler's fix_imports does not apply here).
_ALLOWED: dict[tuple[str, str], Callable[[], Callable[..., Any]]] = {
    **{(f"{base}.multiarray", "_reconstruct"): _numpy("multiarray", "_reconstruct") for base in ("numpy.core", "numpy._core")},
    **{(f"{base}.multiarray", "scalar"): _numpy("multiarray", "scalar") for base in ("numpy.core", "numpy._core")},
    **{(f"{base}.numeric", "_frombuffer"): _numpy("numeric", "_frombuffer") for base in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): _numpy(None, "ndarray"),
    ("numpy", "dtype"): _numpy(None, "dtype"),
    ("_codecs", "encode"): lambda: _latin1_bytes,
    ("builtins", "bytes"): lambda: _empty_bytes,
    ("__builtin__", "bytes"): lambda: _empty_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves no global except those in `_ALLOWED` (numpy arrays, bytes helpers)."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise RefusedGlobal(
                f"refusing to load global {module}.{name}: only numpy arrays and builtin "
                f"containers are allowed in a dataset pickle"
            )
        return target()

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("refusing a persistent id: a dataset pickle holds plain data only")


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
