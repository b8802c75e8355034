"""quantize(): a copy of a ReLU network whose hidden activations are b-bit QuantReLUs (Fast-SNN QANN)."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..calibration import Granularity, Percentile, activation_statistics
from ..errors import ConfigError
from ..graph import activation_cap, fx_trace, is_activation_node, trace
from .quantizer import QuantReLU, check_bits


def quantize(model: nn.Module, bits: int, calibration_data: Any = None, percentile: float = 99.9,
             default_alpha: float = 6.0, batch_size: int = 256) -> nn.Module:
    """Return a trainable copy of `model` (a torch.fx GraphModule keeping the original parameter
    names) with every ReLU-like activation replaced by QuantReLU(bits): a = alpha * round(clamp(z /
    alpha, 0, 1) (2^b - 1)) / (2^b - 1), one learnable alpha per activation. The input and the last
    layer (which has no activation) stay unquantized. alpha starts at the `percentile` of the
    activation's positive values on `calibration_data` when given, else at `default_alpha`; for a
    clipped ReLU (ReLU6, Hardtanh(0, a), clamp(x, 0, a)) at most a.
    Activations that are already QuantReLU get the new bit width and keep their alpha.
    """
    check_bits(bits)
    alphas: dict[str, float] = {}
    if calibration_data is not None:
        program = trace(model)
        q = Percentile(percentile).q  # checks 0 < q <= 100
        stats, _ = activation_statistics(program, calibration_data, Granularity.LAYER, q, batch_size)
        alphas = {k: float(v) for k, v in stats.items()}
    was_training = model.training
    gm = fx_trace(copy.deepcopy(model))
    count = 0
    for node in list(gm.graph.nodes):
        if not is_activation_node(node, gm):
            continue
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), QuantReLU):
            gm.get_submodule(node.target).set_bits(bits)
            count += 1
            continue
        alpha = alphas.get(node.name, default_alpha)
        alpha = alpha if alpha > 0 else default_alpha
        cap = activation_cap(node, gm)  # a clipped ReLU (ReLU6): alpha starts inside its clip
        name = f"quant_{node.name}"
        gm.add_submodule(name, QuantReLU(bits, alpha if cap is None else min(alpha, cap)))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        count += 1
    if count == 0:
        raise ConfigError("the model has no ReLU activation to quantize")
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.train(was_training)
    return gm


def set_bits(model: nn.Module, bits: int) -> nn.Module:
    """Change the bit width of every QuantReLU in `model` in place (progressive training); returns it."""
    found = [m for m in model.modules() if isinstance(m, QuantReLU)]
    if not found:
        raise ConfigError("the model has no QuantReLU: quantize it first with snnconvert.quantize(model, bits)")
    for m in found:
        m.set_bits(bits)
    return model


def quantized_bits(model: nn.Module) -> int | None:
    """The (largest) activation bit width of a quantized model, None for a float model."""
    bits = [m.bits for m in model.modules() if isinstance(m, QuantReLU)]
    return max(bits) if bits else None


def alphas(model: nn.Module) -> dict[str, torch.Tensor]:
    """Learned clipping values by module name."""
    return {n: m.alpha.detach().clone() for n, m in model.named_modules() if isinstance(m, QuantReLU)}
