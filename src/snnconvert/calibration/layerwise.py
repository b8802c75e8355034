"""Layer-wise calibration of a converted network for a target number of time steps
(Li, Deng, Dong, Gong, Gu, ICML 2021, "A Free Lunch From ANN": bias and potential calibration).

Layer by layer in network order, every earlier layer already calibrated and spiking, on the
calibration data: the per-channel mean of the ANN activation a_l and of the SNN's mean output over
T steps m_l(T) differ by a systematic error e_c = E[a_l - m_l(T)] (quantisation, clipping, the
start-up of deeper layers); e_c is added to the bias of the synaptic layer that feeds the neurons
(through a residual addition, to the branch's own conv), which shifts the neurons' input, and so
their mean output, by e_c. (Where the shift moves many neurons across zero, the mean output does
not follow it one for one; with potential calibration the error is measured again, and a bias
change that raised it is undone.) Potential calibration then measures the error that is left, r_c, and
adds r_c * T to the neurons' initial potential V(0) (a charge of r_c T shifts the spike count over T
steps by r_c T / theta, the mean output by r_c): it also reaches layers with no bias of their own to
correct, and acts on the first steps, where the bias alone is slow. Optionally, before the bias
step of each layer, weight calibration (calibration.weights) tunes the weights of the layer that
feeds the neurons. Thresholds and the ANN stay as they are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..batches import count_batches, iter_batches, progress_bar
from ..graph import LAYER, Node, Program, Ref, is_addition
from ..simulation import SpikingModel
from .statistics import run_checked
from .weights import WeightCalibration, calibrate_weights

if TYPE_CHECKING:
    from tqdm import tqdm


def channel_totals(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of x [N, C, ...] over every dimension but the channel one, shaped to broadcast against one
    sample ([C, 1, ...]; [1] for x [N]), in float64, and how many values each channel summed."""
    if x.dim() < 2:
        return x.double().sum().reshape(1), x.numel()
    return x.double().sum(dim=[0, *range(2, x.dim())]).reshape(-1, *([1] * (x.dim() - 2))), x.numel() // x.shape[1]


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
        if is_addition(producer):
            for arg in producer.args:
                found = find(arg)
                if found is not None:
                    return found
        return None

    return find(node.args[0]) if node.args else None


