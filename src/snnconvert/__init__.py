"""snnconvert: convert trained ReLU networks into spiking neural networks.

Pipeline: ANN -> (quantize, train) -> calibrate -> convert -> simulate -> report.
"""
from .calibration import Calibration, Fixed, Granularity, LayerInputMax, LearnedClip, Max, Percentile, calibrate
from .conversion import convert, trace
from .errors import (CalibrationError, CheckpointError, ConfigError, DataError, ModelError, SnnConvertError,
                     UnsupportedOperationError)
from .io import load, save
from .methods import PRESETS, Method, resolve_method
from .neurons import IFNeuron, SignedIFNeuron, SNMNeuron
from .simulation import Direct, ExitWhenStable, Poisson, SimulationResult, SpikingModel, simulate

__version__ = "0.1.0"

__all__ = [
    "Calibration", "CalibrationError", "CheckpointError", "ConfigError", "DataError", "Direct", "ExitWhenStable", "Fixed",
    "Granularity", "IFNeuron", "LayerInputMax", "LearnedClip", "Max", "Method", "ModelError", "PRESETS",
    "Percentile", "Poisson", "SNMNeuron", "SignedIFNeuron", "SimulationResult", "SnnConvertError",
    "SpikingModel", "UnsupportedOperationError", "calibrate", "convert", "load", "resolve_method", "save", "simulate", "trace",
]
