"""Accuracy-versus-time-steps plot (needs matplotlib: pip install 'snnconvert[plot]')."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..files import atomic_write


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'snnconvert[plot]'") from None
    return plt


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
    return path


def plot_layer_errors(steps: list[int], errors: dict[str, list[float]], path: str | Path,
                      title: str = "per-layer relative error against the ANN") -> Path:
    """One line per neuron layer: ||m_l(t) - a_l|| / ||a_l|| over t (log-log); atomic PNG write."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    for i, (name, err) in enumerate(errors.items()):
        ax.plot(steps, err, marker="o", markersize=3, color=cmap(i / max(1, len(errors) - 1)), label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("relative error of the mean output")
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_vs_T(rows: dict[str, list[float]], path: str | Path, ann: dict[str, float] | None = None,
                       title: str = "SNN accuracy vs time steps") -> Path:
    """One line per method over t = 1..T (log-scale x), ANN accuracies as dashed lines; atomic PNG write."""
    plt = _pyplot()
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
    return _save(fig, path)
