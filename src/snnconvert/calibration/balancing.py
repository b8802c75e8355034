"""RMP-SNN / Spike-Norm threshold balancing on the spiking network itself.

Neuron layers are taken in network order; layer l's threshold is the maximum, over calibration
images and `steps` time steps, of the per-step input z_l(t) its neurons receive while every layer
before it spikes at its final (already balanced and scaled) threshold:

    theta_l = scale * floor_dead(max_{x, t <= steps} z_l(t))
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..batches import iter_batches
from ..simulation import SpikingModel
from .granularity import Granularity
from .observers import MaxObserver
from .statistics import floor_dead


class _InputMaxProbe(nn.Module):
    """Stands in for a neuron while its threshold is measured: records max of its input, emits nothing."""

    def __init__(self, granularity: Granularity, name: str) -> None:
        super().__init__()
        self.observer = MaxObserver(granularity)
        self.name = name

    def reset(self) -> None:
        pass

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.observer.update(z.reshape(-1, *z.shape[2:]), self.name)
        return torch.zeros_like(z)


def balance_thresholds(snn: SpikingModel, data: Any, steps: int, granularity: Granularity, scale: float,
                       batch_size: int = 256, progress: bool = False) -> tuple[dict[str, torch.Tensor], int]:
    """Set every neuron's threshold of `snn` by layer-input-max balancing (in place); returns
    ({node name: threshold}, calibration samples)."""
    thresholds: dict[str, torch.Tensor] = {}
    samples = 0
    for node in tqdm(snn.program.activation_nodes(), desc="threshold balancing", disable=not progress):
        neuron = snn.program.layers[node.target]
        probe = _InputMaxProbe(granularity, node.name)
        snn.program.layers[node.target] = probe
        samples = 0
        with torch.no_grad():
            for x, _ in iter_batches(data, batch_size, "calibration data"):
                for _ in snn.run(x, steps, stop_after=node.name):
                    pass
                samples += len(x)
        thresholds[node.name] = floor_dead(probe.observer.compute()) * scale
        neuron.threshold = thresholds[node.name].clone()
        snn.program.layers[node.target] = neuron
    return thresholds, samples
