"""Conversion of ReLU networks into spiking ones: trace (graph/), calibrate (calibration/), replace
activations by neurons of the chosen method, return the engine's SpikingModel (simulation/)."""
from .convert import build_spiking, convert

__all__ = ["build_spiking", "convert"]
