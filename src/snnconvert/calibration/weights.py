"""Weight calibration of one neuron layer for a target number of time steps (Li, Deng, Dong, Gong,
Gu, ICML 2021, "A Free Lunch From ANN", advanced calibration).

Between the spiking layers before a neuron layer (its *frontier*: neurons, spike-gated pools or the
network input) and the neuron's input there are only linear operations (conv, linear, folded batch
norm, pooling, additions, reshapes), so the neuron's input averaged over T steps is the *segment*
of the network between them applied to the frontier's time averages. For a constant input z per
step, a soft-reset IF neuron with V(0) = V0 emits clamp(floor((T z + V0) / theta), 0, T) spikes
(exactly when z <= theta and -theta <= V0 < theta, where one spike per step always suffices), so its
mean output is

    q(z) = theta / T * clamp(floor((T z + V0) / theta), 0, T).

With the frontier's averages cached from the spiking network (every earlier layer already
calibrated and spiking), the weight of the conv/linear layer that feeds the neurons is tuned by a
few hundred Adam steps on E[(q(z) - a)^2], a the ANN's activation on the same images, the
gradient passed through the floor (straight-through). The learning rate is relative to the mean
|weight|, so it needs no tuning per network. The error on all cached samples is measured a few
times along the way and the best weight seen is kept; when none beats the original (a straight-
through gradient is biased), the original weight stays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..batches import iter_batches
from ..errors import ConfigError
from ..graph import INPUT, Node, Program, map_refs
from ..neurons import Negative, Reset
from ..simulation import SpikingModel
from .search import quantised_rate
from .statistics import run_checked

if TYPE_CHECKING:
    from tqdm import tqdm


CHECKS = 10  # times per layer the surrogate error on all cached samples is measured to keep the best weight


@dataclass(frozen=True)
class WeightCalibration:
    """Settings of the weight calibration: Adam steps per layer, samples per step, the learning
    rate as a fraction of the layer's mean |weight|, and how many calibration images are cached
    (the first `samples` of the calibration data)."""

    steps: int = 300
    batch: int = 64
    relative_lr: float = 2e-3
    samples: int = 1024


def segment(snn: SpikingModel, node: Node) -> tuple[list[str], list[Node]]:
    """(frontier, body) of the neuron node: the spiking nodes (or the input) whose time averages
    determine the neuron's mean input, and the nodes between them and the neuron, in order."""
    stateful = {n.name for n in snn.program.nodes if n.name in snn._stateful or n.kind is INPUT}
    src = node.args[0].name
    needed = snn.needed_for([src], frozenset(stateful))
    frontier = [n.name for n in snn.program.nodes if n.name in needed and n.name in stateful]
    body = [n for n in snn.program.nodes if n.name in needed and n.name not in stateful]
    return frontier, body


def run_segment(program: Program, body: list[Node], values: dict[str, torch.Tensor]) -> torch.Tensor:
    """Evaluate the body nodes on the frontier values; returns the last body node's value."""
    env = dict(values)
    out = None
    for n in body:
        args = map_refs(n.args, lambda r: env[r.name])
        kwargs = map_refs(n.kwargs, lambda r: env[r.name])
        out = env[n.name] = program.call(n, args, kwargs)
    return out


