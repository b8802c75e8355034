"""Files the library writes: output directories and atomic writes (never a half-written file).

`atomic_write(path, write)`: `write(tmp)` fills a temporary file beside `path`; it is fsync'ed, given
ordinary permissions and moved onto `path` with os.replace, so readers see the old file or the new
one, never a part. On any error the temporary file is removed and `path` is left as it was.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError


def ensure_writable_dir(path: str | Path) -> Path:
    """Create `path` if needed and check a file can be written there, before any long work starts."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".write-test-")
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise ConfigError(f"output directory {str(p)!r} cannot be written: {e.strerror or e}") from None
    return p


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Write `path` atomically: `write(tmp_name)` fills a temp file, then fsync, chmod, os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write `data` as indented JSON to `path` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)

    return atomic_write(path, write)
