"""Integrate-and-fire neurons: hard reset (baseline) and soft reset (RMP-SNN)."""
from __future__ import annotations

from ..errors import ConfigError
from .base import SpikingNeuron, ThresholdLike
from .functional import Negative, Reset


class IFNeuron(SpikingNeuron):
    """IF neuron: V <- V + z; spike when V >= theta; then V <- 0 (hard) or V <- V - theta (soft).

    Soft reset is RMP-SNN's residual-membrane-potential neuron: for constant input z over t steps
    the count is floor((t z + v_init theta) / theta) (capped at t); hard reset loses the residue.
    """

    negative = Negative.NONE

    def __init__(self, threshold: ThresholdLike, reset: str | Reset = Reset.HARD, v_init: float = 0.0) -> None:
        super().__init__(threshold, v_init)
        try:
            self.reset_mode = Reset(reset)
        except ValueError:
            raise ConfigError(f"reset must be 'hard' or 'soft', got {reset!r}") from None

    @property  # type: ignore[override]
    def kind(self) -> str:
        return "if_hard" if self.reset_mode is Reset.HARD else "if_soft"

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reset={self.reset_mode.value}"
