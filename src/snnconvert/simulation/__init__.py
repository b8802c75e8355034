"""Running converted networks: the chunked engine, encodings, recording, early exit, simulate() and
its result (with merging across shards and ranks)."""
from .early_exit import ExitOnMargin, ExitRule, ExitWhenStable
from .exit_fit import ExitFit, fit_exit_rule
from .encoding import Direct, Poisson
from .engine import SpikingModel
from .result import LayerActivity, SimulationResult
from .simulate import simulate

__all__ = ["Direct", "ExitFit", "ExitOnMargin", "ExitRule", "ExitWhenStable", "LayerActivity", "Poisson",
           "SimulationResult", "SpikingModel", "fit_exit_rule", "simulate"]
