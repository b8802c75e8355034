"""Typed reading of the JSON the library loads (snn.json, model.json, training-checkpoint metadata,
method and neuron descriptions): a malformed value is a CheckpointError naming the file, the key path
(`layers["conv1"].config.kernel_size`) and what was expected, never a raw KeyError or TypeError.

- `read_json(path)` / `parse_json(text, source)`: json.loads, with invalid JSON, files that cannot be
  read and nesting deeper than MAX_DEPTH refused (deeper values would exhaust the recursion limit).
- `Doc(value, source)`: a parsed value with where it came from. `doc["key"]` is a field (its value
  may be missing), `doc.get("key")` None when missing or null, `doc.entries()` / `doc.items()` an
  object's named entries / a list's elements. The readers `as_object`, `as_list`, `as_str`, `as_int`,
  `as_number`, `as_bool` and `as_type(hint)` (a type hint: int, float, bool, str, None, unions,
  Literal, tuple[...], list[...]) return plain Python values or raise.
- `as_doc(value, what)`: a Doc for a value given in Python (a method or neuron config dict).
"""
from __future__ import annotations

import json
import math
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Union

from .errors import CheckpointError

MAX_DEPTH = 64  # snnconvert writes at most about 10 levels
_MISSING: Any = object()

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 6, 6


def show(value: Any) -> str:
    """A short repr of any value (depth and length limited, so safe for deep or huge structures)."""
    return _REPR.repr(value)


def _too_deep(source: str) -> CheckpointError:
    return CheckpointError(f"{source} nests values more than {MAX_DEPTH} levels deep; it was not written by "
                           "snnconvert (a corrupt or foreign file)")


def _check_depth(value: Any, source: str) -> None:
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(source)
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)


def parse_json(text: str | bytes, source: str) -> Any:
    """The JSON value of `text` (read from `source`); CheckpointError if invalid or nested too deeply."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(source) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise CheckpointError(f"{source} is not valid JSON: {e}") from None
    _check_depth(value, source)
    return value


def read_json(path: str | Path) -> Any:
    """The JSON value in file `path`; CheckpointError naming it if unreadable, invalid or nested too deeply."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CheckpointError(f"{str(path)} cannot be read: {e.strerror or e}") from None
    return parse_json(raw, str(path))


def read_versioned(path: str | Path, fmt: str, versions: tuple[int, ...], what: str) -> tuple["Doc", int]:
    """A JSON file whose "format" must be `fmt` and "version" one of `versions`, as a Doc, and its
    version; CheckpointError naming the file otherwise (`what`: e.g. "spiking model description")."""
    doc = Doc(read_json(path), str(path))
    if not isinstance(doc.value, dict) or doc.value.get("format") != fmt:
        raise CheckpointError(f"{str(path)!r} is not a snnconvert {what} (its \"format\" is not {fmt!r})")
    version = doc.value.get("version")
    if isinstance(version, bool) or version not in versions:
        raise CheckpointError(f"{str(path)!r} has {what} version {show(version)}; this snnconvert reads versions "
                              f"{', '.join(map(str, versions))} (a newer snnconvert may read it)")
    return doc, version


