"""Running converted networks: the chunked engine, encodings, recording, early exit, simulate() and
its result (with merging across shards and ranks)."""
from .early_exit import ExitWhenStable
from .encoding import Direct, Poisson
from .engine import SpikingModel
from .result import LayerActivity, SimulationResult
from .simulate import simulate

__all__ = ["Direct", "ExitWhenStable", "LayerActivity", "Poisson", "SimulationResult", "SpikingModel", "simulate"]
