"""Which modules and calls are ReLU-like activations: the one matcher shared by tracing (what becomes
a neuron) and quantization (what becomes a QuantReLU).

Library modules declare their role by type: an `ActivationModule` (e.g. QuantReLU) traces as an
activation node like nn.ReLU; a `StatefulModule` (spiking neurons, spike-gated pooling) keeps state
over time steps and is traced as a leaf, never looked into.
"""
from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch import nn

from . import ops


class ActivationModule(nn.Module):
    """Base of activations other than nn.ReLU that convert like a ReLU (a clipped, quantized ReLU)."""


class StatefulModule(nn.Module):
    """Base of modules that carry state across time steps: `reset()` starts new samples,
    `keep(mask)` drops batch entries (early exit)."""

    def reset(self) -> None:
        raise NotImplementedError

    def keep(self, mask: Any) -> None:
        raise NotImplementedError


ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, ActivationModule)


def _is_zero(v: Any) -> bool:
    return isinstance(v, (int, float)) and v == 0


def clamp_is_relu(args: tuple, kwargs: dict) -> bool:
    """clamp(x, min=0) with no upper bound is a ReLU."""
    lo = kwargs.get("min", args[1] if len(args) > 1 else None)
    hi = kwargs.get("max", args[2] if len(args) > 2 else None)
    return _is_zero(lo) and hi is None


def is_activation_call(op: str, target: Any, args: tuple, kwargs: dict) -> bool:
    """True for F.relu / torch.relu (call_function), .relu() (call_method) and clamp(min=0) of either."""
    if op == "call_function":
        return target in ops.RELU_FUNCTIONS or (target in ops.CLAMP_FUNCTIONS and clamp_is_relu(args, kwargs))
    if op == "call_method":
        return target in ops.RELU_METHODS or (target in ops.CLAMP_METHODS and clamp_is_relu(args, kwargs))
    return False


def is_activation_node(node: fx.Node, gm: fx.GraphModule) -> bool:
    """True for ReLU-like fx nodes: modules of ACTIVATION_TYPES, F.relu/torch.relu, .relu(), clamp(min=0)."""
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), ACTIVATION_TYPES)
    return is_activation_call(node.op, node.target, node.args, dict(node.kwargs))
