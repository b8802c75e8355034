"""Layer-wise bias calibration of a converted network for a target number of time steps
(Li, Deng, Dong, Gong, Gu, ICML 2021, "A Free Lunch From ANN", bias calibration).

Layer by layer in network order, every earlier layer already calibrated and spiking, on the
calibration data: the per-channel mean of the ANN activation a_l and of the SNN's mean output over
T steps m_l(T) differ by a systematic error e_c = E[a_l - m_l(T)] (quantisation, clipping, the
start-up of deeper layers); e_c is added to the bias of the synaptic layer that feeds the neurons
(through a residual addition, to the branch's own conv), which shifts the neurons' input, and so
their mean output, by e_c. Only biases change; the thresholds and the ANN stay as they are.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..batches import iter_batches
from ..graph import FUNCTION, LAYER, METHOD, Node, Program, Ref
from ..simulation import SpikingModel
from .statistics import run_checked

_ADDS = {(FUNCTION, "add"), (FUNCTION, "iadd"), (FUNCTION, "torch.add"), (METHOD, "add")}


def channel_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of x [N, C, ...] over every dimension but the channel one: [C] (float64)."""
    return x.double().sum(dim=[0, *range(2, x.dim())]) if x.dim() > 1 else x.double().sum().reshape(1)


def feeding_layer(program: Program, node: Node) -> nn.Module | None:
    """The conv/linear layer whose bias shifts `node`'s input one for one: its direct producer, or
    through residual additions the first addend that is such a layer; None when there is none or
    its output is used elsewhere too (changing its bias would shift other values)."""
    uses: dict[str, int] = {}
    for n in program.nodes:
        for r in n.refs():
            uses[r] = uses.get(r, 0) + 1

    def find(ref: Any) -> nn.Module | None:
        if not isinstance(ref, Ref) or uses.get(ref.name, 0) != 1:
            return None
        producer = program.node(ref.name)
        if producer.kind is LAYER:
            layer = program.layers[producer.target]
            return layer if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) else None
        if (producer.kind, producer.target) in _ADDS:
            for arg in producer.args:
                found = find(arg)
                if found is not None:
                    return found
        return None

    return find(node.args[0]) if node.args else None


def ann_channel_means(reference: Program, data: Any, names: list[str], batch_size: int) -> dict[str, torch.Tensor]:
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    with torch.no_grad():
        for x, _ in iter_batches(data, batch_size, "calibration data"):
            _, cap = run_checked(reference, x, names)
            for n in names:
                sums[n] = sums.get(n, 0) + channel_sum(cap[n])
                counts[n] = counts.get(n, 0) + cap[n].numel() // (cap[n].shape[1] if cap[n].dim() > 1 else 1)
    return {n: sums[n] / counts[n] for n in names}


def snn_channel_mean(snn: SpikingModel, data: Any, name: str, steps: int, batch_size: int) -> torch.Tensor:
    """Per-channel mean over the data of the neuron layer's mean output over `steps` steps."""
    total, count = None, 0
    with torch.no_grad():
        for x, _ in iter_batches(data, batch_size, "calibration data"):
            taps: dict[str, torch.Tensor | None] = {name: None}
            x = x.to(snn.device)
            for _ in snn.run(x, steps, stop_after=name, taps=taps):
                pass
            v = taps[name] / steps
            s = channel_sum(v)
            total = s if total is None else total + s
            count += v.numel() // (v.shape[1] if v.dim() > 1 else 1)
    return total / count


def calibrate_bias(snn: SpikingModel, reference: Program, data: Any, steps: int, batch_size: int = 256,
                   progress: bool = False) -> dict[str, dict[str, Any]]:
    """Bias calibration in place (module docstring). `reference` is the traced ANN (its node names
    are the SNN's). Returns, per neuron layer, the mean absolute correction added to the feeding
    layer's bias, or why the layer was left alone."""
    nodes = snn.program.activation_nodes()
    names = [n.name for n in nodes]
    target = ann_channel_means(reference, data, names, batch_size)
    report: dict[str, dict[str, Any]] = {}
    snn.eval()
    for node in tqdm(nodes, desc="bias calibration", disable=not progress):
        layer = feeding_layer(snn.program, node)
        if layer is None:
            report[node.name] = {"changed": False, "why": "no conv/linear layer feeds it alone"}
            continue
        error = (target[node.name] - snn_channel_mean(snn, data, node.name, steps, batch_size))
        with torch.no_grad():
            if layer.bias is None:
                layer.bias = nn.Parameter(torch.zeros(layer.out_channels if hasattr(layer, "out_channels")
                                                      else layer.out_features, device=snn.device),
                                          requires_grad=False)
            if error.numel() != layer.bias.numel():
                report[node.name] = {"changed": False, "why": f"{error.numel()} channels, {layer.bias.numel()} biases"}
                continue
            layer.bias += error.to(layer.bias)
        report[node.name] = {"changed": True, "mean_abs_correction": float(error.abs().mean()),
                             "max_abs_correction": float(error.abs().max())}
    return report
