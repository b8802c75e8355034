"""Files the library writes: output paths checked before the work, atomic writes (never a
half-written file), and directories whose files are replaced as one whole.

- `atomic_write(path, write)`: `write(tmp)` fills a temporary file beside `path`; it is fsync'ed, given
  ordinary permissions and moved onto `path` with os.replace, so readers see the old file or the new
  one, never a part. On any error the temporary file is removed and `path` is left as it was.
- `DirectoryWrite(d)`: several files of `d` replaced together (a reader sees the old set or the new
  set); readers call `finish_interrupted_write(d)` first. Protocol below.
- `check_output_file` / `check_output_dir`: refuse, before any long work, an output that is a
  directory where a file goes (or the reverse), that would overwrite an input, or that cannot be
  written. Every failure to write is an OutputError naming the path.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from glob import escape as glob_escape
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import OutputError

try:
    import fcntl
except ImportError:  # Windows: no flock; one writer per directory is then the user's to keep
    fcntl = None  # type: ignore[assignment]


def ensure_writable_dir(path: str | Path) -> Path:
    """Create `path` if needed and check a file can be written there, before any long work starts."""
    p = check_writable_dir(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"output directory {str(p)!r} cannot be written: {e.strerror or e}") from None
    return p


def check_writable_dir(path: str | Path) -> Path:
    """Check, creating nothing, that `path` is a directory where files can be written, or that it can
    be made: its nearest existing ancestor is a writable directory (a file is written there and removed).
    So a command refused later leaves no empty output directory behind."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"output directory {str(p)!r} is an existing file; give a directory")
    existing = next((q for q in (p, *p.parents) if q.exists()), Path("."))
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{str(existing)!r} is a file", str(existing))
        fd, tmp = tempfile.mkstemp(dir=existing, prefix=".write-test-", suffix=".tmp")
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise OutputError(f"output directory {str(p)!r} cannot be written: {e.strerror or e}") from None
    return p


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def check_output_file(path: str | Path, inputs: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """The output file `path`, checked before the work: not a directory, none of the input files
    `inputs`, its directory writable or creatable (created by the write)."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{flag} {str(p)!r} is a directory; give a file name such as {str(p / 'results.json')!r}")
    for i in map(Path, inputs):
        if _same(p, i):
            raise OutputError(f"{flag} {str(p)!r} would overwrite an input ({str(i)!r}); give another file name")
    check_writable_dir(p.parent)
    return p


def check_output_dir(path: str | Path, inputs: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """The output directory `path`, checked before the work: not an existing file, not one of the
    input directories `inputs` (its files would be replaced), writable or creatable (it is created
    by the first write, not here)."""
    p = Path(path)
    for i in map(Path, inputs):
        if i.exists() and _same(p, i):
            raise OutputError(f"{flag} {str(p)!r} is also an input of this command; write to another directory")
    return check_writable_dir(p)


def _seal(path: str | Path) -> None:
    """fsync a written file and give it ordinary permissions (mkstemp makes 0600)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    os.chmod(path, _umask_mode())


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Write `path` atomically: `write(tmp_name)` fills a temp file, then fsync, chmod, os.replace."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    except OSError as e:
        raise OutputError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
    os.close(fd)
    try:
        write(tmp)
        _seal(tmp)
        os.replace(tmp, path)
        _remove_stale_temporaries(path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
        raise
    return path


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files an earlier, killed atomic_write of `path` left beside it."""
    for p in path.parent.glob(f".{glob_escape(path.name)}.*.tmp{glob_escape(path.suffix)}"):
        p.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write `data` as indented JSON to `path` atomically."""
    return atomic_write(path, lambda tmp: _dump_json(tmp, data))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------
# A directory of files replaced as one whole (model.json + model.safetensors, snn.json + weights).
#
# Protocol (a redo journal): every new file is written beside its final name as ".NAME.pending" and
# fsync'ed; then the journal JOURNAL (listing the names) is written atomically: that is the commit
# point; then each pending file is renamed onto its name and the journal removed. Before the commit a
# reader sees the old files whole; after it, `finish_interrupted_write` (run by every reader and
# writer first) completes the renames, so the reader sees the new files whole. Pending and temporary
# files of a run killed before its commit are removed by the next one. An flock on the directory keeps
# one writer at a time per directory. (A reader racing the short rename phase of a live writer may
# see a mix, which the hash in the description file refuses; it never sees a mix after a kill.)
# ---------------------------------------------------------------------------------------------------
JOURNAL = ".snnconvert-commit.json"
PENDING = ".pending"


def _pending(directory: Path, name: str) -> Path:
    return directory / f".{name}{PENDING}"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _locked(directory: Path, exclusive: bool) -> Iterator[None]:
    """flock on the directory itself (blocking; no lock file is left behind); no lock where flock
    does not exist."""
    if fcntl is None:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _is_temporary(name: str) -> bool:
    """Names this module writes before a rename: ".X.pending" and atomic_write's ".X.<random>.tmp<suffix>"."""
    return name.startswith(".") and (name.endswith(PENDING) or ".tmp" in name) and name != JOURNAL


def _roll_forward(directory: Path) -> None:
    """Complete a committed write: rename each pending file the journal lists, then drop the journal."""
    journal = directory / JOURNAL
    try:
        names = json.loads(journal.read_text())["files"]
        if not isinstance(names, list) or not all(isinstance(n, str) and "/" not in n for n in names):
            raise ValueError("files must be a list of names")
    except (ValueError, KeyError, TypeError) as e:
        raise OutputError(f"{str(journal)!r} (the record of an interrupted write) is corrupt ({e}); "
                          f"remove it and the .pending files beside it, then write {str(directory)!r} again") from None
    for name in names:
        pending = _pending(directory, name)
        if pending.exists():
            os.replace(pending, directory / name)
    _fsync_dir(directory)
    journal.unlink()
    _fsync_dir(directory)


def finish_interrupted_write(directory: str | Path) -> None:
    """Bring `directory` to a whole state after a killed writer: finish a committed write, remove the
    pending and temporary files of an uncommitted one. Nothing happens while another writer works
    (it holds the lock), nor where there is nothing to do; a read-only directory is left as it is,
    unless it holds a committed write that only a writer can finish (OutputError)."""
    d = Path(directory)
    try:
        names = os.listdir(d)
    except OSError:
        return  # missing or unreadable: the caller's own check reports it
    if JOURNAL not in names and not any(_is_temporary(n) for n in names):
        return
    with _locked(d, exclusive=True):
        try:
            if (d / JOURNAL).exists():
                _roll_forward(d)
            for n in os.listdir(d):
                if _is_temporary(n):
                    (d / n).unlink(missing_ok=True)
        except OSError as e:
            if (d / JOURNAL).exists():
                raise OutputError(f"{str(d)!r} holds a write that was interrupted after it was committed, and it "
                                  f"cannot be finished here ({e.strerror or e}); run the command again where "
                                  "the directory is writable") from None
            # leftovers that cannot be removed (a read-only directory) are harmless: readers never open them


class DirectoryWrite:
    """`with DirectoryWrite(d) as w: w.write(name, fill); w.write_json(name, data)` replaces those files
    of `d` as one whole when the block ends without error (see the protocol above); on an error nothing
    of `d` changes. `write` returns where the new file is until then, for reading it back (e.g. to hash
    it). Files of `d` not written in the block stay as they are."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = ensure_writable_dir(directory)
        self._names: list[str] = []
        self._lock: Any = None

    def __enter__(self) -> "DirectoryWrite":
        finish_interrupted_write(self.directory)
        self._lock = _locked(self.directory, exclusive=True)
        self._lock.__enter__()
        return self

    def write(self, name: str, fill: Callable[[str], None]) -> Path:
        """`fill(tmp_name)` writes the new content of `name`; it is fsync'ed, and committed at the block's end."""
        if "/" in name or name.startswith(".") or name in self._names:
            raise ValueError(f"bad or repeated file name {name!r}")
        p = _pending(self.directory, name)
        self._names.append(name)
        _wrapped_write(p, fill)
        _seal(p)
        return p

    def write_json(self, name: str, data: Any) -> Path:
        return self.write(name, lambda tmp: _dump_json(tmp, data))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                write_json_atomic(self.directory / JOURNAL, {"files": self._names})
                _fsync_dir(self.directory)
                _roll_forward(self.directory)
            else:
                for name in self._names:
                    _pending(self.directory, name).unlink(missing_ok=True)
        finally:
            self._lock.__exit__(None, None, None)


def _dump_json(path: str, data: Any) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def _wrapped_write(path: Path, fill: Callable[[str], None]) -> None:
    """`fill(path)`; an OSError (full disk, permissions) removes the part written and becomes an
    OutputError naming the file."""
    try:
        fill(str(path))
    except OSError as e:
        path.unlink(missing_ok=True)
        raise OutputError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
