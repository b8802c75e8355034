"""What a run will hold, estimated and checked before it starts; how long it will take, measured.

Besides the model and the data, simulate(), fit_exit_rule() and diagnose() allocate (bytes; T steps,
B samples per batch, N samples in all, K steps per chunk, S bytes of all values one step of one
sample produces, C outputs per sample, R recorded layers; per-sample sizes measured by `probe`):

  time chunks       K B (A + M + 17 C) the values of K steps of a batch alive at once (time folded into
                                       the batch; A: their peak per step and sample, as the engine
                                       frees each after its last use), the recorder's float32 marks of
                                       the largest value (M, simulate(record=True)), and the outputs'
                                       running sums, argmax and hits
  neuron state      B (Z + V)          membrane, spike counts, workspaces (Z); values computed once per
                                       sample and cached for the run (V, direct input)
simulate():
  per-step counters 8 T (1 + R + 4 E)  int64 correct counts; float64 spikes / synops of each
                                       recorded layer (record=True); with early exit (E) the exit
                                       histogram and its per-batch temporaries (bincount, frozen counts)
  result lists      32 T (1 + L + 1) + 8 T E   T Python floats (8-byte pointer + 24-byte float) for the
                                       accuracy, each of the L neuron layers' spikes and the synops;
                                       the exit histogram's small ints
  conversion copies 16 T (+ 8 T (1 + R + E) for a CUDA model)   float64 / CPU copies made while
                                       converting the counters to lists
fit_exit_rule() (W windows, one of them > 0: [a window]):
  fixed-run records 4 T N W + 8 T N    margins (float32, one [T, N] per window), predictions (int64)
  working tensors   the largest of: 36 T N (fit_thresholds' float64 / bool [T, N] work tensors),
                    4 T N W + 8 T N (joining the batches' records), and for the last batch
                    T B (8 C + 8 C [a window] + 20 + 4 W) ([T, B, C] running sums, window copies)
diagnose():
  captured outputs  K B (4 Nn + 46 max n)   each chunk's neuron outputs (Nn neurons per sample in all,
                                       layer sizes n) and float64 work copies of one layer
  per-sample values B (21 Nn + S)      float64 ANN activations, running sums, masks; the ANN's values

The estimate is their sum (on a CUDA model the counters and chunks are on the GPU, the lists on the
host); `check_fits` refuses a run whose estimate exceeds SAFE_FRACTION of the memory available.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..errors import ConfigError
from ..graph import LAYER
from ..graph.ops import SYNAPTIC_TYPES
from .encoding import Direct, Encoder
from .engine import SpikingModel

SAFE_FRACTION = 0.8  # the share of the available memory a run may take
SLOW_RUN_S = 1800.0  # runs measured to take longer than this are warned about
PY_FLOAT = 32  # bytes per element of a list of Python floats: pointer 8 + float object 24

Run = Literal["simulate()", "fit_exit_rule()", "diagnose()"]


@dataclass(frozen=True)
class ModelSizes:
    """Per-sample sizes of one time step of a SpikingModel (measured by `probe`)."""

    step_bytes: int  # every value one step produces (auto_chunk's measure)
    alive_bytes: int  # A: the most per-step values alive at once (SpikingModel.peak_alive)
    largest_bytes: int  # M: the largest per-step value (the recorder's marks buffer is its size in float32)
    static_bytes: int  # values computed once per sample and cached for the run (direct input)
    state_bytes: int  # Z: neuron / spiking max-pool state carried from step to step
    outputs: int  # C: output values
    neurons: tuple[int, ...]  # neurons of each neuron layer
    synaptic_layers: int  # conv / linear layers (each may record synops per step)

    @property
    def recorded(self) -> int:
        """R: the per-step series a recording run keeps (spikes per neuron layer, synops per synaptic layer)."""
        return len(self.neurons) + self.synaptic_layers


def probe(snn: SpikingModel, x: torch.Tensor, encoder: Encoder = Direct()) -> ModelSizes:
    """ModelSizes from one step of one sample (x[:1]); the model is reset before and after."""
    names = list(snn.neurons())
    sizes: dict[str, tuple[int, bool]] = {}
    capture: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    one = x[:1]
    generator = torch.Generator(device=one.device).manual_seed(0)  # leaves the global random stream alone
    snn.reset()
    try:
        with torch.no_grad():
            out = snn._run_chunk(one, 0, 1, encoder, {}, None, generator, None, sizes, capture=capture)
            state = snn.state_bytes()
    finally:
        snn.reset()
    program = snn.program
    synaptic = sum(1 for n in program.nodes if n.kind is LAYER and isinstance(program.layers[n.target], SYNAPTIC_TYPES))
    dynamic = [b for b, static in sizes.values() if not static]
    return ModelSizes(step_bytes=sum(b for b, _ in sizes.values()), alive_bytes=snn.peak_alive(sizes),
                      largest_bytes=max(dynamic, default=0) * 4 // max(1, out.element_size()),
                      static_bytes=sum(b for b, static in sizes.values() if static), state_bytes=state,
                      outputs=out[0, 0].numel(),
                      neurons=tuple(capture[n][0][0].numel() for n in names if capture[n]), synaptic_layers=synaptic)


@dataclass(frozen=True)
class Term:
    """One kind of allocation: its bytes, where it lives, and what it grows with."""

    name: str
    bytes: int
    on_device: bool  # on the model's device (a GPU's memory for a CUDA model), else on the host
    grows_with: frozenset[str]  # of "T", "batch", "chunk" (steps per chunk), "samples"


@dataclass(frozen=True)
class Estimate:
    """Peak bytes a run will hold, by term (see the module docstring)."""

    run: Run
    T: int
    batch: int
    samples: int | None
    device: torch.device
    terms: tuple[Term, ...]

    def total(self, on_device: bool | None = None) -> int:
        """Bytes of every term (on_device None), or of the device's or the host's terms only."""
        return sum(t.bytes for t in self.terms if on_device is None or t.on_device == on_device)


def estimate_run(run: Run, sizes: ModelSizes, T: int, batch: int, chunk: int, *, samples: int | None = None,
                 record: bool = True, early_exit: bool = False, windows: tuple[int, ...] = (0,),
                 device: torch.device = torch.device("cpu")) -> Estimate:
    """Peak bytes of `run` for T steps in batches of `batch` samples, K = `chunk` steps at a time
    (samples: N in all, None when unknown; record / early_exit: simulate()'s; windows: W of
    fit_exit_rule()). The formulas are the module docstring's."""
    B, K, N = batch, min(chunk, T), batch if samples is None else samples
    chunk_grows = frozenset({"batch", "chunk"} | ({"T"} if K == T else set()))
    s = sizes
    per_step = s.alive_bytes + (s.largest_bytes if record and run == "simulate()" else 0) + 17 * s.outputs
    terms = [Term("time chunks", K * B * per_step, True, chunk_grows),
             Term("neuron state", B * (s.state_bytes + s.static_bytes), True, frozenset({"batch"}))]
    if run == "simulate()":
        terms += _simulate_terms(s, T, record, early_exit, device.type != "cpu")
    elif run == "fit_exit_rule()":
        terms += _fit_terms(s, T, B, N, windows)
    else:
        n_all, n_max = sum(s.neurons), max(s.neurons, default=0)
        terms += [Term("captured outputs", K * B * (4 * n_all + 46 * n_max), True, chunk_grows),
                  Term("per-sample values", B * (21 * n_all + s.step_bytes), True, frozenset({"batch"}))]
    return Estimate(run, T, batch, samples, device, tuple(terms))