def ann_channel_means(reference: Program, data: Any, names: list[str], batch_size: int,
                      bar: tqdm | None = None) -> dict[str, torch.Tensor]:
    """Per-channel mean of every named activation of the ANN over the data (shaped as channel_totals);
    `bar` (a progress bar) advances by one per batch."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    with torch.no_grad():
        for x, _ in iter_batches(data, batch_size, "calibration data"):
            _, cap = run_checked(reference, x, names)
            for n in names:
                s, c = channel_totals(cap[n])
                sums[n], counts[n] = sums.get(n, 0) + s, counts.get(n, 0) + c
            if bar is not None:
                bar.update(1)
    return {n: sums[n] / counts[n] for n in names}


def snn_channel_mean(snn: SpikingModel, data: Any, name: str, steps: int, batch_size: int,
                     bar: tqdm | None = None) -> torch.Tensor:
    """Per-channel mean over the data of the neuron layer's mean output over `steps` steps; `bar`
    (a progress bar) advances by one per batch."""
    total, count = None, 0
    with torch.no_grad():
        for x, _ in iter_batches(data, batch_size, "calibration data"):
            taps: dict[str, torch.Tensor | None] = {name: None}
            x = x.to(snn.device)
            for _ in snn.run(x, steps, stop_after=name, taps=taps):
                pass
            s, c = channel_totals(taps[name] / steps)
            total, count = (s if total is None else total + s), count + c
            if bar is not None:
                bar.update(1)
    return total / count


def calibrate_layerwise(snn: SpikingModel, reference: Program, data: Any, steps: int, batch_size: int = 256,
                        potential: bool = True, progress: bool = False,
                        weights: WeightCalibration | None = None) -> dict[str, dict[str, Any]]:
    """Bias calibration, then (with `potential`) potential calibration, layer by layer in place
    (module docstring); with `weights`, each layer's feeding weights are first tuned for `steps`
    (calibration.weights). `reference` is the traced ANN (its node names are the SNN's). Returns, per
    neuron layer, the corrections made (mean absolute bias correction, the error left after it,
    the mean absolute V(0) offset, the weight calibration's report) or why the bias was left alone.
    `progress`: a bar on stderr over the passes x batches (one ANN pass; per layer one SNN pass, two
    with `potential`, and one more with `weights`)."""
    nodes = snn.program.activation_nodes()
    names = [n.name for n in nodes]
    batches = count_batches(data, batch_size)
    passes = 1 + len(nodes) * (2 if potential else 1)
    if weights is not None:  # one pass per layer over at most weights.samples samples
        w_batches = batches if batches is None else min(batches, -(-weights.samples // batch_size))
        passes_w = 0 if w_batches is None else w_batches * len(nodes)
    else:
        w_batches, passes_w = None, 0
    bar = progress_bar("layer-wise calibration", None if batches is None else batches * passes + passes_w, progress)
    with bar:
        target = ann_channel_means(reference, data, names, batch_size, bar)
        report: dict[str, dict[str, Any]] = {}
        snn.eval()
        for li, node in enumerate(nodes):
            bar.set_postfix_str(f"layer {li + 1}/{len(nodes)} {node.name}", refresh=False)
            entry: dict[str, Any] = {}
            layer = feeding_layer(snn.program, node)
            if weights is not None:
                if layer is not None:
                    entry["weights"] = calibrate_weights(snn, reference, node, layer, data, steps, weights, batch_size,
                                                         bar)
                elif w_batches is not None:
                    bar.update(w_batches)  # the pass counted in the total that this layer does not run
            error = target[node.name] - snn_channel_mean(snn, data, node.name, steps, batch_size, bar)
            second_pass = False
            entry["error_before"] = float(error.abs().mean())
            if layer is None:
                entry["bias"] = "unchanged: no conv/linear layer feeds these neurons alone"
            elif layer.bias is not None and error.numel() != layer.bias.numel():
                entry["bias"] = f"unchanged: {error.numel()} channels but {layer.bias.numel()} biases"
            else:
                with torch.no_grad():
                    if layer.bias is None:
                        n = layer.out_channels if hasattr(layer, "out_channels") else layer.out_features
                        layer.bias = nn.Parameter(torch.zeros(n, device=snn.device), requires_grad=False)
                    correction = error.flatten().to(layer.bias)
                    layer.bias += correction
                entry["bias_mean_abs_correction"] = float(error.abs().mean())
                if potential:
                    after = target[node.name] - snn_channel_mean(snn, data, node.name, steps, batch_size, bar)
                    second_pass = True
                    if after.abs().mean() > error.abs().mean():  # the shift moved neurons across zero: undo it
                        with torch.no_grad():
                            layer.bias -= correction
                        entry["bias"] = (f"reverted: it raised the mean |error| to {float(after.abs().mean()):.4g}"
                                         " (the shift changed which neurons fire)")
                        entry["error_after_reverted_bias"] = float(after.abs().mean())
                    else:
                        error = after
            if potential and not second_pass and batches is not None:
                bar.update(batches)  # the pass counted in the total that a layer left alone does not run
            if potential:
                neuron = snn.program.layers[node.target]
                offset = (error * steps).float()  # per channel, broadcast against one sample
                old = neuron.v_offset
                neuron.set_initial_offset(offset.to(neuron.threshold.device) if old is None else old + offset.to(old))
                entry["error_after_bias"] = float(error.abs().mean())
                entry["v0_offset_mean_abs"] = float((error * steps).abs().mean())
            report[node.name] = entry
    return report
