"""diagnose(snn, ann, data, T): every neuron layer of a converted network against the ANN it came from.

For neuron layer l, on the same inputs, with all earlier layers spiking, the SNN's mean output up to
step t, m_l(t) = (1/t) sum_{s<=t} o_l(s) (spike amplitude x net spikes / t), is compared with the
ANN's activation a_l at checkpoints t = 1, 2, 4, ..., T:
  relative error  ||m_l(t) - a_l|| / ||a_l||   (norms over all samples and neurons)
  cosine          mean over samples of cos(m_l(t), a_l)  (1 where both are zero)
and over the run: the share of ANN activations above the threshold (clipped: no rate can carry
them), of (sample, neuron) pairs that never spike, the firing rate (spikes per neuron per step),
the first step at which the layer spikes, and the accuracy at T when the layers up to l spike and
the rest run as the ANN on their mean outputs (so the user sees where the accuracy goes).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..batches import count_samples, iter_batches
from ..errors import ConfigError
from ..evaluation import eval_mode
from ..graph import trace
from ..simulation import SpikingModel
from ..simulation.budget import RunClock, check_fits, estimate_run, probe
from ..simulation.engine import check_count, check_steps
from ..simulation.simulate import auto_chunk


def checkpoints(T: int) -> list[int]:
    """1, 2, 4, ... up to T, and T itself."""
    out, t = [], 1
    while t < T:
        out.append(t)
        t *= 2
    return out + [T]


@dataclass
class LayerDiagnosis:
    name: str
    neurons: int  # per sample
    relative_error: list[float]  # at each checkpoint
    cosine: list[float]
    clipped: float
    silent: float
    firing_rate: float
    first_spike_step: int | None
    accuracy_spiking_up_to_here: float | None


@dataclass
class Diagnosis:
    T: int
    samples: int
    steps: list[int]
    ann_accuracy: float | None
    snn_accuracy: float | None  # at T, every layer spiking
    layers: list[LayerDiagnosis] = field(default_factory=list)
    method: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A terminal table: one row per neuron layer."""
        shown = [i for i, t in enumerate(self.steps) if t in (1, 4, 16, 64, 256, 1024) or t == self.T]
        head = (f"{'layer':<14}{'neurons':>9}" + "".join(f"{'err@' + str(self.steps[i]):>9}" for i in shown)
                + f"{'cos@T':>7}{'clip%':>7}{'silent%':>8}{'rate':>7}{'t1st':>5}{'acc%':>7}")
        lines = [head, "-" * len(head)]
        for la in self.layers:
            acc = "" if la.accuracy_spiking_up_to_here is None else f"{100 * la.accuracy_spiking_up_to_here:.2f}"
            lines.append(f"{la.name[:13]:<14}{la.neurons:>9}" + "".join(f"{la.relative_error[i]:>9.3f}" for i in shown)
                         + f"{la.cosine[-1]:>7.3f}{100 * la.clipped:>7.2f}{100 * la.silent:>8.2f}"
                         f"{la.firing_rate:>7.3f}{la.first_spike_step or '-':>5}{acc:>7}")
        if self.ann_accuracy is not None:
            lines.append(f"ANN {100 * self.ann_accuracy:.2f}%, SNN at T={self.T} {100 * self.snn_accuracy:.2f}%; "
                         "acc%: accuracy at T when the layers up to this one spike and the rest run as the ANN")
        return "\n".join(lines)


