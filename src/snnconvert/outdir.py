"""Output directories and atomic file writes shared by the CLI, the demo and benchmarks."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

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


def replace_atomic(tmp: str | Path, path: str | Path) -> None:
    """Move a finished temporary file into place with ordinary permissions (mkstemp makes 0600)."""
    os.chmod(tmp, _umask_mode())
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON to a temporary file beside `path`, then move it into place (never half-written)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        replace_atomic(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
