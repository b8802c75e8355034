"""Streaming statistics of activations with memory independent of the number of samples.

MaxObserver keeps one running maximum per group. HistogramObserver (second pass, once the maxima
are known) keeps a fixed-bin histogram of the positive values per group in [0, max] and returns
percentiles with an error of at most max / bins (linear interpolation inside the bin).
"""
from __future__ import annotations

import torch

from ..errors import CalibrationError
from .granularity import Granularity


class MaxObserver:
    """Running max per threshold group over every value seen."""

    def __init__(self, granularity: Granularity) -> None:
        self.granularity = granularity
        self.max: torch.Tensor | None = None
        self.sample_shape: tuple[int, ...] | None = None
        self.count = 0

    def update(self, x: torch.Tensor, name: str) -> None:
        """Fold a batch x [N, *sample] into the maxima. NaN and +inf propagate into the maximum,
        so they are caught there (one pass over x, not two)."""
        x = x.detach().float()
        if self.sample_shape is None:
            self.sample_shape = tuple(x.shape[1:])
        m = self.granularity.group_max(x)
        if not torch.isfinite(m).all():
            raise CalibrationError(f"activation '{name}' contains NaN or infinite values during calibration; "
                                   "check the model weights and the calibration inputs")
        self.max = m if self.max is None else torch.maximum(self.max, m)
        self.count += x.shape[0]

    def compute(self) -> torch.Tensor:
        assert self.max is not None and self.sample_shape is not None
        return self.max.reshape(self.granularity.group_shape(self.sample_shape))


class HistogramObserver:
    """Histogram of positive values per group over [0, upper]; percentiles from cumulative counts."""

    def __init__(self, granularity: Granularity, upper: torch.Tensor, bins: int) -> None:
        self.granularity = granularity
        self.upper = upper.reshape(-1).float().clamp_min(1e-12)  # [G]
        self.bins = bins
        self.counts = torch.zeros(self.upper.numel(), bins, dtype=torch.int64)
        self.shape = tuple(upper.shape)

    def update(self, x: torch.Tensor) -> None:
        g = self.granularity.to_groups(x.detach().float())  # [G, M]
        pos = g > 0
        idx = (g / self.upper[:, None] * self.bins).long().clamp_(0, self.bins - 1)
        idx = idx + torch.arange(g.shape[0])[:, None] * self.bins
        self.counts += torch.bincount(idx[pos], minlength=self.counts.numel()).view_as(self.counts)

    def percentile(self, q: float) -> torch.Tensor:
        """q-th percentile (0..100) of the positive values per group; 0 where a group had none."""
        total = self.counts.sum(dim=1)
        cum = self.counts.cumsum(dim=1).double()
        rank = (q / 100.0) * total.double()
        b = torch.searchsorted(cum, rank[:, None]).squeeze(1).clamp(max=self.bins - 1)
        before = torch.where(b > 0, cum.gather(1, (b - 1).clamp(min=0)[:, None]).squeeze(1), torch.zeros_like(rank))
        in_bin = self.counts.gather(1, b[:, None]).squeeze(1).double().clamp(min=1)
        frac = ((rank - before) / in_bin).clamp(0, 1)
        width = self.upper.double() / self.bins
        value = (b.double() + frac) * width
        value = torch.where(total > 0, value, torch.zeros_like(value))
        return value.float().reshape(self.shape)


def default_bins(groups: int) -> int:
    """Finer bins for few groups, coarser for many, keeping the table near 16M counters at most."""
    return int(max(64, min(4096, (1 << 24) // max(groups, 1))))
