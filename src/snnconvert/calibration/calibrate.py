"""calibrate(): the traced ANN + calibration data -> a threshold for every activation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import CalibrationError, ConfigError
from ..graph import Program
from .granularity import Granularity
from .rules import CalibrationJob, Max, ThresholdRule


@dataclass(frozen=True)
class Calibration:
    """Thresholds per activation node (already scaled), and how they were obtained."""

    thresholds: dict[str, torch.Tensor]
    rule: str
    granularity: str
    scale: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "granularity": self.granularity, "scale": self.scale, "samples": self.samples,
            "thresholds": {k: (v.item() if v.numel() == 1 else {"shape": list(v.shape), "mean": v.mean().item(),
                                                                 "max": v.max().item()})
                           for k, v in self.thresholds.items()},
        }


def calibrate(program: Program, data: Any, rule: ThresholdRule = Max(), granularity: str | Granularity = "layer",
              scale: float = 1.0, batch_size: int = 256, *,
              build_spiking: Callable[[dict[str, torch.Tensor]], Any] | None = None,
              progress: bool = False) -> Calibration:
    """Thresholds theta_l = scale * statistic(a_l) for every activation of `program` (the traced ANN),
    the statistic chosen by `rule`. Rules measured on the spiking network (LayerInputMax) need
    `build_spiking(thresholds) -> SpikingModel` (convert() passes it).

    Memory does not grow with the number of calibration samples: only maxima (and, for percentiles,
    fixed-size histograms) are kept.
    """
    gran = Granularity.parse(granularity)
    if not scale > 0:
        raise ConfigError(f"scale must be > 0, got {scale}")
    if not isinstance(rule, ThresholdRule):
        raise ConfigError(f"rule must be a threshold rule such as Max() or Percentile(99.9), got {rule!r}")
    if not program.activation_nodes():
        raise CalibrationError("the model has no ReLU activation to convert into spiking neurons")
    job = CalibrationJob(program, data, gran, float(scale), batch_size, build_spiking, progress)
    thresholds, samples = rule.thresholds(job)
    return Calibration(thresholds, rule.describe(), gran.value, float(scale), samples)
