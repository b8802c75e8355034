"""RMP-SNN / Spike-Norm threshold balancing on the spiking network itself.

Neuron layers are taken in network order; layer l's threshold is the maximum, over calibration
images and `steps` time steps, of the per-step input z_l(t) its neurons receive while every layer
before it spikes at its final (already balanced and scaled) threshold:

    theta_l = scale * floor_dead(max_{x, t <= steps} z_l(t))

Cost. Re-running the network from the input for every layer costs about L/2 spiking runs for L
neuron layers. Instead, the pass that measures layer l also records the spikes of the layers that
later passes need (the "cut" after layer l-1: layer l-1 and any earlier layer a skip connection
still reads), bit-packed, one bit per neuron and step (two for signed neurons); the pass for layer
l+1 starts from those spikes. Every segment of the network then runs twice in all (about two spiking
runs), and the thresholds are the same, bit for bit, as re-running from the input: the recorded
spikes are the values the neurons emit (theta * s, s in {-1, 0, 1}), decoded exactly. When the
spikes of a cut would not fit `cache_mb`, that pass records nothing and the next one starts from
the last cut that fitted (or the input).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..batches import count_batches, iter_batches, progress_bar
from ..graph import ACTIVATION, Program
from ..neurons import Negative, SpikingNeuron
from ..simulation import SpikingModel
from .granularity import Granularity
from .observers import MaxObserver
from .statistics import floor_dead

DEFAULT_CACHE_MB = 1024.0
_SHIFTS = torch.arange(8, dtype=torch.uint8)


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
        return z.new_zeros(()).expand_as(z)  # nothing reads it: the pass stops at this node


def pack_bits(b: torch.Tensor) -> torch.Tensor:
    """A bool tensor as uint8, 8 elements a byte (element i of a group of 8 in bit i), zero-padded."""
    flat = b.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    groups = flat.view(torch.uint8).view(-1, 8)  # a bool is one byte, 0 or 1
    out = groups[:, 0].clone()
    for i in range(1, 8):
        out |= groups[:, i] << i
    return out


def unpack_bits(packed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of pack_bits: the bits as a uint8 tensor (0 or 1) of `shape`."""
    bits = (packed[:, None] >> _SHIFTS.to(packed.device)) & 1
    return bits.reshape(-1)[: shape.numel()].view(shape)


