"""How finely thresholds are shared: one per layer, per channel (dim 1) or per neuron."""
from __future__ import annotations

from enum import Enum

import torch

from ..errors import ConfigError


class Granularity(str, Enum):
    LAYER = "layer"
    CHANNEL = "channel"
    NEURON = "neuron"

    @classmethod
    def parse(cls, value: "str | Granularity") -> "Granularity":
        """The granularity named `value`; ConfigError listing the choices otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"granularity must be one of {[g.value for g in cls]}, got {value!r}") from None

    def group_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the threshold tensor, broadcastable against one sample (no batch dim)."""
        if self is Granularity.LAYER:
            return ()
        if self is Granularity.CHANNEL:
            if not sample_shape:
                return ()
            return (sample_shape[0],) + (1,) * (len(sample_shape) - 1)
        return tuple(sample_shape)

    def group_max(self, x: torch.Tensor) -> torch.Tensor:
        """Max of a batch x: [N, *sample] per threshold group, [G] (= to_groups(x).amax(1), without
        the copy that to_groups makes)."""
        if self is Granularity.LAYER or (self is Granularity.CHANNEL and x.dim() < 2):
            return x.amax().reshape(1)
        if self is Granularity.CHANNEL:
            return x.amax(dim=[0, *range(2, x.dim())])
        return x.amax(dim=0).reshape(-1)

    def to_groups(self, x: torch.Tensor) -> torch.Tensor:
        """Rearrange a batch x: [N, *sample] into [G, M] (one row per threshold group)."""
        if self is Granularity.LAYER:
            return x.reshape(1, -1)
        if self is Granularity.CHANNEL and x.dim() >= 2:
            return x.transpose(0, 1).reshape(x.shape[1], -1)
        if self is Granularity.CHANNEL:
            return x.reshape(1, -1)
        return x.reshape(x.shape[0], -1).t()
