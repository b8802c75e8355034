"""Signed neurons that can take back spikes: SNM (Wang et al. 2022) and Fast-SNN's signed IF."""
from __future__ import annotations

from .base import SpikingNeuron, ThresholdLike
from .functional import Negative, Reset


class SNMNeuron(SpikingNeuron):
    """Signed Neuron with Memory: +theta spike at V >= theta; -theta spike at V <= -theta while the
    memory M = theta * n of net transmitted output is > 0; subtractive reset both ways. V(0) = 0."""

    kind = "snm"
    reset_mode = Reset.SOFT
    negative = Negative.AT_MINUS_THRESHOLD

    def __init__(self, threshold: ThresholdLike, v_init: float = 0.0) -> None:
        super().__init__(threshold, v_init)


class SignedIFNeuron(SpikingNeuron):
    """Fast-SNN signed IF neuron: +1 at V >= theta (V -= theta); else -1 when V < 0 and the net count
    so far is > 0 (V += theta). V(0) = theta / 2 turns the count into round() of the input, so at
    T = 2^b - 1 steps with evenly arriving input it equals the b-bit QANN level exactly."""

    kind = "signed_if"
    reset_mode = Reset.SOFT
    negative = Negative.BELOW_ZERO

    def __init__(self, threshold: ThresholdLike, v_init: float = 0.5) -> None:
        super().__init__(threshold, v_init)
