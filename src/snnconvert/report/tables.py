"""Plain-text tables for the terminal."""
from __future__ import annotations

from typing import Sequence


def powers_of_two(T: int) -> list[int]:
    """1, 2, 4, ... up to T (and T itself if it is not a power of two)."""
    ts, t = [], 1
    while t <= T:
        ts.append(t)
        t *= 2
    if ts[-1] != T:
        ts.append(T)
    return ts


def accuracy_table(rows: dict[str, list[float]], steps: Sequence[int], ann: dict[str, float] | None = None) -> str:
    """rows: label -> accuracy after t steps (index t-1). Accuracies shown in percent."""
    ann = ann or {}
    label_w = max([len("method")] + [len(k) for k in rows])
    head = f"{'method':<{label_w}} | {'ANN':>6} | " + " ".join(f"{('T=' + str(t)):>7}" for t in steps)
    lines = [head, "-" * len(head)]
    for label, acc in rows.items():
        a = ann.get(label)
        cells = " ".join(f"{100 * acc[t - 1]:7.2f}" if t <= len(acc) else f"{'-':>7}" for t in steps)
        lines.append(f"{label:<{label_w}} | {('%6.2f' % (100 * a)) if a is not None else '     -'} | {cells}")
    return "\n".join(lines)