def _simulate_terms(s: ModelSizes, T: int, record: bool, early_exit: bool, on_gpu: bool) -> list[Term]:
    R, L, E = s.recorded * record, len(s.neurons) * record, int(early_exit)
    by_T = frozenset({"T"})
    copies = 16 * T + (8 * T * (1 + R + E) if on_gpu else 0)
    return [Term("per-step counters", 8 * T * (1 + R + 4 * E), True, by_T),
            Term("result lists", PY_FLOAT * T * (1 + L + record) + 8 * T * E, False, by_T),
            Term("conversion copies", copies, False, by_T)]


def _fit_terms(s: ModelSizes, T: int, B: int, N: int, windows: tuple[int, ...]) -> list[Term]:
    W, windowed = len(windows), any(w > 0 for w in windows)
    held = T * N * (4 * W + 8)
    last_batch = T * B * (8 * s.outputs + (8 * s.outputs if windowed else 0) + 20 + 4 * W)
    by_TN, by_TB = frozenset({"T", "samples"}), frozenset({"T", "batch"})
    work = max((36 * T * N, "fitting", by_TN), (held, "joining batches", by_TN), (last_batch, "last batch", by_TB),
               key=lambda v: v[0])
    return [Term("fixed-run records", held, False, by_TN),
            Term(f"working tensors ({work[1]})", work[0], False, work[2])]


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a run on `device`: for CUDA, torch.cuda.mem_get_info's free bytes plus what
    PyTorch has cached but not used; for the host, the least of /proc/meminfo's MemAvailable, the
    cgroup's limit minus its working set, and the physical memory (sysconf). None when unknown."""
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    known = [v for v in (_meminfo_available(), _cgroup_available(), _physical()) if v is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """limit - usage + inactive file cache of this process's cgroup (v2, else v1); None without a limit."""
    for root, limit, usage, cache in (("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
                                      ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
                                       "total_inactive_file")):
        try:
            cap = Path(root, limit).read_text().strip()
            if cap == "max" or int(cap) >= 2**60:
                return None
            used = int(Path(root, usage).read_text())
            stat = dict(line.split() for line in Path(root, "memory.stat").read_text().splitlines())
            return max(0, int(cap) - used + int(stat.get(cache, 0)))
        except (OSError, ValueError):
            continue
    return None


def _physical() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_fits(estimate: Estimate) -> Estimate:
    """`estimate` if the run fits: its host terms (all terms for a CPU model) within SAFE_FRACTION of
    the host's available memory and, for a GPU model, its device terms within SAFE_FRACTION of the
    GPU's. Otherwise ConfigError naming T, the batch size, the estimate, the memory and what to change.
    Unknown available memory is not checked."""
    cpu = estimate.device.type == "cpu"
    places = [(None, torch.device("cpu"))] if cpu else [(False, torch.device("cpu")), (True, estimate.device)]
    for on_device, where in places:
        free = available_bytes(where)
        need = estimate.total(on_device)
        if free is not None and need > SAFE_FRACTION * free:
            place = "the host" if where.type == "cpu" else str(where)
            raise ConfigError(_refusal(estimate, on_device, need, free, place))
    return estimate


def _refusal(e: Estimate, on_device: bool | None, need: int, free: int, where: str) -> str:
    terms = sorted((t for t in e.terms if on_device is None or t.on_device == on_device), key=lambda t: -t.bytes)
    parts = ", ".join(f"{t.name} {_size(t.bytes)}" for t in terms if t.bytes >= need / 100)
    share = {k: sum(t.bytes for t in terms if k in t.grows_with) / need for k in ("T", "batch", "chunk", "samples")}
    fixes = []
    if share["T"] > 0:
        per_step = share["T"] * need / e.T
        T_max = int((SAFE_FRACTION * free - (need - per_step * e.T)) // per_step)
        fixes.append(f"a smaller T (at most about {T_max} here)" if T_max >= 1 else "a smaller T")
    if share["batch"] >= 0.1:
        fixes.append(f"a smaller batch size than {e.batch} (batch_size=, --batch-size)")
    if share["chunk"] >= 0.1 and e.run != "fit_exit_rule()":
        knobs = "chunk_size= or memory_budget_mb=" if e.run == "simulate()" else "memory_budget_mb="
        fixes.append(f"fewer steps per chunk ({knobs})")
    if share["samples"] >= 0.1:
        flag = "--fit-images" if e.run == "fit_exit_rule()" else "--limit"
        fixes.append(f"fewer samples than {e.samples} ({flag})")
    return (f"{e.run}: a run of T={e.T} steps with batches of {e.batch} samples would hold about {_size(need)} "
            f"({parts}), more than {SAFE_FRACTION:.0%} of the {_size(free)} of memory available on {where}; "
            f"use {' or '.join(fixes) or 'a smaller run'}")


def _size(n: float) -> str:
    """n bytes in B, KiB, MiB, GiB or TiB, one decimal."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.1f} {units[i]}"


class RunClock:
    """Warns once when a run will take long: seconds per (step x sample) measured over the chunks after
    the first (which pays one-off costs: compilation, fan-out maps), times the step-samples still to
    run (T x N in all; early exit only shortens it). Nothing is refused on time."""

    def __init__(self, run: Run, T: int, samples: int | None, warn_after_s: float | None = None) -> None:
        self.run, self.T, self.samples = run, T, samples
        self.total = None if samples is None else T * samples
        self.warn_after_s = SLOW_RUN_S if warn_after_s is None else warn_after_s
        self.done = self.measured = 0
        self.since: float | None = None
        self.warned = False

    def chunk_done(self, steps: int, samples: int) -> float | None:
        """Count a finished chunk of `steps` steps of `samples` samples; returns the seconds left, once measured."""
        now = time.perf_counter()
        self.done += steps * samples
        if self.since is None:  # the first chunk: warm-up, not measured
            self.since = now
            return None
        self.measured += steps * samples
        if self.total is None or self.measured == 0:
            return None
        left = (now - self.since) / self.measured * max(0, self.total - self.done)
        if left > self.warn_after_s and not self.warned:
            self.warned = True
            warnings.warn(f"{self.run}: T={self.T} steps for {self.samples} samples will take about {_duration(left)} "
                          f"more (measured: {1e6 * (now - self.since) / self.measured:.3g} us per step and sample); "
                          "a smaller T or fewer samples (--limit) is quicker", stacklevel=3)
        return left


def _duration(s: float) -> str:
    if not math.isfinite(s):
        return "forever"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.0f} s"
