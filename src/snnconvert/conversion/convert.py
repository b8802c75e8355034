"""convert(): ANN (or quantized ANN) + calibration data -> SpikingModel."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..calibration import calibrate
from ..calibration.layerwise import calibrate_layerwise
from ..calibration.weights import WeightCalibration
from ..errors import CalibrationError
from ..graph import MAXPOOL, ClippedReLU, Program, trace
from ..methods import Method, resolve_method
from ..neurons import SpikingMaxPool, SpikingNeuron
from ..simulation import SpikingModel


def convert(model: nn.Module, calibration_data: Any = None, method: str | Method = "rmp", *,
            leaf_modules: tuple[type[nn.Module], ...] = (), batch_size: int = 256, progress: bool = False,
            **overrides: Any) -> SpikingModel:
    """Convert a ReLU network into a spiking one; the input model is not modified.

    method: "baseline" | "rmp" | "snm" | "fastsnn" (a preset), overridable field by field:
    neuron=, threshold= (rule name, rule object or a number), percentile=, granularity=,
    scale=, v_init=, calibration_steps= (rmp), target_T= (calibrate the biases layer by layer for runs
    of that many steps; the "calibrated" preset does it for T = 16 by default), potential= (also the
    initial potentials; default yes), weight_calibration= (first tune each layer's weights for
    target_T; off by default, slower). calibration_data: a tensor [N, ...], (x, y), a
    Dataset or a DataLoader; not needed for fastsnn (thresholds are learned) or a fixed threshold.
    Every ReLU becomes a neuron, a clipped ReLU (ReLU6, Hardtanh(0, a), clamp(x, 0, a)) one whose
    threshold is capped at a (threshold_cap); other activations (SiLU, GELU, ...) are refused by name.
    The last layer does not spike (it accumulates); max pooling becomes spike-gated max pooling;
    dropout and identity are removed; batch norm is folded into the conv/linear before it, or (after a
    concatenation, say) kept as a per-channel affine layer.
    """
    m = resolve_method(method, **overrides)
    program = trace(model, leaf_modules)
    if m.rule.needs_data and calibration_data is None:
        raise CalibrationError(f"method {m.name!r} with rule '{m.rule.describe()}' needs calibration_data "
                               "(a tensor of inputs, a Dataset or a DataLoader)")
    if m.target_T is not None and calibration_data is None:
        raise CalibrationError(f"target_T={m.target_T} calibrates the converted network on data: pass "
                               "calibration_data (a tensor of inputs, a Dataset or a DataLoader)")
    default_T = m.target_T or m.rule.default_steps(program)
    calib = calibrate(program, calibration_data, m.rule, m.granularity, m.scale, batch_size,
                      build_spiking=lambda thresholds: build_spiking(program, thresholds, m, default_T),
                      progress=progress)
    snn = build_spiking(program, calib.thresholds, m, default_T)
    snn.method.update(calibration_samples=calib.samples)
    if m.target_T is not None:
        reference = trace(model, leaf_modules)  # the ANN, untouched: what each layer should output
        snn.method["layerwise_calibration"] = calibrate_layerwise(snn, reference, calibration_data, m.target_T,
                                                                  batch_size, potential=m.potential, progress=progress,
                                                                  weights=WeightCalibration() if m.weight_calibration
                                                                  else None)
    for p in snn.parameters():  # an inference artefact: no autograd graph through T steps
        p.requires_grad_(False)
    return snn.eval()


def threshold_cap(activation: nn.Module) -> float | None:
    """The cap on the threshold of the neuron that replaces `activation`: a ClippedReLU's clip a (ReLU6:
    6), an existing neuron's own cap, None for a ReLU or QuantReLU.

    theta = min(scale * statistic, a) for every rule and granularity (elementwise for channel- and
    neuron-wise thresholds). Exact for the clip: the neuron's rate output saturates at theta, so with
    theta = a it is min(relu(x), a); a rule's threshold below a (the max over data that never reached a)
    is kept, as for a ReLU; one above a (bn_stats, fixed, layer input max, scale > 1) would pass values
    the ANN clips, and becomes a."""
    if isinstance(activation, ClippedReLU):
        return activation.cap
    if isinstance(activation, SpikingNeuron):
        return activation.threshold_cap
    return None


def build_spiking(program: Program, thresholds: dict[str, torch.Tensor], m: Method,
                  default_T: int | None) -> SpikingModel:
    """Replace `program`'s activations (in place) by neurons of `m` with the given thresholds, and its
    max pools by spike-gated pools; wrap it in a SpikingModel. A clipped ReLU's neuron (or the neuron
    that already replaced it) keeps its threshold <= the clip (`threshold_cap`)."""
    for node in program.activation_nodes():
        cap = threshold_cap(program.layers[node.target])
        neuron = m.make_neuron(thresholds[node.name])
        neuron.set_threshold_cap(cap)
        program.layers[node.target] = neuron
    for node in program.nodes:
        if node.kind is MAXPOOL and not isinstance(program.layers[node.target], SpikingMaxPool):
            program.layers[node.target] = SpikingMaxPool(program.layers[node.target])
    return SpikingModel(program, m.to_dict(), default_T, m.config())
