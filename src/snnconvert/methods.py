"""Conversion methods as data: a preset names a neuron, a threshold rule, a granularity, a scale and
v_init. Adding a method adds a preset here, nothing else. Overrides replace single fields."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .calibration.granularity import Granularity
from .calibration.rules import LayerInputMax, LearnedClip, Max, Percentile, ThresholdRule, resolve_rule
from .errors import ConfigError
from .neurons import IFNeuron, SignedIFNeuron, SNMNeuron, SpikingNeuron

# Neuron kinds by name. "if" is the unsigned soft-reset IF neuron (Fast-SNN's comparison variant).
NEURONS: dict[str, str] = {
    "if_hard": "hard-reset IF (V <- 0 after a spike)",
    "if_soft": "soft-reset IF, RMP (V <- V - theta after a spike)",
    "if": "soft-reset IF, RMP (V <- V - theta after a spike)",
    "snm": "signed neuron with memory (negative spike at V <= -theta while net output > 0)",
    "signed_if": "Fast-SNN signed IF (negative spike at V < 0 while net count > 0)",
}


def make_neuron(kind: str, threshold: Any, v_init: float) -> SpikingNeuron:
    """Build a neuron of the named kind with the given threshold and initial potential (fraction)."""
    if kind == "if_hard":
        return IFNeuron(threshold, reset="hard", v_init=v_init)
    if kind in ("if_soft", "if"):
        return IFNeuron(threshold, reset="soft", v_init=v_init)
    if kind == "snm":
        return SNMNeuron(threshold, v_init=v_init)
    if kind == "signed_if":
        return SignedIFNeuron(threshold, v_init=v_init)
    raise ConfigError(f"unknown neuron {kind!r}; choose one of {sorted(NEURONS)}")


@dataclass(frozen=True)
class Method:
    """A conversion recipe. `rule` decides thresholds, `scale` multiplies them (RMP's alpha)."""

    name: str
    neuron: str
    rule: ThresholdRule
    granularity: Granularity = Granularity.LAYER
    scale: float = 1.0
    v_init: float = 0.0
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "neuron": self.neuron, "rule": self.rule.describe(),
                "granularity": self.granularity.value, "scale": self.scale, "v_init": self.v_init}


PRESETS: dict[str, Method] = {
    "baseline": Method("baseline", "if_hard", Max(), Granularity.LAYER, 1.0, 0.0,
                       "hard-reset IF, layer-wise max normalisation (Diehl 2015); percentile=99.9 gives Rueckauer 2017"),
    "rmp": Method("rmp", "if_soft", LayerInputMax(), Granularity.LAYER, 1.0, 0.0,
                  "RMP-SNN: soft-reset IF, thresholds from the layer input maximum, layer by layer, times scale"),
    "snm": Method("snm", "snm", Max(), Granularity.NEURON, 1.0, 0.0,
                  "SNM: signed neuron with memory, neuron-wise max normalisation"),
    "fastsnn": Method("fastsnn", "signed_if", LearnedClip(), Granularity.LAYER, 1.0, 0.5,
                      "Fast-SNN: signed IF, thresholds = the QANN's learned clip alphas, V(0) = theta/2, T = 2^b - 1"),
}

_OVERRIDES = ("neuron", "threshold", "percentile", "granularity", "scale", "v_init", "calibration_steps")


def resolve_method(method: str | Method, **overrides: Any) -> Method:
    """The preset named `method` (or a Method), with the given fields replaced."""
    if isinstance(method, Method):
        m = method
    else:
        key = str(method).lower().replace("-", "").replace("_", "")
        if key not in PRESETS:
            raise ConfigError(f"unknown method {method!r}; choose one of {sorted(PRESETS)}")
        m = PRESETS[key]
    unknown = set(overrides) - set(_OVERRIDES)
    if unknown:
        raise ConfigError(f"unknown override(s) {sorted(unknown)}; allowed: {list(_OVERRIDES)}")
    changes: dict[str, Any] = {}
    if overrides.get("neuron") is not None:
        if overrides["neuron"] not in NEURONS:
            raise ConfigError(f"unknown neuron {overrides['neuron']!r}; choose one of {sorted(NEURONS)}")
        changes["neuron"] = overrides["neuron"]
    if overrides.get("threshold") is not None:
        changes["rule"] = resolve_rule(overrides["threshold"], overrides.get("percentile"))
    elif overrides.get("percentile") is not None:
        changes["rule"] = Percentile(float(overrides["percentile"]))
    if overrides.get("calibration_steps") is not None:
        rule = changes.get("rule", m.rule)
        if not isinstance(rule, LayerInputMax):
            raise ConfigError("calibration_steps applies only to the layer_input_max rule (method 'rmp')")
        changes["rule"] = LayerInputMax(int(overrides["calibration_steps"]))
    if overrides.get("granularity") is not None:
        try:
            changes["granularity"] = Granularity(overrides["granularity"])
        except ValueError:
            raise ConfigError(f"granularity must be one of {[g.value for g in Granularity]}, "
                              f"got {overrides['granularity']!r}") from None
    if overrides.get("scale") is not None:
        if not float(overrides["scale"]) > 0:
            raise ConfigError(f"scale must be > 0, got {overrides['scale']}")
        changes["scale"] = float(overrides["scale"])
    if overrides.get("v_init") is not None:
        changes["v_init"] = float(overrides["v_init"])
    return replace(m, **changes) if changes else m


__all__ = ["Method", "NEURONS", "PRESETS", "LearnedClip", "make_neuron", "resolve_method"]
