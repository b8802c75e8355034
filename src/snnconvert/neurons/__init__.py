"""Spiking neurons and spike-gated max pooling. Each is a module holding its own state over time;
the neuron equation lives in functional.py, the kinds by name in registry.py."""
from .base import SpikingNeuron
from .functional import FusedStep, Negative, Reset, neuron_step
from .integrate_fire import IFNeuron
from .pooling import SpikingMaxPool
from .registry import NEURONS, NeuronKind, build_neuron, neuron_from_config, register_neuron
from .signed import SignedIFNeuron, SNMNeuron

__all__ = ["FusedStep", "IFNeuron", "NEURONS", "Negative", "NeuronKind", "Reset", "SNMNeuron", "SignedIFNeuron", "SpikingMaxPool",
           "SpikingNeuron", "build_neuron", "neuron_from_config", "neuron_step", "register_neuron"]
