"""simulate(): run a SpikingModel over a dataset ONCE for T steps and read out every t = 1..T."""
from __future__ import annotations

import itertools
import sys
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..batches import count_samples, iter_batches, progress_bar
from ..errors import ConfigError
from ..evaluation import accuracy, eval_mode
from ..graph import LAYER, Program, trace
from ..graph.ops import SYNAPTIC_TYPES
from .early_exit import ExitRule, ExitTracker
from .encoding import Direct, Encoder
from .budget import RunClock, check_fits, estimate_run, probe
from .engine import SpikingModel, check_count, check_steps
from .record import Recorder, fanout_map
from .result import LayerActivity, SimulationResult

if TYPE_CHECKING:
    from tqdm import tqdm


def ann_macs(program: Program, x: torch.Tensor) -> float:
    """Multiply-accumulates per sample of the ANN: the synapse count of every conv/linear layer."""
    inputs = {n.args[0].name: n for n in program.nodes
              if n.kind is LAYER and isinstance(program.layers[n.target], SYNAPTIC_TYPES)}
    with torch.no_grad():
        _, cap = program.run(x[:1], inputs.keys())
    total = 0.0
    for src, node in inputs.items():
        total += float(fanout_map(program.layers[node.target], tuple(cap[src].shape[1:])).sum())
    return total


