"""One-screen, plain-text summaries of an evaluation (at most 80 columns, no colours).

- `evaluation_summary(result)`: accuracy after t = 1, 2, 4, ... and T steps; the first t from which
  the SNN stays within 1% (one percentage point) of the ANN; spikes per neuron per step and the first
  step with a spike, per neuron layer; energy per sample against the ANN's; early exit.
- `threshold_summary(snn)`: per neuron layer the kind, the threshold granularity and the mean, min
  and max threshold.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..simulation import SimulationResult, SpikingModel
from .tables import powers_of_two

WITHIN = 0.01  # "within 1% of the ANN": at most one percentage point below it
_EPS = 1e-9  # accuracies are counts / samples: absorbs the float error of ann - WITHIN
_CELL = 7  # width of one accuracy cell ("100.00" and a space)
_CELLS_PER_ROW = 10  # 7 + 10 x 7 = 77 columns
_NAME_MAX = 24  # widest layer-name column


def check_result(result: SimulationResult) -> SimulationResult:
    """`result` itself when it holds a run (T >= 1, samples >= 1, T accuracies), else ConfigError."""
    if not isinstance(result, SimulationResult):
        raise ConfigError(f"expected a SimulationResult from snnconvert.simulate(), got {type(result).__name__}")
    if result.T < 1 or result.samples < 1 or len(result.accuracy) != result.T:
        raise ConfigError(f"the simulation result is empty (T={result.T}, {result.samples} samples, "
                          f"{len(result.accuracy)} accuracies): simulate() at least one sample for T >= 1 steps")
    return result


def recorded(result: SimulationResult) -> bool:
    """Whether the run recorded per-layer activity (simulate(record=True))."""
    return bool(result.layers) and all(len(la.spikes_per_step) == result.T for la in result.layers)


def evaluation_summary(result: SimulationResult, ann_accuracy: float | None = None, *,
                       snn: SpikingModel | None = None) -> str:
    """The one-screen summary of `result` (module docstring). `ann_accuracy` (a fraction) replaces
    the result's own ANN accuracy (e.g. the QANN's for Fast-SNN); `snn` adds threshold_summary(snn).
    ConfigError for an empty result."""
    check_result(result)
    ann = result.ann_accuracy if ann_accuracy is None else ann_accuracy
    parts = [_header(result), _accuracy_rows(result, ann), _latency(result, ann)]
    t_within = None if ann is None else result.steps_to_reach(ann - WITHIN - _EPS)
    if recorded(result):
        parts += [_firing_table(result), _energy(result, t_within)]
    else:
        parts.append("activity: not recorded (run simulate(..., record=True) for firing rates and energy)")
    if result.mean_steps is not None:
        parts.append(f"early exit: {result.mean_steps:.2f} steps per sample on average (of T={result.T})")
    if snn is not None:
        parts.append(threshold_summary(snn))
    return "\n".join(parts)


def _header(result: SimulationResult) -> str:
    method = result.method.get("name")
    line = f"SNN evaluation: {result.samples} samples, T={result.T}"
    line += f", method {method}" if method else ""
    return line + (f", {result.seconds:.1f} s" if result.seconds else "")


def _accuracy_rows(result: SimulationResult, ann: float | None) -> str:
    steps = powers_of_two(result.T)
    title = "accuracy after t steps" + (f" (ANN {100 * ann:.2f}%)" if ann is not None else "") + ":"
    lines = [title]
    for i in range(0, len(steps), _CELLS_PER_ROW):
        row = steps[i:i + _CELLS_PER_ROW]
        lines.append(f"{'t:':>{_CELL}}" + "".join(f"{t:>{_CELL}}" for t in row))
        lines.append(f"{'%:':>{_CELL}}" + "".join(f"{100 * result.accuracy_at(t):>{_CELL}.2f}" for t in row))
    return "\n".join(lines)


def _latency(result: SimulationResult, ann: float | None) -> str:
    if ann is None:
        return "within 1% of the ANN: unknown (no ANN accuracy; pass ann= to simulate())"
    t = result.steps_to_reach(ann - WITHIN - _EPS)
    if t is not None:
        return f"within 1% of the ANN from t={t} on ({100 * result.accuracy_at(t):.2f}% at t={t})"
    best = max(range(1, result.T + 1), key=lambda s: (result.accuracy_at(s), -s))
    return (f"not within 1% of the ANN by T={result.T} (best {100 * result.accuracy_at(best):.2f}% "
            f"at t={best})")


def _name(name: str, width: int) -> str:
    return name if len(name) <= width else name[:width - 2] + ".."


def _firing_table(result: SimulationResult) -> str:
    width = max(len("layer"), min(_NAME_MAX, max(len(la.name) for la in result.layers)))
    lines = [f"firing rate over T={result.T} steps (spikes per neuron per step):",
             f"  {'layer':<{width}} {'neurons':>10} {'rate':>8} {'first spike':>11}"]
    for la in result.layers:
        first = next((t for t, s in enumerate(la.spikes_per_step, start=1) if s > 0), None)
        lines.append(f"  {_name(la.name, width):<{width}} {la.neurons:>10,} "
                     f"{la.firing_rate(result.samples):>8.4f} {('t=' + str(first)) if first else 'never':>11}")
    total = sum(la.neurons for la in result.layers)
    lines.append(f"  {'all':<{width}} {total:>10,} {result.firing_rate():>8.4f}")
    return "\n".join(lines)


def _joules(pj: float) -> str:
    """An energy in pJ as pJ, nJ, uJ or mJ, three significant digits."""
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if pj >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _count(n: float) -> str:
    """A count with k, M or G, three significant digits."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _ratio(snn_pj: float, ann_pj: float | None) -> str:
    return f", {snn_pj / ann_pj:.2f}x the ANN" if ann_pj else ""


