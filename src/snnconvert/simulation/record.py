"""Activity counters filled by the engine during a run: spikes per neuron layer and synaptic
operations per synaptic layer, per time step (summed over the batch)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


def fanout_map(layer: nn.Module, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """Number of synapses leaving each input element of `layer` (exact for any stride, padding,
    dilation or groups): the gradient of sum(layer_with_unit_weights(x)) with respect to x."""
    probe = _unit_copy(layer)
    x = torch.ones(1, *sample_shape, requires_grad=True)
    with torch.enable_grad():
        probe(x).sum().backward()
    return x.grad[0].detach()


def _unit_copy(layer: nn.Module) -> nn.Module:
    import copy

    probe = copy.deepcopy(layer).float().cpu()
    with torch.no_grad():
        probe.weight.fill_(1.0)
        if getattr(probe, "bias", None) is not None:
            probe.bias.zero_()
    return probe


@dataclass
class Recorder:
    """Per-step totals. spikes[name]: [t] spikes (|s| = 1 each) of a neuron layer; synops[name]: [t]
    accumulates triggered in a synaptic layer by its nonzero inputs (each triggers its fan-out);
    static_macs[name]: MACs per sample of a synaptic layer fed by the constant analog input."""

    spikes: dict[str, torch.Tensor] = field(default_factory=dict)
    synops: dict[str, torch.Tensor] = field(default_factory=dict)
    t0: int = 0  # the step at which the current chunk starts (set by the engine)
    neurons: dict[str, int] = field(default_factory=dict)
    static_macs: dict[str, float] = field(default_factory=dict)
    _fanout: dict[tuple, torch.Tensor] = field(default_factory=dict)

    def count_spikes(self, name: str, out: torch.Tensor) -> None:
        """out: [K, N, ...] transmitted values; a spike is any nonzero entry."""
        self.neurons[name] = out[0, 0].numel()
        self._add(self.spikes, name, (out != 0).flatten(1).sum(1).double().cpu())

    def count_synops(self, name: str, layer: nn.Module, x: torch.Tensor, steps: int) -> None:
        """x: [K*N, ...] dynamic input of a synaptic layer."""
        fan = self._fanout_for(name, layer, tuple(x.shape[1:]))
        events = (x != 0).view(steps, -1, *x.shape[1:]).sum(1)  # [K, ...]
        self._add(self.synops, name, (events.flatten(1).double() @ fan.flatten().double().to(x.device)).cpu())

    def _add(self, table: dict[str, torch.Tensor], name: str, per_step: torch.Tensor) -> None:
        """Add per-step totals [K] of this chunk at steps t0 .. t0+K-1 (summing over batches)."""
        end = self.t0 + len(per_step)
        cur = table.get(name, torch.zeros(0, dtype=torch.float64))
        if len(cur) < end:
            cur = torch.cat([cur, torch.zeros(end - len(cur), dtype=torch.float64)])
        cur[self.t0:end] += per_step
        table[name] = cur

    def count_static(self, name: str, layer: nn.Module, x: torch.Tensor) -> None:
        if name not in self.static_macs:
            self.static_macs[name] = float(self._fanout_for(name, layer, tuple(x.shape[1:])).sum())

    def _fanout_for(self, name: str, layer: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
        key = (name, shape)
        if key not in self._fanout:
            self._fanout[key] = fanout_map(layer, shape)
        return self._fanout[key]

    def totals(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(spikes per step, synops per step) per layer, each a 1-D tensor over time."""
        return dict(self.spikes), dict(self.synops)
