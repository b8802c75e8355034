"""Neuron kinds by name: the one table that presets, saved models and the CLI choose neurons from.

Each kind is a neuron class plus fixed constructor options (IF with hard or soft reset). A neuron's
`config()` names its kind (and a threshold cap, if any); `neuron_from_config(config, threshold)` rebuilds it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from ..schema import Doc, as_doc
from .base import SpikingNeuron, ThresholdLike
from .integrate_fire import IFNeuron
from .signed import SignedIFNeuron, SNMNeuron


@dataclass(frozen=True)
class NeuronKind:
    """A registered neuron: `build(threshold, v_init)` makes one."""

    name: str
    cls: type[SpikingNeuron]
    description: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, threshold: ThresholdLike, v_init: float) -> SpikingNeuron:
        return self.cls(threshold, v_init=v_init, **self.options)


NEURONS: Registry[NeuronKind] = Registry("neuron")


def register_neuron(name: str, cls: type[SpikingNeuron], description: str, aliases: tuple[str, ...] = (),
                    **options: Any) -> NeuronKind:
    """Add a neuron kind; `cls(threshold, v_init=..., **options)` must build it and report `kind == name`."""
    return NEURONS.add(name, NeuronKind(name, cls, description, options), aliases)


register_neuron("if_hard", IFNeuron, "hard-reset IF (V <- 0 after a spike)", reset="hard")
# "if" is Fast-SNN's unsigned comparison variant: the soft-reset IF neuron
register_neuron("if_soft", IFNeuron, "soft-reset IF, RMP (V <- V - theta after a spike)", aliases=("if",),
                reset="soft")
register_neuron("snm", SNMNeuron, "signed neuron with memory (negative spike at V <= -theta while net output > 0)")
register_neuron("signed_if", SignedIFNeuron, "Fast-SNN signed IF (negative spike at V < 0 while net count > 0)")


def build_neuron(kind: str, threshold: ThresholdLike, v_init: float) -> SpikingNeuron:
    """A neuron of the named kind (ConfigError naming the kinds if unknown)."""
    return NEURONS.get(kind).build(threshold, v_init)


def neuron_from_config(config: Mapping[str, Any] | Doc, threshold: ThresholdLike) -> SpikingNeuron:
    """Rebuild a neuron from `config()` output (or a schema.Doc of it, so that messages name its file and
    key path) and its threshold; CheckpointError naming the key that is malformed."""
    doc = as_doc(config, "bad neuron description")
    kind = doc["kind"]
    try:
        entry = NEURONS.get(kind.as_str())
    except ConfigError as e:
        raise kind.error(str(e)) from None
    v_init = doc["v_init"].as_number()
    cap = doc.get("threshold_cap")
    cap_value = None if cap is None else cap.as_number()
    try:
        neuron = entry.build(threshold, v_init)
        neuron.set_threshold_cap(cap_value)
        return neuron
    except (ConfigError, TypeError, ValueError, RuntimeError) as e:
        raise doc.error(f"cannot build a {entry.name!r} neuron: {e}") from None
