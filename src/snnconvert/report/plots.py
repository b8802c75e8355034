"""Accuracy-versus-time-steps plot (needs matplotlib: pip install 'snnconvert[plot]')."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..files import atomic_write


def plot_accuracy_vs_T(rows: dict[str, list[float]], path: str | Path, ann: dict[str, float] | None = None,
                       title: str = "SNN accuracy vs time steps") -> Path:
    """One line per method over t = 1..T (log-scale x), ANN accuracies as dashed lines; atomic PNG write."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'snnconvert[plot]'") from None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, acc in rows.items():
        ax.plot(range(1, len(acc) + 1), [100 * a for a in acc], label=label)
    for i, (label, a) in enumerate(sorted(set((v, v) for v in (ann or {}).values()))):
        ax.axhline(100 * a, color="grey", linestyle="--", linewidth=0.8, label="ANN" if i == 0 else None)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
    return path
