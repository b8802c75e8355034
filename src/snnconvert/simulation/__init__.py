"""Running converted networks: the chunked engine, encodings, simulate() and its result."""
from .early_exit import ExitWhenStable
from .encoding import Direct, Poisson
from .engine import SpikingModel
from .pooling import SpikingMaxPool
from .result import LayerActivity, SimulationResult
from .simulate import simulate

__all__ = ["Direct", "ExitWhenStable", "LayerActivity", "Poisson", "SimulationResult", "SpikingMaxPool", "SpikingModel", "simulate"]
