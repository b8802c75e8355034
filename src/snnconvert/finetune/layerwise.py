"""Fast-SNN layer-wise fine-tuning of a converted SNN towards its quantized ANN.

For each hidden neuron layer l in network order, except the first (Hu et al. 2023, section 3.4):
the SNN's time-averaged inputs r_in of the layer are fed to the layer's weights in ANN mode followed
by the QANN's quantizer (alpha frozen); the forward value is replaced by the SNN layer's actual
output rate r_out (straight-through: y = q(W r_in) + (r_out - q(W r_in)).detach()); the loss is
MSE(y, a_l) with a_l the QANN's activation. Thresholds stay fixed. After each epoch the update is
kept only if the SNN's training accuracy strictly improves.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ..batches import count_batches, iter_batches, progress_bar
from ..errors import ConfigError, ModelError
from ..evaluation import accuracy
from ..graph import ACTIVATION, INPUT, LAYER, MAXPOOL, Node, Program, map_refs, trace
from ..simulation.engine import SpikingModel, check_steps

if TYPE_CHECKING:
    from tqdm import tqdm


@dataclass
class LayerFinetune:
    """What fine-tuning did to one neuron layer."""

    name: str
    mse_before: float
    mse_after: float  # with the weights finally kept
    mse_trial: float  # right after this layer's update, before the accept/reject decision
    accuracy_before: float
    accuracy_after: float
    accepted: bool


@dataclass
class FinetuneReport:
    T: int
    accuracy_before: float
    accuracy_after: float
    layers: list[LayerFinetune] = field(default_factory=list)
    seconds: float = 0.0


def layer_subgraph(program: Program, neuron: str) -> tuple[list[Node], list[str]]:
    """Nodes computing the input of `neuron` from the nearest upstream neurons or the input.

    Returns (nodes in topological order, boundary node names: neurons or the input)."""
    order = {n.name: i for i, n in enumerate(program.nodes)}
    start = program.node(neuron).args[0].name
    inside: set[str] = set()
    boundary: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        node = program.node(name)
        if node.kind in (ACTIVATION, INPUT):
            boundary.add(name)
            continue
        if name in inside:
            continue
        inside.add(name)
        stack.extend(node.refs())
    return sorted((program.node(n) for n in inside), key=lambda n: order[n.name]), sorted(boundary, key=order.get)


def _run_subgraph(program: Program, nodes: list[Node], values: dict[str, torch.Tensor]) -> torch.Tensor:
    env = dict(values)
    for node in nodes:
        args = map_refs(node.args, lambda r: env[r.name])
        kwargs = map_refs(node.kwargs, lambda r: env[r.name])
        if node.kind is MAXPOOL:
            env[node.name] = program.layers[node.target].static_forward(*args)
        else:
            env[node.name] = program.call(node, args, kwargs)
    return env[nodes[-1].name]


def _accuracy(snn: SpikingModel, data: Any, T: int, batch_size: int, bar: tqdm) -> float:
    """The SNN's accuracy after T steps; it decides whether a layer's update is kept. `bar` advances
    by one per batch."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        out = snn(x, T)
        bar.update(1)
        return out

    return accuracy(predict, data, batch_size, "fine-tuning data (labelled, to accept or reject updates)")


def _layer_mse(snn: SpikingModel, qprog: Program, data: Any, name: str, T: int, batch_size: int,
               bar: tqdm) -> float:
    err = count = 0.0
    with torch.no_grad():
        for x, _ in iter_batches(data, batch_size, "fine-tuning data"):
            target = qprog.run(x, [name], stop_after=name)[1][name]
            rate = snn.mean_values(x, T, [name])[name]
            err += ((rate - target) ** 2).sum().item()
            count += target.numel()
            bar.update(1)
    return err / max(count, 1)


def _tuned_layers(snn: SpikingModel, neurons: list[str]) -> list[tuple[str, list[Node], list[str], list[nn.Parameter]]]:
    """(neuron, its input's subgraph, the subgraph's boundary, the subgraph's parameters) of every
    hidden neuron layer but the first whose input has parameters to tune."""
    out = []
    for name in neurons[1:]:
        nodes, boundary = layer_subgraph(snn.program, name)
        params = [p for n in nodes if n.kind is LAYER for p in snn.program.layers[n.target].parameters()]
        if params:
            out.append((name, nodes, boundary, params))
    return out


def _progress(data: Any, eval_data: Any, batch_size: int, layers: int, epochs: int, enabled: bool) -> tqdm:
    """One bar over every batch fine-tuning runs: the first accuracy, then per tuned layer the MSE
    before, `epochs` training passes, the MSE after and the accuracy that accepts or rejects it."""
    train, evaluate = count_batches(data, batch_size), count_batches(eval_data, batch_size)
    total = None if train is None or evaluate is None else evaluate + layers * ((epochs + 2) * train + evaluate)
    return progress_bar("fine-tuning", total, enabled)


