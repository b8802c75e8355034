"""snnconvert: convert trained ReLU networks into spiking neural networks.

Pipeline: ANN -> (quantize, train) -> calibrate -> convert -> simulate -> report.
Layers, bottom up (ARCHITECTURE.md): graph (the IR) -> neurons -> simulation -> calibration ->
methods -> conversion -> finetune; beside them io (and interop: NIR), data, models, training, quantization, report;
cli and demo on top.
"""
from .calibration import Calibration, Fixed, Granularity, LayerInputMax, LearnedClip, Max, Percentile, calibrate
from .conversion import convert
from .diagnosis import Diagnosis, diagnose
from .errors import (CalibrationError, CheckpointError, ConfigError, DataError, EmptyDataError, ExportError, ModelError,
                     SnnConvertError, UnsupportedOperationError)
from .finetune import finetune_layerwise
from .graph import Program, trace
from .interop import export_nir, import_nir
from .io import load, save
from .methods import METHODS, PRESETS, Method, resolve_method
from .neurons import NEURONS, IFNeuron, SignedIFNeuron, SNMNeuron
from .quantization import quantize
from .simulation import (Direct, ExitOnMargin, ExitWhenStable, Poisson, SimulationResult, SpikingModel, fit_exit_rule,
                         simulate)

__version__ = "0.1.0"

__all__ = [
    "Calibration", "CalibrationError", "CheckpointError", "ConfigError", "DataError", "Diagnosis", "Direct", "EmptyDataError",
    "ExportError",
    "ExitOnMargin", "ExitWhenStable", "Fixed", "Granularity", "IFNeuron", "LayerInputMax", "LearnedClip", "METHODS", "Max", "Method",
    "ModelError", "NEURONS", "PRESETS", "Percentile", "Poisson", "Program", "SNMNeuron", "SignedIFNeuron",
    "SimulationResult", "SnnConvertError", "SpikingModel", "UnsupportedOperationError", "calibrate", "convert", "diagnose",
    "export_nir", "finetune_layerwise", "fit_exit_rule", "import_nir", "load", "quantize", "resolve_method", "save", "simulate", "trace",
]
