"""Input encodings: how the analog input becomes the first layer's input at each step."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Direct:
    """Constant-current ("direct") encoding: the analog input at every step.

    Static: the layers before the first neuron are computed once per sample, not once per step."""

    static: bool = True

    def encode(self, x: torch.Tensor, t0: int, steps: int, generator: torch.Generator | None) -> torch.Tensor:
        return x


@dataclass(frozen=True)
class Poisson:
    """Rate coding: at each step s = sign(x) * Bernoulli(|x| / m) * m with m = max |x| per sample,
    so E[s] = x exactly. `seed` makes runs repeatable."""

    seed: int = 0
    static: bool = False

    def encode(self, x: torch.Tensor, t0: int, steps: int, generator: torch.Generator | None) -> torch.Tensor:
        m = x.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        p = (x.abs() / m).expand(steps, *x.shape)
        s = torch.bernoulli(p, generator=generator)
        return s * torch.sign(x) * m


Encoder = Direct | Poisson
