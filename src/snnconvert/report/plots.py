"""Plots of results (need matplotlib: pip install 'snnconvert[plot]'): accuracy versus time steps,
per-layer errors, per-layer firing rate versus time step. Every file is written atomically (PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import atomic_write
from ..simulation import SimulationResult
from .summary import check_result, recorded


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'snnconvert[plot]'") from None
    return plt


def _legend_label(name: str) -> str:
    """`name` as a legend entry (matplotlib leaves out labels that start with '_', as node names of
    nn.Sequential models do)."""
    return " " + name if name.startswith("_") else name


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
    return path


def _finish(fig: Any, ax: Any, ylabel: str, title: str, path: str | Path) -> Path:
    """Labels, grid and a two-column legend of a per-layer plot over time steps; atomic PNG write."""
    ax.set_xlabel("time step t")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def plot_layer_errors(steps: list[int], errors: dict[str, list[float]], path: str | Path,
                      title: str = "per-layer relative error against the ANN") -> Path:
    """One line per neuron layer: ||m_l(t) - a_l|| / ||a_l|| over t (log-log); atomic PNG write."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    for i, (name, err) in enumerate(errors.items()):
        ax.plot(steps, err, marker="o", markersize=3, color=cmap(i / max(1, len(errors) - 1)), label=_legend_label(name))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    return _finish(fig, ax, "relative error of the mean output", title, path)


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


def plot_firing_rates(result: SimulationResult, path: str | Path,
                      title: str = "firing rate per neuron layer") -> Path:
    """One line per neuron layer: spikes per neuron at step t (not cumulative) over t = 1..T, so a
    layer that starts late or saturates shows; atomic PNG write. ConfigError for an empty result or
    one without recorded activity (simulate(record=False)); OutputError when `path` cannot be written."""
    check_result(result)
    if not recorded(result):
        raise ConfigError("the simulation result has no per-layer activity to plot: simulate(..., record=True)")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    steps = range(1, result.T + 1)
    for i, la in enumerate(result.layers):
        rates = [s / max(1, la.neurons * result.samples) for s in la.spikes_per_step]
        ax.plot(steps, rates, marker="o" if result.T <= 32 else None, markersize=3,
                color=cmap(i / max(1, len(result.layers) - 1)), label=_legend_label(la.name))
    if result.T > 1:
        ax.set_xscale("log", base=2)
    return _finish(fig, ax, "spikes per neuron at step t", title, path)


def plot_evaluation(result: SimulationResult, directory: str | Path, label: str | None = None,
                    ann_accuracy: float | None = None) -> dict[str, Path]:
    """The plots of one evaluation in `directory` (created if needed): `accuracy_vs_T.png` and, when
    activity was recorded, `firing_rates.png`; returns {"accuracy": path[, "firing_rates": path]}.
    `label` names the line (default: the method's name); `ann_accuracy` replaces the result's own."""
    check_result(result)
    directory = Path(directory)
    label = label or str(result.method.get("name") or "SNN")
    ann = result.ann_accuracy if ann_accuracy is None else ann_accuracy
    out = {"accuracy": plot_accuracy_vs_T({label: result.accuracy}, directory / "accuracy_vs_T.png",
                                          ann=None if ann is None else {label: ann})}
    if recorded(result):
        out["firing_rates"] = plot_firing_rates(result, directory / "firing_rates.png")
    return out