def _train_epoch(snn: SpikingModel, qprog: Program, name: str, nodes: list[Node], boundary: list[str],
                 quantizer: nn.Module, opt: torch.optim.Optimizer, data: Any, T: int, batch_size: int,
                 bar: tqdm) -> None:
    """One pass of straight-through updates of the layer feeding neuron `name` (module docstring);
    `bar` advances by one per batch."""
    for x, _ in iter_batches(data, batch_size, "fine-tuning data"):
        with torch.no_grad():
            target = qprog.run(x, [name], stop_after=name)[1][name]
            rates = snn.mean_values(x, T, boundary + [name])
        y = quantizer(_run_subgraph(snn.program, nodes, {b: rates[b] for b in boundary}))
        y = y + (rates[name] - y).detach()
        loss = nn.functional.mse_loss(y, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.update(1)


def _logger(log: Callable[[str], None] | None, bar: tqdm) -> Callable[[str], None]:
    """`log` (or nothing), its lines written around the bar rather than through it."""
    def say(line: str) -> None:
        if log is not None:
            with bar.external_write_mode():
                log(line)

    return say


def finetune_layerwise(snn: SpikingModel, qann: nn.Module, data: Any, *, T: int | None = None, epochs: int = 1,
                       lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 64,
                       eval_data: Any = None, force: bool = False, progress: bool = False,
                       log: Callable[[str], None] | None = None) -> tuple[SpikingModel, FinetuneReport]:
    """Return a fine-tuned copy of `snn` (converted from `qann` with method="fastsnn") and a report.

    data: labelled training data (tensor pair, Dataset or DataLoader), used for the updates;
    eval_data (default: data) decides acceptance: an epoch's update to a layer is kept only if the
    SNN's accuracy on it strictly improves (always with force=True). The first neuron layer and the
    (non-spiking) last layer are not tuned. `progress`: one bar on stderr over every batch it runs
    (layers x (epochs + 2 MSE passes) x batches, plus the accepting evaluations), with an ETA.
    """
    start = time.perf_counter()
    T = check_steps(snn.default_T if T is None else T)
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    qprog = trace(qann)
    snn.reset()  # state tensors are not part of the model and cannot be deep-copied mid-graph
    snn = copy.deepcopy(snn)
    neurons = [n.name for n in snn.program.activation_nodes()]
    if neurons != [n.name for n in qprog.activation_nodes()]:
        raise ModelError("the SNN was not converted from this quantized ANN: their activation layers differ "
                         f"({neurons} vs {[n.name for n in qprog.activation_nodes()]})")
    eval_data = data if eval_data is None else eval_data
    tuned = _tuned_layers(snn, neurons)
    bar = _progress(data, eval_data, batch_size, len(tuned), epochs, progress)
    with bar:
        bar.set_postfix_str("accuracy before", refresh=False)
        best = _accuracy(snn, eval_data, T, batch_size, bar)
        report = FinetuneReport(T=T, accuracy_before=best, accuracy_after=best)
        say = _logger(log, bar)
        for li, (name, nodes, boundary, params) in enumerate(tuned):
            where = f"layer {li + 1}/{len(tuned)} {name}"
            bar.set_postfix_str(where, refresh=False)
            for p in params:
                p.requires_grad_(True)
            quantizer = qprog.layers[qprog.node(name).target]
            mse_before = _layer_mse(snn, qprog, data, name, T, batch_size, bar)
            saved = [p.detach().clone() for p in params]
            opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
            for p in quantizer.parameters():
                p.requires_grad_(False)
            acc_before = best
            for epoch in range(epochs):
                bar.set_postfix_str(f"{where} epoch {epoch + 1}/{epochs}", refresh=False)
                _train_epoch(snn, qprog, name, nodes, boundary, quantizer, opt, data, T, batch_size, bar)
            bar.set_postfix_str(f"{where} accept?", refresh=False)
            mse_trial = _layer_mse(snn, qprog, data, name, T, batch_size, bar)
            acc = _accuracy(snn, eval_data, T, batch_size, bar)
            accepted = force or acc > best
            if accepted:
                best = acc
            else:
                with torch.no_grad():
                    for p, s in zip(params, saved):
                        p.copy_(s)
            mse_after = mse_trial if accepted else mse_before
            report.layers.append(LayerFinetune(name, mse_before, mse_after, mse_trial, acc_before, acc, accepted))
            say(f"{name}: MSE {mse_before:.5f} -> {mse_trial:.5f}, accuracy {100 * acc_before:.2f}% -> "
                f"{100 * acc:.2f}% ({'kept' if accepted else 'rejected'})")
    for p in snn.parameters():
        p.requires_grad_(False)
    report.accuracy_after = best
    report.seconds = time.perf_counter() - start
    snn.method["finetuned"] = True
    return snn, report
