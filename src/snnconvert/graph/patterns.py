"""Which modules and calls are ReLU-like activations: the one matcher shared by tracing (what becomes
a neuron) and quantization (what becomes a QuantReLU).

ReLU-like means min(max(x, 0), a) with a = inf (a ReLU) or a finite a > 0 (a clipped ReLU: ReLU6,
Hardtanh(0, a), clamp(x, 0, a)); `activation_cap` gives a. Every other elementwise activation is named
by `non_relu_activation`, so tracing can refuse it by name. Library modules declare their role by type:
an `ActivationModule` (e.g. QuantReLU, ClippedReLU) traces as an activation node like nn.ReLU; a
`StatefulModule` (spiking neurons, spike-gated pooling) keeps state over time steps and is traced as a
leaf, never looked into.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from . import ops


class ActivationModule(nn.Module):
    """Base of activations other than nn.ReLU that convert like a ReLU (a clipped, quantized ReLU)."""


class ClippedReLU(ActivationModule):
    """min(max(x, 0), cap): what nn.ReLU6 (cap 6), nn.Hardtanh(0, cap), F.relu6, F.hardtanh(x, 0, cap) and
    clamp(x, 0, cap) trace to. Converted, it is a neuron whose threshold is capped at `cap`: an IF
    neuron's rate output theta * (spikes / T) saturates at theta <= cap, as the clip does."""

    def __init__(self, cap: float) -> None:
        super().__init__()
        cap = float(cap)
        if not (math.isfinite(cap) and cap > 0):
            raise ValueError(f"a clipped ReLU needs a finite cap > 0, got {cap!r}")
        self.cap = cap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, self.cap)

    def extra_repr(self) -> str:
        return f"cap={self.cap:g}"


class StatefulModule(nn.Module):
    """Base of modules that carry state across time steps: `reset()` starts new samples,
    `keep(mask)` drops batch entries (early exit)."""

    def reset(self) -> None:
        raise NotImplementedError

    def keep(self, mask: Any) -> None:
        raise NotImplementedError


ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, ActivationModule)

_NOT = object()  # "not a ReLU-like call"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bounds(args: tuple, kwargs: dict, names: tuple[str, str], defaults: tuple[Any, Any]) -> tuple[Any, Any]:
    lo = kwargs.get(names[0], args[1] if len(args) > 1 else defaults[0])
    hi = kwargs.get(names[1], args[2] if len(args) > 2 else defaults[1])
    return lo, hi


def _clip(lo: Any, hi: Any) -> Any:
    """The cap of min(max(x, lo), hi) if it is ReLU-like (lo == 0; hi None, or a number > 0), else _NOT."""
    if not (_number(lo) and lo == 0):
        return _NOT
    if hi is None:
        return None
    if _number(hi) and math.isfinite(hi) and hi > 0:
        return float(hi)
    if _number(hi) and hi == math.inf:
        return None
    return _NOT


def _call_cap(op: str, target: Any, args: tuple, kwargs: dict) -> Any:
    """The cap of a ReLU-like call (None: a plain ReLU), or _NOT."""
    if op == "call_function":
        if target in ops.RELU_FUNCTIONS:
            return None
        if target in ops.RELU6_FUNCTIONS:
            return 6.0
        if target in ops.HARDTANH_FUNCTIONS:
            return _clip(*_bounds(args, kwargs, ("min_val", "max_val"), (-1.0, 1.0)))
        if target in ops.CLAMP_FUNCTIONS:
            if target is torch.clamp_min:
                return _clip(kwargs.get("min", args[1] if len(args) > 1 else None), None)
            return _clip(*_bounds(args, kwargs, ("min", "max"), (None, None)))
    elif op == "call_method":
        if target in ops.RELU_METHODS:
            return None
        if target in ops.CLAMP_METHODS:
            if target.startswith("clamp_min"):
                return _clip(kwargs.get("min", args[1] if len(args) > 1 else None), None)
            return _clip(*_bounds(args, kwargs, ("min", "max"), (None, None)))
    return _NOT


def _module_cap(m: nn.Module) -> Any:
    if isinstance(m, ClippedReLU):
        return m.cap
    if isinstance(m, ACTIVATION_TYPES):
        return None
    if isinstance(m, ops.HARDTANH_TYPES):
        return _clip(m.min_val, m.max_val)
    return _NOT


def is_activation_call(op: str, target: Any, args: tuple, kwargs: dict) -> bool:
    """True for F.relu / torch.relu (call_function), .relu() (call_method), F.relu6, F.hardtanh(x, 0, a)
    and clamp(min=0[, max=a > 0]) of either."""
    return _call_cap(op, target, args, kwargs) is not _NOT


def is_activation_node(node: fx.Node, gm: fx.GraphModule) -> bool:
    """True for ReLU-like fx nodes: modules of ACTIVATION_TYPES, nn.ReLU6 / nn.Hardtanh(0, a), and the
    ReLU-like calls of is_activation_call."""
    if node.op == "call_module":
        return _module_cap(gm.get_submodule(node.target)) is not _NOT
    return is_activation_call(node.op, node.target, node.args, dict(node.kwargs))


def activation_cap(node: fx.Node, gm: fx.GraphModule) -> float | None:
    """For a ReLU-like node: its clip a (ReLU6: 6.0), None for a plain ReLU or a QuantReLU (which clips at
    its own learned alpha)."""
    if node.op == "call_module":
        cap = _module_cap(gm.get_submodule(node.target))
    else:
        cap = _call_cap(node.op, node.target, node.args, dict(node.kwargs))
    if cap is _NOT:
        raise ValueError(f"node {node.name!r} is not a ReLU-like activation")
    return cap


def non_relu_activation(node: fx.Node, gm: fx.GraphModule) -> str | None:
    """A short name of the activation if `node` is an elementwise activation that is not ReLU-like
    (nn.SiLU, F.gelu, .sigmoid(), nn.Hardtanh(-1, 1), clamp(x, -1, 1), ...), else None."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, ops.OTHER_ACTIVATION_TYPES):
            return type(m).__name__
        if isinstance(m, ops.HARDTANH_TYPES) and _module_cap(m) is _NOT:
            return f"{type(m).__name__}(min_val={m.min_val:g}, max_val={m.max_val:g})"
        return None
    if node.op == "call_function":
        if node.target in ops.OTHER_ACTIVATION_FUNCTIONS:
            return ops.OTHER_ACTIVATION_FUNCTIONS[node.target]
        if node.target in ops.HARDTANH_FUNCTIONS + ops.CLAMP_FUNCTIONS and not is_activation_node(node, gm):
            return _show_call(f"{node.target.__name__}", node)
        return None
    if node.op == "call_method":
        if node.target in ops.OTHER_ACTIVATION_METHODS:
            return f".{node.target}()"
        if node.target in ops.CLAMP_METHODS and not is_activation_node(node, gm):
            return _show_call(f".{node.target}", node)
    return None


def _show_call(name: str, node: fx.Node) -> str:
    shown = [repr(a) if not isinstance(a, fx.Node) else "tensor" for a in node.args[1:]]
    shown += [f"{k}={v!r}" if not isinstance(v, fx.Node) else f"{k}=tensor" for k, v in node.kwargs.items()
              if k != "inplace"]
    return f"{name}({', '.join(['x'] + shown)})"
