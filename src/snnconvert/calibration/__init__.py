"""Threshold calibration: granularities, streaming observers, threshold rules (a registry of types),
activation statistics, threshold balancing on the spiking network, and the calibrate() pass."""
from .calibrate import Calibration, calibrate
from .granularity import Granularity
from .observers import HistogramObserver, MaxObserver
from .rules import (RULES, BatchNormStatistics, CalibrationJob, ErrorMinimising, Fixed, LayerInputMax, LearnedClip, Max, Percentile, ThresholdRule,
                    resolve_rule, rule_from_config)
from .statistics import activation_statistics, floor_dead

__all__ = ["BatchNormStatistics", "Calibration", "CalibrationJob", "ErrorMinimising", "Fixed", "Granularity", "HistogramObserver", "LayerInputMax",
           "LearnedClip", "Max", "MaxObserver", "Percentile", "RULES", "ThresholdRule", "activation_statistics",
           "calibrate", "floor_dead", "resolve_rule", "rule_from_config"]
