"""Conversion methods as data: a preset names a neuron kind, a threshold rule, a granularity, a scale
and v_init. Adding a method is one `METHODS.add(...)` here; the CLI's choices are built from this
registry, the neuron registry (neurons.NEURONS) and the rule registry (calibration.RULES).
Overrides (OVERRIDES) replace single fields."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .calibration.granularity import Granularity
from .calibration.rules import (ErrorMinimising, LayerInputMax, LearnedClip, Max, Percentile, ThresholdRule,
                                resolve_rule, rule_from_config)
from .errors import ConfigError
from .neurons import NEURONS, SpikingNeuron, build_neuron
from .registry import Registry
from .schema import Doc, as_doc

# The fields of a preset a caller may override, in the order the CLI lists them.
OVERRIDES = ("neuron", "threshold", "percentile", "granularity", "scale", "v_init", "calibration_steps", "target_T",
             "potential", "weight_calibration")


@dataclass(frozen=True)
class Method:
    """A conversion recipe. `rule` decides thresholds, `scale` multiplies them (RMP's alpha).
    `target_T`: after conversion, calibrate the biases (and, with `potential`, the initial membrane
    potentials) layer by layer for runs of that many steps (calibration.layerwise); None: no
    post-conversion calibration. `weight_calibration` (needs target_T): first tune each layer's
    weights for that T (calibration.weights)."""

    name: str
    neuron: str
    rule: ThresholdRule
    granularity: Granularity = Granularity.LAYER
    scale: float = 1.0
    v_init: float = 0.0
    description: str = ""
    target_T: int | None = None
    potential: bool = True
    weight_calibration: bool = False

    def __post_init__(self) -> None:
        NEURONS.resolve(self.neuron)  # ConfigError naming the neuron kinds if unknown
        if self.weight_calibration and self.target_T is None:
            raise ConfigError("weight calibration tunes the weights for a target number of time steps: give target_T "
                              "too (or use method 'calibrated')")
        if self.target_T is not None and (isinstance(self.target_T, bool) or not isinstance(self.target_T, int)
                                          or self.target_T < 1):
            raise ConfigError(f"target_T (the time steps to calibrate for) must be an integer >= 1, got {self.target_T!r}")

    def make_neuron(self, threshold: Any) -> SpikingNeuron:
        """A neuron of this method's kind with the given threshold."""
        return build_neuron(self.neuron, threshold, self.v_init)

    def to_dict(self) -> dict[str, Any]:
        """How the model was converted, for reports (the rule as its description)."""
        out = {"name": self.name, "neuron": self.neuron, "rule": self.rule.describe(),
               "granularity": self.granularity.value, "scale": self.scale, "v_init": self.v_init}
        if self.target_T is not None:
            out.update(target_T=self.target_T, potential_calibration=self.potential)
            if self.weight_calibration:
                out.update(weight_calibration=True)
        return out

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this Method (method_from_config)."""
        return {"name": self.name, "neuron": self.neuron, "rule": self.rule.config(),
                "granularity": self.granularity.value, "scale": self.scale, "v_init": self.v_init,
                "description": self.description, "target_T": self.target_T, "potential": self.potential,
                "weight_calibration": self.weight_calibration}


def method_from_config(config: Mapping[str, Any] | Doc) -> Method:
    """Rebuild a Method from `Method.config()` (or a schema.Doc of it, so that messages name its file and
    key path); CheckpointError naming the malformed key and what it should be."""
    doc = as_doc(config, "bad method description")
    doc.check_keys(f.name for f in fields(Method))
    description, target_T, potential = doc.get("description"), doc.get("target_T"), doc.get("potential")
    weights = doc.get("weight_calibration")
    neuron = doc["neuron"]
    try:
        NEURONS.resolve(neuron.as_str())
    except ConfigError as e:
        raise neuron.error(str(e)) from None
    granularity = doc["granularity"]
    try:
        g = Granularity.parse(granularity.as_str())
    except ConfigError as e:
        raise granularity.error(str(e)) from None
    return Method(doc["name"].as_str(), neuron.as_str(), rule_from_config(doc["rule"]), g, doc["scale"].as_number(),
                  doc["v_init"].as_number(), "" if description is None else description.as_str(),
                  None if target_T is None else target_T.as_int(minimum=1),
                  True if potential is None else potential.as_bool(),
                  False if weights is None else weights.as_bool())


METHODS: Registry[Method] = Registry("method", sep="")


def register_method(method: Method) -> Method:
    return METHODS.add(method.name, method)


register_method(Method("baseline", "if_hard", Max(), Granularity.LAYER, 1.0, 0.0,
                       "hard-reset IF, layer-wise max normalisation (Diehl 2015); percentile=99.9 gives Rueckauer 2017"))
register_method(Method("rmp", "if_soft", LayerInputMax(), Granularity.LAYER, 1.0, 0.0,
                       "RMP-SNN: soft-reset IF, thresholds from the layer input maximum, layer by layer, times scale"))
register_method(Method("snm", "snm", Max(), Granularity.NEURON, 1.0, 0.0,
                       "SNM: signed neuron with memory, neuron-wise max normalisation"))
register_method(Method("calibrated", "if_soft", ErrorMinimising(16, 0.5), Granularity.CHANNEL, 1.0, 0.5,
                       "post-training calibration for a target T (beyond the papers): soft-reset IF, V(0) = theta/2, "
                       "channel-wise thresholds minimising the conversion error at target_T (Li et al. 2021), then "
                       "layer-wise bias and potential calibration; target_T=16 unless given", target_T=16))
register_method(Method("fastsnn", "signed_if", LearnedClip(), Granularity.LAYER, 1.0, 0.5,
                       "Fast-SNN: signed IF, thresholds = the QANN's learned clip alphas, V(0) = theta/2, T = 2^b - 1"))

PRESETS: dict[str, Method] = dict(METHODS.items())


def resolve_method(method: str | Method, **overrides: Any) -> Method:
    """The preset named `method` (or a Method), with the given fields replaced."""
    m = method if isinstance(method, Method) else METHODS.get(method)
    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise ConfigError(f"unknown override(s) {sorted(unknown)}; allowed: {list(OVERRIDES)}")
    changes: dict[str, Any] = {}
    if overrides.get("neuron") is not None:
        NEURONS.resolve(overrides["neuron"])
        changes["neuron"] = overrides["neuron"]
    if overrides.get("threshold") is not None:
        changes["rule"] = resolve_rule(overrides["threshold"], overrides.get("percentile"))
    elif overrides.get("percentile") is not None:
        changes["rule"] = Percentile(float(overrides["percentile"]))
    if overrides.get("calibration_steps") is not None:
        rule = changes.get("rule", m.rule)
        if "steps" not in {f.name for f in fields(rule)}:  # type: ignore[arg-type]
            raise ConfigError("calibration_steps applies only to rules measured over time steps, such as "
                              f"layer_input_max (method 'rmp'); this rule is '{rule.describe()}'")
        changes["rule"] = replace(rule, steps=int(overrides["calibration_steps"]))
    if overrides.get("granularity") is not None:
        changes["granularity"] = Granularity.parse(overrides["granularity"])
    if overrides.get("scale") is not None:
        if not float(overrides["scale"]) > 0:
            raise ConfigError(f"scale must be > 0, got {overrides['scale']}")
        changes["scale"] = float(overrides["scale"])
    if overrides.get("v_init") is not None:
        changes["v_init"] = float(overrides["v_init"])
    if overrides.get("target_T") is not None:
        t = overrides["target_T"]
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ConfigError(f"target_T (the time steps to calibrate for) must be an integer >= 1, got {t!r}")
        changes["target_T"] = t
    if overrides.get("potential") is not None:
        changes["potential"] = bool(overrides["potential"])
    if overrides.get("weight_calibration") is not None:
        changes["weight_calibration"] = bool(overrides["weight_calibration"])
    rule = changes.get("rule", m.rule)
    if isinstance(rule, ErrorMinimising):  # the search is made for the method's T and V(0)
        target = changes.get("target_T", m.target_T)
        changes["rule"] = replace(rule, steps=target if target is not None else rule.steps,
                                  v_init=changes.get("v_init", m.v_init))
    return replace(m, **changes) if changes else m


__all__ = ["METHODS", "Method", "OVERRIDES", "PRESETS", "LearnedClip", "method_from_config", "register_method",
           "resolve_method"]