class Doc:
    """A JSON value read from `source` (a file, for messages), found at key path `path` ('' for the
    whole document). Readers return plain values or raise CheckpointError naming source and path."""

    __slots__ = ("value", "source", "path")

    def __init__(self, value: Any, source: str, path: str = "") -> None:
        self.value, self.source, self.path = value, source, path

    @property
    def missing(self) -> bool:
        return self.value is _MISSING

    def error(self, message: str) -> CheckpointError:
        """A CheckpointError saying `message` about this value."""
        return CheckpointError(f"{self.source}: {self.path}: {message}" if self.path else f"{self.source}: {message}")

    def fail(self, expected: str) -> CheckpointError:
        """The error for a value that is not `expected` (e.g. "an integer >= 1")."""
        where = self.path or "the top level"
        if self.missing:
            return CheckpointError(f"{self.source}: {where} is missing; expected {expected}")
        return CheckpointError(f"{self.source}: {where} must be {expected}, got {show(self.value)}")

    # --- structure -----------------------------------------------------------------------------
    def _child(self, value: Any, step: str) -> "Doc":
        return Doc(value, self.source, f"{self.path}{step}")

    def __getitem__(self, key: str) -> "Doc":
        """Field `key` of this object (CheckpointError if this is no object); its value may be missing."""
        step = (f".{key}" if self.path else key) if key.isidentifier() else f"[{json.dumps(key)}]"
        return self._child(self.as_object().get(key, _MISSING), step)

    def get(self, key: str) -> "Doc | None":
        """Field `key`, or None when it is missing or null."""
        child = self[key]
        return None if child.missing or child.value is None else child

    def entries(self) -> dict[str, "Doc"]:
        """The entries of an object whose keys are names chosen by the writer (`layers["conv1"]`)."""
        return {k: self._child(v, f"[{json.dumps(k)}]") for k, v in self.as_object().items()}

    def items(self) -> list["Doc"]:
        """The elements of a list (`nodes[3]`)."""
        return [self._child(v, f"[{i}]") for i, v in enumerate(self.as_list())]

    def check_keys(self, allowed: Iterable[str], advice: str = "") -> None:
        """Refuse keys of this object that are not in `allowed`."""
        allowed = list(allowed)
        unknown = [k for k in self.as_object() if k not in allowed]
        if unknown:
            raise self.error(f"unknown key(s) {', '.join(map(repr, unknown))}; the keys read here are "
                             f"{', '.join(map(repr, allowed)) or 'none'}{advice}")

    # --- typed readers -------------------------------------------------------------------------
    def as_object(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.fail("an object ({...})")
        return self.value

    def as_list(self) -> list[Any]:
        if not isinstance(self.value, list):
            raise self.fail("a list ([...])")
        return self.value

    def as_str(self, choices: Iterable[str] | None = None) -> str:
        options = None if choices is None else list(choices)
        if not isinstance(self.value, str) or (options is not None and self.value not in options):
            raise self.fail("a string" if options is None else f"one of {', '.join(map(repr, options))}")
        return self.value

    def as_int(self, minimum: int | None = None) -> int:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum):
            raise self.fail("an integer" if minimum is None else f"an integer >= {minimum}")
        return v

    def as_number(self) -> float:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail("a finite number")
        return float(v)

    def as_bool(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail("true or false")
        return self.value

    def as_type(self, hint: Any) -> Any:
        """The value as the type hint `hint` asks (lists become tuples where it asks a tuple); hints this
        reader does not know accept any value (the consumer then checks it)."""
        ok, value = _convert(self.value, hint)
        if not ok:
            raise self.fail(describe(hint))
        return value


def as_doc(value: Any, what: str) -> Doc:
    """`value` itself if it is a Doc, else a Doc for a value given in Python, named `what` in messages."""
    return value if isinstance(value, Doc) else Doc(value, what)


# --- type hints --------------------------------------------------------------------------------
_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) is Union or isinstance(hint, types.UnionType):
        return typing.get_args(hint)
    return None


def _convert(value: Any, hint: Any) -> tuple[bool, Any]:
    """(whether `value` fits `hint`, the value converted)."""
    if value is _MISSING:
        return False, value
    if hint is Any:
        return True, value
    if hint is None or hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return fits, float(value) if fits else value
    if hint is str:
        return isinstance(value, str), value
    union = _union_args(hint)
    if union is not None:
        for option in union:
            ok, converted = _convert(value, option)
            if ok:
                return True, converted
        return False, value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args), value
    if origin in (tuple, list) or hint in (tuple, list) or getattr(hint, "__name__", None) == "Size":
        return _convert_sequence(value, origin or hint, args)
    return True, value  # a hint this reader does not know: the consumer checks the value


def _convert_sequence(value: Any, kind: Any, args: tuple[Any, ...]) -> tuple[bool, Any]:
    if not isinstance(value, list):
        return False, value
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            return False, value
        items = list(zip(value, args))
    else:
        element = args[0] if args else (int if getattr(kind, "__name__", None) == "Size" else Any)
        items = [(v, element) for v in value]
    out = []
    for v, h in items:
        ok, converted = _convert(v, h)
        if not ok:
            return False, value
        out.append(converted)
    return True, tuple(out) if kind is tuple else out


def describe(hint: Any) -> str:
    """What `hint` asks for, in words ("an integer or a list of 2 integers")."""
    if hint is None or hint is type(None):
        return "null"
    simple = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", Any: "any value"}
    if hint in simple:
        return simple[hint]
    union = _union_args(hint)
    if union is not None:
        return " or ".join(dict.fromkeys(describe(a) for a in union))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (tuple, list) or hint in (tuple, list) or getattr(hint, "__name__", None) == "Size":
        if origin is tuple and args and args[-1] is not Ellipsis:
            elements, count = list(args), f"{len(args)} "
        else:
            elements = [args[0] if args else (int if getattr(hint, "__name__", None) == "Size" else Any)]
            count = ""
        if len(set(elements)) == 1 and elements[0] in _PLURAL:
            return f"a list of {count}{_PLURAL[elements[0]]}"
        return f"a list of {count}items, each {' / '.join(dict.fromkeys(describe(e) for e in elements))}"
    return f"a value of type {getattr(hint, '__name__', hint)}"


def type_hints(fn: Any) -> dict[str, Any]:
    """typing.get_type_hints(fn), or {} where the hints cannot be resolved."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references and the like: no hints, values go unchecked
        return {}


__all__ = ["MAX_DEPTH", "Doc", "as_doc", "describe", "parse_json", "read_json", "show", "type_hints"]
