"""Threshold search for a target number of time steps (Li et al., ICML 2021, "A Free Lunch From ANN").

A soft-reset IF neuron with constant input a >= 0, threshold theta and V(0) = v0 * theta emits
floor(a T / theta + v0) spikes in T steps (at most T), so its mean output is the clipped, T-level
quantised value
    q(a; theta, T) = theta / T * clamp(floor(a T / theta + v0), 0, T).
The threshold of each group (layer or channel) minimises the expected squared conversion error
E[(a - q(a; theta, T))^2] over the calibration activations, searched over theta = max * k / K,
k = 1..K, from a fixed-bin histogram of the positive activations (zeros have no error), so memory
does not grow with the number of samples.
"""
from __future__ import annotations

import torch

from .observers import HistogramObserver

CANDIDATES = 200


def quantised_rate(a: torch.Tensor, theta: torch.Tensor, steps: int, v0: float) -> torch.Tensor:
    """q(a; theta, T): the mean output over T steps of a soft-reset IF neuron with constant input a."""
    return theta / steps * torch.clamp(torch.floor(a * steps / theta + v0), 0, steps)


def conversion_error(values: torch.Tensor, counts: torch.Tensor, theta: torch.Tensor, steps: int,
                     v0: float) -> torch.Tensor:
    """Sum of counts * (v - q(v; theta))^2: values, counts [G, B]; theta [G, K] -> [G, K]."""
    q = quantised_rate(values[:, None, :], theta[:, :, None], steps, v0)
    return (counts[:, None, :] * (values[:, None, :] - q) ** 2).sum(-1)


def search_thresholds(hist: HistogramObserver, steps: int, v0: float, candidates: int = CANDIDATES) -> torch.Tensor:
    """The error-minimising threshold of every group of a histogram (shape of hist.upper's source);
    a group without positive values keeps its upper bound (floor_dead treats zeros)."""
    upper = hist.upper.double()  # [G]
    width = upper / hist.bins
    centres = (torch.arange(hist.bins, dtype=torch.float64)[None] + 0.5) * width[:, None]  # [G, B]
    counts = hist.counts.double()
    frac = torch.arange(1, candidates + 1, dtype=torch.float64) / candidates  # [K]
    best = torch.empty_like(upper)
    rows = max(1, (1 << 23) // (hist.bins * candidates))  # groups per chunk: bounded temporaries
    for i in range(0, len(upper), rows):
        sl = slice(i, i + rows)
        theta = upper[sl, None] * frac[None]
        err = conversion_error(centres[sl], counts[sl], theta, steps, v0)
        best[sl] = theta.gather(1, err.argmin(1, keepdim=True)).squeeze(1)
    best = torch.where(counts.sum(1) > 0, best, upper)
    return best.float().reshape(hist.shape)
