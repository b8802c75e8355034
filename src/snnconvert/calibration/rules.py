"""Threshold rules: what statistic of the calibration data a layer's threshold comes from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..errors import ConfigError


@dataclass(frozen=True)
class Max:
    """theta = maximum of the ANN activation a_l over the calibration data (Diehl 2015; SNM per neuron)."""

    def describe(self) -> str:
        return "max"


@dataclass(frozen=True)
class Percentile:
    """theta = q-th percentile of the positive ANN activations (Rueckauer 2017), from a fixed-bin histogram."""

    q: float

    def __post_init__(self) -> None:
        if not (0.0 < self.q <= 100.0):
            raise ConfigError(f"percentile must be in (0, 100], got {self.q}")

    def describe(self) -> str:
        return f"percentile {self.q:g}"


@dataclass(frozen=True)
class LayerInputMax:
    """RMP-SNN threshold balancing (Spike-Norm style): layer by layer, with every earlier layer
    already converted and spiking, theta_l = maximum over images and `steps` time steps of the
    weighted input z_l(t) the layer's neurons receive (V_in^max)."""

    steps: int = 32

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"LayerInputMax needs steps >= 1, got {self.steps}")

    def describe(self) -> str:
        return f"layer input max over {self.steps} steps (layer by layer)"


@dataclass(frozen=True)
class LearnedClip:
    """theta = the learned clipping value alpha of each QuantReLU (Fast-SNN)."""

    def describe(self) -> str:
        return "learned clip alpha"


@dataclass(frozen=True)
class Fixed:
    """theta = a given value for every layer."""

    value: float

    def __post_init__(self) -> None:
        if not self.value > 0:
            raise ConfigError(f"a fixed threshold must be > 0, got {self.value}")

    def describe(self) -> str:
        return f"fixed {self.value:g}"


ThresholdRule = Union[Max, Percentile, LayerInputMax, LearnedClip, Fixed]
RULE_NAMES = {"max": Max, "percentile": Percentile, "layer_input_max": LayerInputMax,
              "learned": LearnedClip, "fixed": Fixed}


def resolve_rule(value: object, percentile: float | None = None) -> ThresholdRule:
    """A rule object, a rule name, or a number (fixed threshold)."""
    if isinstance(value, (Max, Percentile, LayerInputMax, LearnedClip, Fixed)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Fixed(float(value))
    if isinstance(value, str):
        key = value.lower().replace("-", "_")
        if key == "percentile":
            return Percentile(99.9 if percentile is None else percentile)
        if key in RULE_NAMES and key != "fixed":
            return RULE_NAMES[key]()
    raise ConfigError(f"unknown threshold rule {value!r}; use one of {sorted(RULE_NAMES)}, a number, "
                      "or a rule object (Max(), Percentile(99.9), LayerInputMax(steps), LearnedClip(), Fixed(v))")