def cache_layer(snn: SpikingModel, reference: Program, data: Any, frontier: list[str], name: str, steps: int,
                batch_size: int, limit: int, bar: tqdm | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """On the first `limit` samples, in one pass (so that each sample's rows match, however the data
    is ordered): the time averages over `steps` steps of the frontier nodes, and the ANN's
    activation at `name`; on the CPU. `bar` advances by one per batch."""
    out: dict[str, list[torch.Tensor]] = {f: [] for f in frontier}
    targets: list[torch.Tensor] = []
    last = max(frontier, key=[n.name for n in snn.program.nodes].index)
    seen = 0
    with torch.no_grad():
        for x, _ in iter_batches(data, batch_size, "calibration data"):
            x = x[: limit - seen]
            taps: dict[str, torch.Tensor | None] = {f: None for f in frontier}
            for _ in snn.run(x.to(snn.device), steps, stop_after=last, taps=taps):
                pass
            for f in frontier:
                out[f].append((taps[f] / steps).cpu())
            targets.append(run_checked(reference, x, [name])[1][name].cpu())
            seen += len(x)
            if bar is not None:
                bar.update(1)
            if seen >= limit:
                break
    return {f: torch.cat(v) for f, v in out.items()}, torch.cat(targets)


def rate_surrogate(z: torch.Tensor, theta: torch.Tensor, v0: torch.Tensor, steps: int) -> torch.Tensor:
    """q(z) of the module docstring (search.quantised_rate with V(0) = v0, in the input's units) in
    the forward pass; the gradient of its unfloored, clamped line theta/T clamp((T z + v0)/theta, 0, T)."""
    line = theta / steps * torch.clamp((z * steps + v0) / theta, 0, steps)
    return line + (quantised_rate(z, theta, steps, v0 / theta) - line).detach()


def calibrate_weights(snn: SpikingModel, reference: Program, node: Node, layer: nn.Module, data: Any, steps: int,
                      settings: WeightCalibration, batch_size: int, bar: tqdm | None = None) -> dict[str, Any]:
    """Tune `layer.weight` (the layer feeding `node`'s neurons) in place (module docstring);
    returns what was done: the surrogate loss before and after, and the measured error before
    and after (and whether the new weight was kept)."""
    neuron = snn.program.layers[node.target]
    if neuron.reset_mode is not Reset.SOFT or neuron.negative is not Negative.NONE:
        raise ConfigError(f"weight calibration models soft-reset IF neurons without negative spikes; layer "
                          f"{node.name!r} has {type(neuron).__name__} neurons (use method 'calibrated' or 'rmp')")
    frontier, body = segment(snn, node)
    limit = settings.samples
    cache, target = cache_layer(snn, reference, data, frontier, node.name, steps, batch_size, limit, bar)
    theta = neuron.threshold.detach()
    v0 = neuron.v_init * theta + (0 if neuron.v_offset is None else neuron.v_offset)
    n = len(target)
    device = snn.device

    def surrogate_loss(idx: torch.Tensor) -> torch.Tensor:
        vals = {f: v[idx].to(device) for f, v in cache.items()}
        q = rate_surrogate(run_segment(snn.program, body, vals), theta, v0, steps)
        return ((q - target[idx].to(device)) ** 2).mean()

    def full(fn) -> float:
        with torch.no_grad():
            chunks = [torch.arange(i, min(n, i + 256)) for i in range(0, n, 256)]
            return sum(float(fn(c)) * len(c) for c in chunks) / n

    before_surrogate = full(surrogate_loss)
    original = layer.weight.detach().clone()
    best, best_loss = original, before_surrogate
    weight = layer.weight
    was = weight.requires_grad
    weight.requires_grad_(True)
    lr = settings.relative_lr * float(original.abs().mean())
    opt = torch.optim.Adam([weight], lr=lr)
    gen = torch.Generator().manual_seed(0)
    check = max(1, settings.steps // CHECKS)
    for k in range(settings.steps):
        for g in opt.param_groups:  # cosine annealing to 0
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * k / settings.steps))
        idx = torch.randperm(n, generator=gen)[: settings.batch]
        opt.zero_grad(set_to_none=True)
        surrogate_loss(idx).backward()
        opt.step()
        if (k + 1) % check == 0 or k + 1 == settings.steps:  # keep the best weight seen on all cached samples
            loss = full(surrogate_loss)
            if loss < best_loss:
                best, best_loss = weight.detach().clone(), loss
    weight.requires_grad_(was)
    weight.grad = None
    with torch.no_grad():
        weight.copy_(best)
    kept = best_loss < before_surrogate
    return {"surrogate_mse_before": before_surrogate, "surrogate_mse_after": best_loss, "kept": kept,
            "mean_abs_weight_change": float((best - original).abs().mean())}
