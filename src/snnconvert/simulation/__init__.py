"""Running converted networks: the chunked engine, encodings, simulate() and its result."""
from .encoding import Direct, Poisson
from .engine import SpikingModel
from .pooling import SpikingMaxPool
from .result import LayerActivity, SimulationResult
from .simulate import simulate

__all__ = ["Direct", "LayerActivity", "Poisson", "SimulationResult", "SpikingMaxPool", "SpikingModel", "simulate"]