def _energy(result: SimulationResult, t_within: int | None) -> str:
    ann_pj = result.ann_energy_per_sample_pj()
    lines = ["energy per sample (0.9 pJ per synaptic op, 4.6 pJ per MAC):"]
    at_T = result.energy_per_sample_pj()
    lines.append(f"  SNN at T={result.T}: {_joules(at_T)} ({_count(result.synops_per_sample())} synops)"
                 + _ratio(at_T, ann_pj))
    if t_within is not None and t_within != result.T:
        at_t = result.energy_per_sample_pj(t_within)
        lines.append(f"  SNN at t={t_within} (within 1%): {_joules(at_t)}" + _ratio(at_t, ann_pj))
    if ann_pj is None:
        lines.append("  ANN: unknown (pass ann= to simulate())")
    else:
        lines.append(f"  ANN: {_joules(ann_pj)} ({_count(result.ann_macs_per_sample)} MACs)")
    return "\n".join(lines)


def threshold_granularity(threshold: torch.Tensor) -> str:
    """'layer' for one threshold, 'channel xC' for [C, 1, ...] or [C], 'neuron xN' otherwise."""
    if threshold.numel() == 1:
        return "layer"
    if threshold.dim() == 1 or all(s == 1 for s in threshold.shape[1:]):
        return f"channel x{threshold.shape[0]}"
    return f"neuron x{threshold.numel()}"


def threshold_summary(snn: SpikingModel) -> str:
    """Per neuron layer of `snn`: its kind, threshold granularity and mean / min / max threshold."""
    if not isinstance(snn, SpikingModel):
        raise ConfigError(f"threshold_summary() needs a SpikingModel, got {type(snn).__name__}")
    rows = [(name, getattr(n, "kind", type(n).__name__), n.threshold.detach().float().cpu())
            for name, n in snn.neurons().items() if getattr(n, "threshold", None) is not None]
    if not rows:
        return "thresholds: the network has no neuron with a threshold"
    width = max(len("layer"), min(_NAME_MAX, max(len(r[0]) for r in rows)))
    kind_w = max(len("neuron"), max(len(r[1]) for r in rows))
    gran_w = max(len("granularity"), max(len(threshold_granularity(r[2])) for r in rows))
    lines = ["thresholds per neuron layer:",
             f"  {'layer':<{width}} {'neuron':<{kind_w}} {'granularity':<{gran_w}} {'mean':>9} {'min':>9} {'max':>9}"]
    for name, kind, thr in rows:
        lines.append(f"  {_name(name, width):<{width}} {kind:<{kind_w}} {threshold_granularity(thr):<{gran_w}} "
                     f"{thr.mean().item():>9.4g} {thr.min().item():>9.4g} {thr.max().item():>9.4g}")
    return "\n".join(lines)
