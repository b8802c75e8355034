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
    static_macs[name]: MACs per sample of a synaptic layer fed by the constant analog input.

    Cost: per chunk and tensor, one pass marks the nonzero entries (into a reused float buffer) and
    one sums them over the batch, giving events per step and input position [K, F]; an unsigned
    neuron's output needs only the sum (count_spikes). Spikes per step are the events' sum, synops
    their product with the fan-out map. A neuron's output that a conv/linear layer reads directly is
    counted once for both. Totals stay on the run's device until totals(). With `steps` (the run's T)
    each table is allocated once at its full length; without, it grows as chunks arrive.
    """

    spikes: dict[str, torch.Tensor] = field(default_factory=dict)
    synops: dict[str, torch.Tensor] = field(default_factory=dict)
    neurons: dict[str, int] = field(default_factory=dict)
    static_macs: dict[str, float] = field(default_factory=dict)
    steps: int | None = None
    _t0: int = 0
    _fanout: dict[tuple, torch.Tensor] = field(default_factory=dict)
    _buffer: torch.Tensor | None = None  # flat float scratch for the nonzero marks
    _last: tuple[torch.Tensor, int, torch.Tensor] | None = None  # (neuron output, K, its events)

    @property
    def t0(self) -> int:
        """The step at which the current chunk starts (set by the engine)."""
        return self._t0

    @t0.setter
    def t0(self, value: int) -> None:
        self._t0 = value
        self._last = None

    def events(self, x: torch.Tensor, steps: int, batch: int) -> torch.Tensor:
        """Nonzero entries of x (steps * batch samples, time first) per step and position, summed
        over the batch: [steps, F] (float, exact integers)."""
        last = self._last
        if last is not None and last[1] == steps and last[0].data_ptr() == x.data_ptr() \
                and last[0].numel() == x.numel() and last[0].dtype == x.dtype:
            return last[2]
        n = x.numel()
        if self._buffer is None or self._buffer.numel() < n or self._buffer.device != x.device:
            self._buffer = torch.empty(n, dtype=torch.float32, device=x.device)
        marks = torch.ne(x.reshape(-1), 0, out=self._buffer[:n])
        return marks.view(steps, batch, -1).sum(1)

    def count_spikes(self, name: str, out: torch.Tensor, threshold: torch.Tensor | None = None) -> None:
        """out: [K, N, ...] transmitted values; a spike is any nonzero entry. With `threshold`, the
        neuron's (out is 0 or theta, never negative: unsigned neurons), the events are counted in one
        pass as round(sum over the batch of out / theta): the sum of k spikes is k * theta up to float
        rounding far below theta / 2 for any batch below 2^16, so the count is exact."""
        K, N = out.shape[0], out.shape[1]
        self.neurons[name] = out[0, 0].numel()
        if threshold is not None and N < 2**16:
            thr = torch.broadcast_to(threshold.to(out.dtype), out.shape[2:]).reshape(-1)
            ev = out.reshape(K, N, -1).sum(1).div_(thr).round_()
        else:
            ev = self.events(out, K, N)
        self._last = (out, K, ev)
        self._add(self.spikes, name, ev.sum(1, dtype=torch.float64))

    def count_synops(self, name: str, layer: nn.Module, x: torch.Tensor, steps: int) -> None:
        """x: [K*N, ...] dynamic input of a synaptic layer."""
        fan = self._fanout_for(name, layer, tuple(x.shape[1:]), x.device)
        self._add(self.synops, name, self.events(x, steps, x.shape[0] // steps).double() @ fan)

    def _add(self, table: dict[str, torch.Tensor], name: str, per_step: torch.Tensor) -> None:
        """Add per-step totals [K] of this chunk at steps t0 .. t0+K-1 (summing over batches)."""
        end = self._t0 + len(per_step)
        cur = table.get(name)
        if cur is None:
            cur = per_step.new_zeros(max(end, self.steps or 0))
        if len(cur) < end:
            cur = torch.cat([cur, cur.new_zeros(end - len(cur))])
        cur[self._t0:end] += per_step
        table[name] = cur

    def count_static(self, name: str, layer: nn.Module, x: torch.Tensor) -> None:
        if name not in self.static_macs:
            self.static_macs[name] = float(fanout_map(layer, tuple(x.shape[1:])).sum())

    def _fanout_for(self, name: str, layer: nn.Module, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        key = (name, shape, device)
        if key not in self._fanout:
            self._fanout[key] = fanout_map(layer, shape).flatten().double().to(device)
        return self._fanout[key]

    def totals(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(spikes per step, synops per step) per layer, each a 1-D float64 CPU tensor over time."""
        return ({k: v.cpu() for k, v in self.spikes.items()}, {k: v.cpu() for k, v in self.synops.items()})
