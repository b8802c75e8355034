"""Spiking neurons. Each is a module holding its own state; the equation lives in functional.py."""
from .base import SpikingNeuron
from .functional import Negative, Reset, neuron_step
from .integrate_fire import IFNeuron
from .signed import SignedIFNeuron, SNMNeuron

__all__ = ["IFNeuron", "Negative", "Reset", "SNMNeuron", "SignedIFNeuron", "SpikingNeuron", "neuron_step"]
