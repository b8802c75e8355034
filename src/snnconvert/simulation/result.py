"""SimulationResult: accuracy after every step, activity and energy, JSON-ready."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from .. import distributed
from ..errors import ConfigError

# 45 nm CMOS figures (Horowitz 2014): one float accumulate, one float multiply-accumulate.
E_AC_PJ = 0.9
E_MAC_PJ = 4.6


@dataclass
class LayerActivity:
    """One neuron layer: neurons per sample and spikes per step summed over the dataset."""

    name: str
    neurons: int
    spikes_per_step: list[float]

    def firing_rate(self, samples: int, t: int | None = None) -> float:
        """Spikes per neuron per step over the first t steps (all when t is None)."""
        s = self.spikes_per_step if t is None else self.spikes_per_step[:t]
        return sum(s) / max(1, self.neurons * samples * len(s))


@dataclass
class SimulationResult:
    """What simulate() measured. accuracy[t-1] is the accuracy after t steps (t = 1..T)."""

    T: int
    samples: int
    accuracy: list[float]
    ann_accuracy: float | None = None
    layers: list[LayerActivity] = field(default_factory=list)
    synops_per_step: list[float] = field(default_factory=list)  # summed over samples and synaptic layers
    static_macs_per_sample: float = 0.0  # MACs per step of layers fed by the constant analog input
    ann_macs_per_sample: float | None = None
    method: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    exit_rule: dict[str, Any] | None = None  # early exit: the rule, steps used per sample, mean steps
    exit_steps_histogram: list[int] | None = None  # [t-1]: samples that stopped after t steps
    mean_steps: float | None = None

    def accuracy_at(self, t: int) -> float:
        return self.accuracy[t - 1]

    def steps_to_reach(self, target: float) -> int | None:
        """First t whose accuracy is >= target and stays >= target to the end of the run."""
        t_ok = None
        for t, a in enumerate(self.accuracy, start=1):
            if a >= target:
                t_ok = t_ok or t
            else:
                t_ok = None
        return t_ok

    def firing_rate(self, t: int | None = None) -> float:
        """Overall spikes per neuron per step."""
        neurons = sum(la.neurons for la in self.layers)
        spikes = sum(sum(la.spikes_per_step if t is None else la.spikes_per_step[:t]) for la in self.layers)
        steps = self.T if t is None else t
        return spikes / max(1, neurons * self.samples * steps)

    def synops_per_sample(self, t: int | None = None) -> float:
        s = self.synops_per_step if t is None else self.synops_per_step[:t]
        return sum(s) / max(1, self.samples)

    def energy_per_sample_pj(self, t: int | None = None) -> float:
        """SNN energy: 0.9 pJ per synaptic accumulate + 4.6 pJ per MAC of the analog first layer(s),
        whose constant input is counted as injected at every step (t x MACs)."""
        steps = self.T if t is None else t
        return E_AC_PJ * self.synops_per_sample(t) + E_MAC_PJ * self.static_macs_per_sample * steps

    def ann_energy_per_sample_pj(self) -> float | None:
        return None if self.ann_macs_per_sample is None else E_MAC_PJ * self.ann_macs_per_sample

    def summary(self, t: int | None = None) -> dict[str, Any]:
        t = self.T if t is None else t
        ann_e = self.ann_energy_per_sample_pj()
        snn_e = self.energy_per_sample_pj(t)
        return {
            "t": t, "accuracy": self.accuracy_at(t), "firing_rate": self.firing_rate(t),
            "layer_firing_rates": {la.name: la.firing_rate(self.samples, t) for la in self.layers},
            "synops_per_sample": self.synops_per_sample(t), "energy_per_sample_uj": snn_e * 1e-6,
            "ann_energy_per_sample_uj": None if ann_e is None else ann_e * 1e-6,
            "energy_ratio_snn_to_ann": None if not ann_e else snn_e / ann_e,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary_at_T"] = self.summary()
        return d

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    # ------------------------------------------------------------------ merging shards of a dataset

    def _segments(self) -> list[tuple[str, list[float]]]:
        """The additive quantities, named: samples, correct counts per t, ANN correct count,
        early-exit histogram, synops per step, spikes per step of each layer. All are integer counts
        (as floats below 2^53), so summing them is exact."""
        n = self.samples
        segments: list[tuple[str, list[float]]] = [("samples", [n]), ("correct", [round(a * n) for a in self.accuracy])]
        if self.ann_accuracy is not None:
            segments.append(("ann_correct", [round(self.ann_accuracy * n)]))
        if self.exit_steps_histogram is not None:
            segments.append(("exit_steps", list(self.exit_steps_histogram)))
        segments.append(("synops", list(self.synops_per_step)))
        segments += [(f"layer {la.name} {la.neurons}", list(la.spikes_per_step)) for la in self.layers]
        return segments

    def _layout(self) -> list[tuple[str, int]]:
        return [(name, len(values)) for name, values in self._segments()]

    def counts(self) -> torch.Tensor:
        """The additive quantities as one float64 vector (summed across shards by merge / reduce)."""
        return torch.tensor([v for _, values in self._segments() for v in values], dtype=torch.float64)

    def with_counts(self, total: torch.Tensor, seconds: float) -> "SimulationResult":
        """This result with its additive fields replaced by `total` (laid out as counts())."""
        values, summed, pos = total.tolist(), {}, 0
        for name, size in self._layout():
            summed[name], pos = values[pos:pos + size], pos + size
        samples = int(summed["samples"][0])
        out = replace(self, samples=samples, accuracy=[c / samples for c in summed["correct"]],
                      synops_per_step=summed["synops"], method=dict(self.method), seconds=seconds,
                      layers=[LayerActivity(la.name, la.neurons, summed[f"layer {la.name} {la.neurons}"])
                              for la in self.layers])
        if "ann_correct" in summed:
            out.ann_accuracy = summed["ann_correct"][0] / samples
        if "exit_steps" in summed:
            hist = [int(h) for h in summed["exit_steps"]]
            out.exit_steps_histogram = hist
            out.mean_steps = sum(t * h for t, h in enumerate(hist, start=1)) / samples
        return out

    @staticmethod
    def merge(results: Sequence["SimulationResult"]) -> "SimulationResult":
        """Combine results of disjoint shards of one dataset into the result of the whole dataset.

        Correct counts per t (accuracy x samples), ANN correct counts, early-exit histograms, spikes
        and synops per step and samples are summed (accuracies and mean_steps recomputed from the
        sums); T, method, exit rule and static/ANN MACs per sample come from the first; seconds is
        the maximum. Equal, bit for bit, to simulating the whole dataset at once (Direct encoding).
        """
        if not results:
            raise ConfigError("SimulationResult.merge needs at least one result")
        first = results[0]
        for r in results[1:]:
            if r.T != first.T or r._layout() != first._layout():
                raise ConfigError("cannot merge simulation results of different runs (T, layers, recording, ANN "
                                  "or early exit differ); simulate every shard with the same model and options")
        return first.with_counts(torch.stack([r.counts() for r in results]).sum(0), max(r.seconds for r in results))

    def reduce_across_ranks(self) -> "SimulationResult":
        """merge() over all ranks of a torchrun job (each simulated its own shard); every rank gets
        the total. Returns this result itself in a single process."""
        if distributed.rank_and_world()[1] == 1:
            return self
        packed = self.counts()
        size = float(len(packed))
        if distributed.all_reduce_scalar(size, "min") != distributed.all_reduce_scalar(size, "max"):
            raise ConfigError("ranks simulated with different T, layers or ANN options; run every rank with the "
                              "same arguments")
        total = distributed.all_reduce_sum(packed)
        return self.with_counts(total, distributed.all_reduce_scalar(self.seconds, "max"))