def diagnose(snn: SpikingModel, ann: nn.Module, data: Any, T: int, *, batch_size: int = 256,
             memory_budget_mb: float = 512, leaf_modules: tuple[type[nn.Module], ...] = ()) -> Diagnosis:
    """Per-layer diagnosis of `snn` (converted from `ann`) on `data` (inputs, or (inputs, labels) for
    the accuracies) over T steps; see the module docstring. Neither model is changed. A run whose
    estimated peak memory (simulation.budget.estimate_run) does not fit is refused with a ConfigError
    before it starts; one measured to take longer than budget.SLOW_RUN_S is warned about."""
    if not isinstance(snn, SpikingModel):
        raise ConfigError(f"diagnose() needs a SpikingModel from snnconvert.convert(), got {type(snn).__name__}")
    if not isinstance(ann, nn.Module):
        raise ConfigError(f"diagnose() needs the ANN the SNN was converted from (an nn.Module), got {type(ann).__name__}")
    T = check_steps(T)
    batch_size = check_count(batch_size, "batch_size", "batch_size=256")
    if not memory_budget_mb > 0:
        raise ConfigError(f"memory_budget_mb must be > 0 (e.g. 512), got {memory_budget_mb!r}")
    reference = trace(ann, leaf_modules)
    nodes = snn.program.activation_nodes()
    names = [n.name for n in nodes]
    missing = [n for n in names if n not in {m.name for m in reference.nodes}]
    if missing:
        raise ConfigError(f"the ANN has no node {missing[0]!r} of the spiking model: pass the ANN it was converted from")
    thresholds = {n.name: snn.program.layers[n.target].threshold for n in nodes}
    steps = checkpoints(T)
    at = {t: i for i, t in enumerate(steps)}
    L, C = len(names), len(steps)
    err_num, err_den = torch.zeros(L, C, dtype=torch.float64), torch.zeros(L, dtype=torch.float64)
    cos_sum = torch.zeros(L, C, dtype=torch.float64)
    clipped, silent, spikes = (torch.zeros(L, dtype=torch.float64) for _ in range(3))
    neurons = [0] * L
    first: list[int | None] = [None] * L
    hybrid = torch.zeros(L, dtype=torch.long)
    snn_correct = ann_correct = samples = 0
    labelled = True
    device = snn.device
    snn.eval()
    clock = RunClock("diagnose()", T, count_samples(data))
    with torch.no_grad(), eval_mode(ann):
        for x, y in iter_batches(data, batch_size, "data"):
            x = x.to(device)
            labelled = labelled and y is not None
            try:
                ann_out, acts = reference.run(x, capture=names)
            except (RuntimeError, ValueError, IndexError) as e:
                raise ConfigError(f"data of shape {tuple(x.shape)} does not fit the model: {e}") from None
            chunk = auto_chunk(snn, x, T, memory_budget_mb)
            if samples == 0:  # before the first batch runs
                check_fits(estimate_run("diagnose()", probe(snn, x), T, len(x), chunk, samples=clock.samples,
                                        device=device))
            acts = {k: v.double() for k, v in acts.items()}
            capture: dict[str, list[torch.Tensor]] = {n: [] for n in names}
            sums: dict[str, torch.Tensor] = {n: torch.zeros_like(acts[n]) for n in names}
            ever = {n: torch.zeros_like(acts[n], dtype=torch.bool) for n in names}
            out_sum, t = None, 0
            for out in snn.run(x, T, chunk_size=chunk, capture=capture):
                K = len(out)
                clock.chunk_done(K, len(x))
                out_sum = out.sum(0) if out_sum is None else out_sum + out.sum(0)
                for i, n in enumerate(names):
                    v = torch.cat(capture[n]).view(K, *acts[n].shape).double()
                    capture[n].clear()
                    fired = v != 0
                    spikes[i] += fired.sum()
                    ever[n] |= fired.any(0)
                    hit = fired.flatten(1).any(1).nonzero()
                    if len(hit):
                        f = t + 1 + int(hit[0])
                        first[i] = f if first[i] is None else min(first[i], f)
                    running = sums[n] + v.cumsum(0)  # sum of the outputs of steps 1..t+k+1
                    for k in (k for k in range(K) if t + k + 1 in at):
                        mean, a = running[k] / (t + k + 1), acts[n]
                        j = at[t + k + 1]
                        err_num[i, j] += (mean - a).pow(2).sum()
                        mf, af = mean.flatten(1), a.flatten(1)
                        cos = torch.nn.functional.cosine_similarity(mf, af, dim=1, eps=1e-30)
                        both_zero = (mf.abs().sum(1) == 0) & (af.abs().sum(1) == 0)
                        cos_sum[i, j] += torch.where(both_zero, torch.ones_like(cos), cos).sum()
                    sums[n] = running[-1]
                t += K
            for i, n in enumerate(names):
                a = acts[n]
                neurons[i] = a[0].numel()
                err_den[i] += a.pow(2).sum()
                clipped[i] += (a > thresholds[n].to(a)).sum()
                silent[i] += (~ever[n]).sum()
            if y is not None:
                y = y.to(device)
                snn_correct += int((out_sum.flatten(1).argmax(1) == y).sum())
                ann_correct += int((ann_out.flatten(1).argmax(1) == y).sum())
                for i in range(L):  # layers up to i spike (their mean outputs), the rest is the ANN
                    given = {n: (sums[n] / T).to(x.dtype) for n in names[:i + 1]}
                    hybrid[i] += int((reference.run(x, given=given)[0].flatten(1).argmax(1) == y).sum())
            samples += len(x)
    layers = []
    for i, n in enumerate(names):
        total = samples * neurons[i]
        rel = (err_num[i] / err_den[i]).sqrt() if err_den[i] > 0 else torch.full((C,), float("nan"))
        layers.append(LayerDiagnosis(
            name=n, neurons=neurons[i], relative_error=rel.tolist(), cosine=(cos_sum[i] / samples).tolist(),
            clipped=float(clipped[i]) / total, silent=float(silent[i]) / total,
            firing_rate=float(spikes[i]) / (total * T), first_spike_step=first[i],
            accuracy_spiking_up_to_here=float(hybrid[i]) / samples if labelled else None))
    return Diagnosis(T=T, samples=samples, steps=steps, ann_accuracy=ann_correct / samples if labelled else None,
                     snn_accuracy=snn_correct / samples if labelled else None, layers=layers,
                     method=dict(snn.method))
