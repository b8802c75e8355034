"""Finding a dataset's files under a root directory, with errors that say what was expected."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import DataError


def find_files(
    title: str,
    root: Path,
    subdirs: Sequence[str],
    layouts: Sequence[Sequence[Sequence[str]]],
    hint: str = "",
) -> tuple[list[Path], int]:
    """Locate one complete layout of `title`'s files under `root`.

    `subdirs` are tried in order ("" = root itself, then e.g. "cifar-10-batches-py").
    `layouts[k]` lists the required files, each as alternative names (e.g. raw or `.gz`).
    Returns (the chosen path of each required file, k). Raises DataError naming the
    directories searched and the exact files expected when no layout is complete.
    """
    if not root.exists():
        raise DataError(
            f"{title}: data directory {str(root)!r} does not exist; expected it (or one of its "
            f"subfolders {', '.join(repr(s) for s in subdirs if s)}) to hold {_describe(layouts)}.{hint}"
        )
    if not root.is_dir():
        raise DataError(f"{title}: {str(root)!r} is not a directory; pass the folder that holds {_describe(layouts)}.{hint}")
    partial: list[str] = []
    for sub in subdirs:
        d = root / sub if sub else root
        if not d.is_dir():
            continue
        for k, layout in enumerate(layouts):
            chosen: list[Path] = []
            missing: list[str] = []
            for alternatives in layout:
                hit = next((d / a for a in alternatives if (d / a).is_file()), None)
                if hit is None:
                    missing.append(" or ".join(alternatives))
                else:
                    chosen.append(hit)
            if not missing:
                return chosen, k
            if chosen:
                partial.append(f"{d} has {len(chosen)} of the files but lacks {', '.join(missing)}")
    detail = f" Incomplete: {'; '.join(partial)}." if partial else ""
    tried = [s for s in subdirs if s]
    also = f" (also tried its subfolders {', '.join(tried)})" if tried else ""
    raise DataError(
        f"{title}: files not found in {str(root)!r}{also}; expected {_describe(layouts)}.{detail}{hint}"
    )


def _alternatives(alts: Sequence[str]) -> str:
    if len(alts) == 2 and alts[1].startswith(alts[0]):
        return f"{alts[0]}({alts[1][len(alts[0]):]})"  # e.g. train-images-idx3-ubyte(.gz)
    return " or ".join(alts)


def _describe(layouts: Sequence[Sequence[Sequence[str]]]) -> str:
    parts = [", ".join(_alternatives(alts) for alts in layout) for layout in layouts]
    if len(parts) == 1:
        return parts[0]
    return " OR ".join(f"[{p}]" for p in parts)


def stat_key(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Cache key that changes when any file is replaced: (resolved path, size, mtime_ns)."""
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(out)
