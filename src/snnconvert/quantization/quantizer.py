"""QuantReLU: Fast-SNN's b-bit uniform activation quantizer with a learnable clipping value.

    q = alpha * round(clamp(x / alpha, 0, 1) * L) / L,        L = 2^b - 1

Gradients (straight-through estimator for round, as in PACT / APoT and the Fast-SNN code):
    dq/dx     = 1 for 0 < x < alpha, 0 outside
    dq/dalpha = (q - x) / alpha for 0 < x < alpha, 1 for x > alpha, 0 for x < 0
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..graph import ActivationModule

MIN_BITS = 1
MAX_BITS = 16
ALPHA_MIN = 1e-4
"""Lower bound applied to alpha in forward, so a step that drives alpha to <= 0 cannot divide by zero."""


def check_bits(bits: int) -> int:
    """`bits` if it is an int in [MIN_BITS, MAX_BITS], else ConfigError."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ConfigError(f"bits must be an int in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"bits must be in [{MIN_BITS}, {MAX_BITS}] (e.g. 2, 3, 4 or 8), got {bits}")
    return bits


class QuantReLU(ActivationModule):
    """ReLU replaced by a b-bit uniform quantizer on [0, alpha]; alpha is learned.

    Output takes the L + 1 = 2^b values k * alpha / L, k = 0..L. Rounding uses torch.round
    (ties go to the even level); ties have measure zero for real-valued inputs.
    alpha is clamped to >= ALPHA_MIN (1e-4) in forward; the parameter itself is not changed.
    When converted, alpha becomes the spiking layer's threshold and T = L steps.
    """

    def __init__(self, bits: int, alpha: float = 6.0) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        alpha = float(alpha)
        if not math.isfinite(alpha) or alpha <= 0:
            raise ConfigError(f"alpha (the clipping value) must be finite and > 0, got {alpha!r}")
        self.alpha = nn.Parameter(torch.tensor(alpha))

    @property
    def levels(self) -> int:
        """L = 2^bits - 1, the number of non-zero output levels (= the SNN's time steps T)."""
        return 2**self.bits - 1

    def set_bits(self, bits: int) -> None:
        """Change the bit width in place (progressive training 32 -> 4 -> 3 -> 2); alpha is kept."""
        self.bits = check_bits(bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """q = alpha * u_q / L with u = clamp(x/alpha, 0, 1) * L and u_q = u + (round(u) - u).detach()."""
        alpha = self.alpha.clamp_min(ALPHA_MIN)
        levels = self.levels
        u = torch.clamp(x / alpha, 0.0, 1.0) * levels
        u_q = u + (torch.round(u) - u).detach()
        return alpha * u_q / levels

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={self.alpha.item():.4g}"
