"""Threshold calibration: granularities, streaming observers, rules and the calibrate() pass."""
from .calibrate import Calibration, activation_statistics, calibrate
from .granularity import Granularity
from .observers import HistogramObserver, MaxObserver
from .rules import Fixed, LayerInputMax, LearnedClip, Max, Percentile, ThresholdRule, resolve_rule

__all__ = ["Calibration", "Fixed", "Granularity", "HistogramObserver", "LayerInputMax", "LearnedClip", "Max",
           "MaxObserver", "Percentile", "ThresholdRule", "activation_statistics", "calibrate", "resolve_rule"]