@dataclass
class _Spikes:
    """The spikes theta * s of one neuron layer over one chunk, as bit planes of s > 0 (and s < 0),
    and the memory layout (strides) the neuron wrote them in: layers that read them (oneDNN's convs)
    may sum in another order for another layout, so they are decoded into the same one."""

    shape: torch.Size
    stride: tuple[int, ...]
    pos: torch.Tensor
    neg: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        return self.pos.numel() + (0 if self.neg is None else self.neg.numel())

    def decode(self, threshold: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """theta * s, exactly the values the neuron emitted."""
        s = unpack_bits(self.pos, self.shape).to(dtype)
        if self.neg is not None:
            s -= unpack_bits(self.neg, self.shape).to(dtype)
        s.mul_(threshold.to(dtype))
        if s.stride() == self.stride:
            return s
        return torch.empty_strided(self.shape, self.stride, dtype=dtype, device=s.device).copy_(s)


def _encode(value: torch.Tensor, neuron: SpikingNeuron) -> _Spikes | None:
    """`value` as bit planes, or None if it is not exactly theta * s with s in {-1, 0, 1} (then it
    cannot be recorded): every nonzero entry must equal +theta or -theta of its group."""
    thr = neuron.threshold.to(value.dtype)
    pos = value == thr
    hits = int(torch.count_nonzero(pos))
    neg = None
    if neuron.negative is not Negative.NONE:
        neg = value == -thr
        hits += int(torch.count_nonzero(neg))
    if hits != int(torch.count_nonzero(value)):
        return None
    return _Spikes(value.shape, value.stride(), pack_bits(pos), None if neg is None else pack_bits(neg))


@dataclass
class _Cut:
    """Recorded spikes of some neuron layers: [batch][chunk] -> {node name: _Spikes}."""

    names: frozenset[str]
    batches: list[list[dict[str, _Spikes]]] = field(default_factory=list)
    nbytes: int = 0


def cut_after(program: Program, name: str) -> list[str]:
    """The neuron layers, up to and including `name`, whose spikes the nodes after `name` read
    (directly or through non-neuron nodes up to `name`): what a later pass needs to start there."""
    order = {n.name: i for i, n in enumerate(program.nodes)}
    pos = order[name]
    by_name = {n.name: n for n in program.nodes}
    found: set[str] = set()
    seen: set[str] = set()
    stack = [r for n in program.nodes[pos + 1:] for r in n.refs() if order[r] <= pos]
    while stack:
        r = stack.pop()
        if r in seen:
            continue
        seen.add(r)
        if by_name[r].kind is ACTIVATION:
            found.add(r)
        else:
            stack.extend(by_name[r].refs())
    return sorted(found, key=order.get)


def balance_thresholds(snn: SpikingModel, data: Any, steps: int, granularity: Granularity, scale: float,
                       batch_size: int = 256, progress: bool = False,
                       cache_mb: float = DEFAULT_CACHE_MB) -> tuple[dict[str, torch.Tensor], int]:
    """Set every neuron's threshold of `snn` by layer-input-max balancing (in place); returns
    ({node name: threshold}, calibration samples). `cache_mb` bounds the recorded spikes (0: none,
    every pass runs from the input). `progress`: a bar on stderr over layers x batches."""
    thresholds: dict[str, torch.Tensor] = {}
    samples = 0
    nodes = snn.program.activation_nodes()
    neurons = snn.neurons()
    cut: _Cut | None = None  # spikes recorded by the previous pass that fitted
    batches = count_batches(data, batch_size)
    bar = progress_bar("threshold balancing", None if batches is None else batches * len(nodes), progress)
    with bar:
        for li, node in enumerate(nodes):
            bar.set_postfix_str(f"layer {li + 1}/{len(nodes)} {node.name}", refresh=False)
            neuron = snn.program.layers[node.target]
            probe = _InputMaxProbe(granularity, node.name)
            snn.program.layers[node.target] = probe
            record = frozenset(cut_after(snn.program, nodes[li - 1].name)) if li > 0 and cache_mb > 0 else frozenset()
            new: _Cut | None = _Cut(record) if record else None
            samples = 0
            with torch.no_grad():
                for bi, (x, _) in enumerate(iter_batches(data, batch_size, "calibration data")):
                    chunks = iter(cut.batches[bi]) if cut is not None else None
                    given = (lambda t0, k, chunks=chunks: {n: s.decode(neurons[n].threshold, x.dtype)
                                                           for n, s in next(chunks).items()}) if chunks else None
                    capture = {n: [] for n in new.names} if new is not None else None
                    for _ in snn.run(x, steps, stop_after=node.name, given=given,
                                     given_names=cut.names if cut is not None else frozenset(), capture=capture):
                        pass
                    if new is not None:
                        new = _record(new, capture, neurons, cache_mb)
                    samples += len(x)
                    bar.update(1)
            thresholds[node.name] = floor_dead(probe.observer.compute()) * scale
            neuron.threshold = thresholds[node.name].clone()
            snn.program.layers[node.target] = neuron
            if new is not None:
                cut = new
    return thresholds, samples


def _record(cut: _Cut, capture: dict[str, list[torch.Tensor]], neurons: dict[str, SpikingNeuron],
            cache_mb: float) -> _Cut | None:
    """Add one batch's captured spikes to `cut`; None when they are not spikes or exceed the budget."""
    chunks: list[dict[str, _Spikes]] = []
    for k in range(len(next(iter(capture.values())))):
        packed = {}
        for name, values in capture.items():
            spikes = _encode(values[k], neurons[name])
            if spikes is None:
                return None
            packed[name] = spikes
            cut.nbytes += spikes.nbytes
        chunks.append(packed)
        if cut.nbytes > cache_mb * 2**20:
            return None
    cut.batches.append(chunks)
    return cut
