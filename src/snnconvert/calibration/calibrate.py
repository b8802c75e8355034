"""One pass (two for percentiles) over calibration data -> a threshold for every activation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..batches import iter_batches
from ..errors import CalibrationError, ConfigError
from .granularity import Granularity
from .observers import HistogramObserver, MaxObserver, default_bins
from .rules import Fixed, LearnedClip, Max, Percentile, ThresholdRule

if TYPE_CHECKING:
    from ..conversion.graph import Program


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


def run_checked(program: "Program", x: torch.Tensor, capture: Any = (), what: str = "calibration data"):
    """Run the ANN program, turning shape errors deep inside torch into a CalibrationError."""
    try:
        return program.run(x, capture)
    except (RuntimeError, IndexError, TypeError) as e:
        raise CalibrationError(
            f"{what} of shape {tuple(x.shape)} does not fit the model ({str(e).splitlines()[0]}); "
            "inputs must be batched as [N, *input_shape]") from e


def _floor_dead(thr: torch.Tensor, name: str) -> torch.Tensor:
    """Neurons never active in calibration get the layer's largest threshold (they rarely fire)."""
    top = thr.max()
    if top <= 0:
        return torch.ones_like(thr)  # dead layer: any positive threshold; its input never exceeded 0
    return torch.where(thr > 0, thr, top)


def activation_statistics(program: "Program", data: Any, rule: ThresholdRule, granularity: Granularity,
                          batch_size: int = 256) -> tuple[dict[str, torch.Tensor], int]:
    """Max or percentile of every activation node's output a_l, per threshold group."""
    names = [n.name for n in program.activation_nodes()]
    maxes = {k: MaxObserver(granularity) for k in names}
    samples = 0
    with torch.no_grad():
        for x, _ in iter_batches(data, batch_size, "calibration data"):
            _, cap = run_checked(program, x, names)
            for k in names:
                maxes[k].update(cap[k], k)
            samples += len(x)
        stats = {k: maxes[k].compute() for k in names}
        if isinstance(rule, Percentile):
            hists = {k: HistogramObserver(granularity, stats[k], default_bins(stats[k].numel())) for k in names}
            for x, _ in iter_batches(data, batch_size, "calibration data"):
                _, cap = run_checked(program, x, names)
                for k in names:
                    hists[k].update(cap[k])
            stats = {k: hists[k].percentile(rule.q) for k in names}
    return stats, samples


def calibrate(program: "Program", data: Any, rule: ThresholdRule = Max(), granularity: str | Granularity = "layer",
              scale: float = 1.0, batch_size: int = 256) -> Calibration:
    """Thresholds theta_l = scale * statistic(a_l) for every activation of `program` (the traced ANN).

    Memory does not grow with the number of calibration samples: only maxima (and, for percentiles,
    fixed-size histograms) are kept. LayerInputMax needs the spiking network: see convert().
    """
    try:
        gran = Granularity(granularity)
    except ValueError:
        raise ConfigError(f"granularity must be one of {[g.value for g in Granularity]}, got {granularity!r}") from None
    if not scale > 0:
        raise ConfigError(f"scale must be > 0, got {scale}")
    acts = program.activation_nodes()
    if not acts:
        raise CalibrationError("the model has no ReLU activation to convert into spiking neurons")
    samples = 0
    if isinstance(rule, Fixed):
        thresholds = {n.name: torch.tensor(rule.value) for n in acts}
    elif isinstance(rule, LearnedClip):
        thresholds = {}
        for n in acts:
            alpha = getattr(program.layers[n.target], "alpha", None)
            if alpha is None:
                raise CalibrationError(
                    f"activation '{n.name}' is a plain ReLU: the learned-clip rule needs a quantized ANN "
                    "(snnconvert.quantize(model, bits)) whose activations are QuantReLU")
            thresholds[n.name] = alpha.detach().clone().float().abs().clamp_min(1e-4)
    elif isinstance(rule, (Max, Percentile)):
        stats, samples = activation_statistics(program, data, rule, gran, batch_size)
        thresholds = {k: _floor_dead(v, k) for k, v in stats.items()}
    else:
        raise ConfigError(f"rule {rule!r} is not computed by calibrate(); convert() handles it")
    thresholds = {k: v * scale for k, v in thresholds.items()}
    return Calibration(thresholds, rule.describe(), gran.value, float(scale), samples)