def auto_chunk(snn: SpikingModel, x: torch.Tensor, T: int, memory_budget_mb: float, encoder: Encoder = Direct()) -> int:
    """Steps per chunk so that one chunk's values (time folded into the batch) fit the budget."""
    per_step = max(1, snn.step_bytes(x, encoder) * 2)  # x2: the neuron loop's buffers and temporaries
    return int(max(1, min(T, memory_budget_mb * 2**20 // per_step)))


def _labelled(x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if y is None:
        raise ConfigError("simulate() needs labelled data: (inputs, labels) pairs or a labelled Dataset")
    return x, y


def _checked_chunk(snn: SpikingModel, x: torch.Tensor, T: int, chunk_size: int | None, memory_budget_mb: float,
                   encoder: Encoder, samples: int | None, record: bool, early_exit: bool) -> int:
    """Steps per chunk for a run whose first batch is x (at most 2 with early exit), once the run is
    known to fit in memory (budget.check_fits; ConfigError otherwise). Measures one step of x, eagerly."""
    with torch.no_grad():
        k = chunk_size or auto_chunk(snn, x, T, memory_budget_mb, encoder)
        k = min(k, 2) if early_exit else k
        check_fits(estimate_run("simulate()", probe(snn, x, encoder), T, len(x), k, samples=samples, record=record,
                                early_exit=early_exit, device=snn.device))
    return k


def _advance(bar: tqdm, done: int) -> None:
    """Move the bar to `done` images: finished ones plus the steps run of the batch in flight
    (a batch of B images t steps into T counts B t / T), so long batches move it too."""
    if done > bar.n:
        bar.update(done - bar.n)


def simulate(snn: SpikingModel, data: Any, T: int | None = None, *, ann: nn.Module | None = None,
             encoder: Encoder = Direct(), batch_size: int = 256, chunk_size: int | None = None,
             memory_budget_mb: float = 512, progress: bool | None = None, record: bool = True,
             seed: int | None = None, exit_when: ExitRule | None = None,
             compile: bool | str | None = "auto") -> SimulationResult:
    """Evaluate `snn` on labelled data in one run of T steps.

    Returns accuracy after every t = 1..T (the prediction after t steps is the argmax of the summed
    output of steps 1..t), per-layer spikes per step, synaptic operations and the energy estimate,
    plus the ANN's accuracy and MACs when `ann` is given. The values of the network do not grow with
    T: time is streamed in chunks of `chunk_size` steps (chosen from `memory_budget_mb` when None);
    the per-step records and the result's lists do (about 8 T (1 + layers) bytes of counters and
    32 T bytes per list). A run whose estimated peak (budget.estimate_run) does not fit in the memory
    available is refused with a ConfigError before it starts; one measured to take longer than
    budget.SLOW_RUN_S is warned about after its second chunk.
    `seed` seeds a stochastic encoder's random stream (one stream over the whole dataset); None
    uses the encoder's own seed (Poisson(seed)).
    With `exit_when` (an ExitRule: ExitWhenStable(patience=8), or fit_exit_rule(...).rule fitted on
    held-out training data), each sample stops once its prediction has
    settled and keeps that prediction for the remaining steps; its work is skipped from the next
    chunk on (chunks of at most 2 steps then). The result then also holds the steps each sample
    used (`exit_steps_histogram`, `mean_steps`); accuracy[-1] is the early-exit accuracy.
    `compile`: "auto" (default) or True runs the neuron updates as torch.compile'd fused loops for
    this call (SpikingModel.compiled_neurons; about a second of compilation per neuron type, once per
    process; eager after one warning where compiling is not possible), False eagerly, None as an
    enclosing `with snn.compiled_neurons():` block says (eager outside one). Results are the same.
    `progress`: a bar on stderr in images, its total the number of samples when the data's length is
    known (so a percentage and an ETA), advanced every chunk; None shows it when stderr is a terminal.
    """
    if not isinstance(snn, SpikingModel):
        raise ConfigError(f"simulate() needs a SpikingModel from snnconvert.convert(), got {type(snn).__name__}")
    T = check_steps(snn.default_T if T is None else T)
    batch_size = check_count(batch_size, "batch_size", "batch_size=256")
    chunk_size = None if chunk_size is None else check_count(chunk_size, "chunk_size", "chunk_size=32")
    if not memory_budget_mb > 0:
        raise ConfigError(f"memory_budget_mb must be > 0 (e.g. 512), got {memory_budget_mb!r}")
    if compile not in (True, False, None, "auto"):
        raise ConfigError(f"compile must be 'auto', True, False or None, got {compile!r}")
    if progress is None:
        progress = sys.stderr.isatty()
    start = time.perf_counter()
    device = snn.device  # batches go where the model is; counts stay there until the end of the run
    snn.eval()
    batches = iter_batches(data, batch_size, "data")
    first_x, first_y = next(batches)  # EmptyDataError for no data
    first_x = _labelled(first_x, first_y)[0].to(device)
    samples_in_all = count_samples(data)
    k = _checked_chunk(snn, first_x, T, chunk_size, memory_budget_mb, encoder, samples_in_all, record,
                       exit_when is not None)
    clock = RunClock("simulate()", T, samples_in_all)
    correct = torch.zeros(T, dtype=torch.long, device=device)
    exit_hist = torch.zeros(T + 1, dtype=torch.long, device=device) if exit_when is not None else None
    samples = 0
    recorder = Recorder(steps=T) if record else None
    generator = None  # made on the first batch's device (a CPU generator cannot drive CUDA sampling)
    bar = progress_bar(f"simulating T={T}", samples_in_all, progress, unit="img")
    scope = nullcontext() if compile is None else snn.compiled_neurons(compile is not False)
    with torch.no_grad(), scope, bar:
        for x, y in itertools.chain([(first_x, first_y)], batches):
            x, y = _labelled(x, y)
            x, y = x.to(device), y.to(device)
            if generator is None:
                generator = torch.Generator(device=x.device).manual_seed(
                    int(getattr(encoder, "seed", 0) if seed is None else seed))
            tracker = ExitTracker(exit_when, y, T) if exit_when is not None else None
            cum = None
            t = 0
            live_y = y
            for out in snn.run(x, T, encoder, k, recorder, generator):
                logits = out.flatten(2)  # [K, B, classes]
                cs = logits.cumsum(0) if cum is None else cum + logits.cumsum(0)
                hits = cs.argmax(-1) == live_y.view(1, -1)
                if tracker is not None:
                    keep, counted = tracker.update(logits, cs, t)
                    hits &= counted
                correct[t:t + len(out)] += hits.sum(1)
                cum = cs[-1]
                t += len(out)
                clock.chunk_done(len(out), len(live_y))
                _advance(bar, samples + len(x) * t // T)
                if tracker is not None and not bool(keep.all()):
                    snn.keep(keep)
                    cum, live_y = cum[keep], live_y[keep]
            if tracker is not None:
                correct += tracker.frozen_correct()
                exit_hist += torch.bincount(tracker.exit_step, minlength=T + 1)
            samples += len(x)
            _advance(bar, samples)
    correct = correct.cpu()
    result = SimulationResult(T=T, samples=samples, accuracy=(correct.double() / samples).tolist(),
                              method=dict(snn.method))
    if exit_hist is not None:
        exit_hist = exit_hist.cpu()
        result.exit_rule = exit_when.to_dict()
        result.exit_steps_histogram = exit_hist[1:].tolist()
        result.mean_steps = float((exit_hist * torch.arange(T + 1)).sum()) / samples
    if recorder is not None:
        spikes, synops = recorder.totals()
        pad = lambda v: torch.cat([v, v.new_zeros(T - len(v))])  # noqa: E731  (early exit may end sooner)
        result.layers = [LayerActivity(k, recorder.neurons[k], pad(v).tolist()) for k, v in spikes.items()]
        total = torch.zeros(T, dtype=torch.float64)
        for v in synops.values():
            total += pad(v)
        result.synops_per_step = total.tolist()
        result.static_macs_per_sample = sum(recorder.static_macs.values())
    if ann is not None:
        ann_device = next(iter(ann.parameters()), torch.empty(0)).device
        with eval_mode(ann):
            result.ann_accuracy = accuracy(ann, data, batch_size, "data", device=ann_device)
        result.ann_macs_per_sample = ann_macs(trace(ann), first_x.to(ann_device))
    result.seconds = time.perf_counter() - start
    return result
