"""Statistics of the ANN's activations over calibration data, and the floor for dead neurons.

One pass computes the maximum of every activation a_l per threshold group; percentiles take a
second pass over fixed-bin histograms in [0, max]. Memory does not grow with the number of samples.
"""
from __future__ import annotations

from typing import Any

import torch

from ..batches import iter_batches
from ..errors import CalibrationError
from ..graph import Program
from .granularity import Granularity
from .observers import HistogramObserver, MaxObserver, default_bins


def run_checked(program: Program, x: torch.Tensor, capture: Any = (), what: str = "calibration data"):
    """Run the ANN program, turning shape errors deep inside torch into a CalibrationError."""
    try:
        return program.run(x, capture)
    except (RuntimeError, IndexError, TypeError) as e:
        raise CalibrationError(
            f"{what} of shape {tuple(x.shape)} does not fit the model ({str(e).splitlines()[0]}); "
            "inputs must be batched as [N, *input_shape]") from e


def floor_dead(thr: torch.Tensor) -> torch.Tensor:
    """Neurons never active in calibration (statistic <= 0) get the layer's largest threshold, so they
    rarely fire; a layer never active at all gets 1 (its input never exceeded 0)."""
    top = thr.max()
    if top <= 0:
        return torch.ones_like(thr)
    return torch.where(thr > 0, thr, top)


def activation_statistics(program: Program, data: Any, granularity: Granularity, percentile: float | None = None,
                          batch_size: int = 256) -> tuple[dict[str, torch.Tensor], int]:
    """Max (or, with `percentile` q, the q-th percentile of the positive values) of every activation
    node's output a_l per threshold group; returns ({node name: statistic}, samples seen)."""
    names = [n.name for n in program.activation_nodes()]
    maxes = {k: MaxObserver(granularity) for k in names}
    samples = 0
    with torch.no_grad():
        for x, _ in iter_batches(data, batch_size, "calibration data"):
            _, cap = run_checked(program, x, names)
            for k in names:
                maxes[k].update(cap[k], k)
            samples += len(x)
        stats = {k: maxes[k].compute() for k in names}
        if percentile is not None:
            hists = {k: HistogramObserver(granularity, stats[k], default_bins(stats[k].numel())) for k in names}
            for x, _ in iter_batches(data, batch_size, "calibration data"):
                _, cap = run_checked(program, x, names)
                for k in names:
                    hists[k].update(cap[k])
            stats = {k: hists[k].percentile(percentile) for k in names}
    return stats, samples
