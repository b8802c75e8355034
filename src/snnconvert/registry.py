"""Registry: names -> entries, one mechanism for every kind of named choice (neurons, threshold
rules, methods, models, datasets).

Names are matched after normalisation (case, '-' vs '_'); aliases point at an entry; an unknown
name raises ConfigError with the closest known name ("did you mean ...?") and the full list.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

E = TypeVar("E")


def normalise(name: str, sep: str = "_") -> str:
    """Lower case, surrounding spaces removed, '-' and '_' both turned into `sep`."""
    return name.strip().lower().replace("-", sep).replace("_", sep)


class Registry(Generic[E]):
    """An ordered table of named entries of one kind (`what`, used in error messages)."""

    def __init__(self, what: str, sep: str = "_") -> None:
        self.what = what
        self.sep = sep
        self._entries: dict[str, E] = {}
        self._aliases: dict[str, str] = {}

    def key(self, name: str) -> str:
        return normalise(name, self.sep)

    def add(self, name: str, entry: E, aliases: tuple[str, ...] = ()) -> E:
        """Register `entry` under `name` (and `aliases`); ConfigError if a name is taken."""
        for n in (name, *aliases):
            if self.key(n) in self._entries or self.key(n) in self._aliases:
                raise ConfigError(f"{self.what} {n!r} is already registered; pick another name")
        self._entries[self.key(name)] = entry
        for a in aliases:
            self._aliases[self.key(a)] = self.key(name)
        return entry

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[E], E]:
        """Decorator form of add()."""
        return lambda entry: self.add(name, entry, aliases)

    def resolve(self, name: str) -> str:
        """The canonical name of `name` (aliases followed); ConfigError naming the choices if unknown."""
        key = self.key(name) if isinstance(name, str) else None
        if key is not None:
            key = self._aliases.get(key, key)
            if key in self._entries:
                return key
        known = self.names(aliases=True)
        close = difflib.get_close_matches(self.key(str(name)), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown {self.what} {name!r}{hint}; known {self.what}s: {', '.join(known)}")

    def get(self, name: str) -> E:
        return self._entries[self.resolve(name)]

    def names(self, aliases: bool = False) -> list[str]:
        """Canonical names in registration order (then the aliases, when asked)."""
        return list(self._entries) + (list(self._aliases) if aliases else [])

    def items(self) -> Iterator[tuple[str, E]]:
        return iter(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._aliases.get(self.key(name), self.key(name)) in self._entries

    def __len__(self) -> int:
        return len(self._entries)
