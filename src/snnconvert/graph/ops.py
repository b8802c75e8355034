"""The table of operations a model may contain, and how each is classified.

One table serves tracing (what is allowed), the error message (what is supported) and loading a
saved model (which names map to which callables): nothing outside it is ever called.
"""
from __future__ import annotations

import builtins
import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

# Stateless layers that act on each batch element independently: they run unchanged on a batch
# into which time has been folded ([K*N, ...]).
LAYER_TYPES: dict[str, type[nn.Module]] = {
    t.__name__: t
    for t in (
        nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
        nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
        nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
        nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
        nn.Flatten, nn.Unflatten, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
        nn.ZeroPad2d, nn.ConstantPad2d, nn.PixelShuffle, nn.PixelUnshuffle,
    )
}
# Layers whose every output is a weighted sum of inputs: they count synaptic operations.
SYNAPTIC_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                  nn.ConvTranspose3d, nn.Linear)
# Removed at conversion (identity at inference).
REMOVED_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
MAXPOOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "add": operator.add, "iadd": operator.add, "sub": operator.sub, "mul": operator.mul,
    "truediv": operator.truediv, "neg": operator.neg, "getitem": operator.getitem,
    "getattr": builtins.getattr,
    "torch.add": torch.add, "torch.sub": torch.sub, "torch.cat": torch.cat, "torch.concat": torch.concat,
    "torch.flatten": torch.flatten, "torch.mean": torch.mean, "torch.reshape": torch.reshape,
    "F.interpolate": F.interpolate, "F.avg_pool1d": F.avg_pool1d, "F.avg_pool2d": F.avg_pool2d,
    "F.avg_pool3d": F.avg_pool3d, "F.adaptive_avg_pool1d": F.adaptive_avg_pool1d,
    "F.adaptive_avg_pool2d": F.adaptive_avg_pool2d, "F.adaptive_avg_pool3d": F.adaptive_avg_pool3d,
    "F.pad": F.pad, "F.pixel_shuffle": F.pixel_shuffle,
    # shape arithmetic and rearrangements (shufflenet's channel shuffle, inception's transform_input)
    "floordiv": operator.floordiv, "torch.transpose": torch.transpose, "torch.unsqueeze": torch.unsqueeze,
    "torch.chunk": torch.chunk,
}
FUNCTION_NAMES: dict[Any, str] = {fn: name for name, fn in FUNCTIONS.items() if name != "iadd"}
FUNCTION_NAMES[operator.iadd] = "iadd"  # runs as operator.add: in-place updates would alias time steps

METHODS = frozenset({
    "view", "reshape", "flatten", "size", "dim", "mean", "contiguous", "add", "add_", "mul", "mul_",
    "sub", "div", "view_as", "reshape_as", "expand_as", "float", "type_as", "transpose", "chunk", "unsqueeze",
})
# Functions and methods above that take a dimension: the engine folds time into dim 0 (the batch), so
# their dimension must not be 0; {name: (position of `dim` among the arguments after the tensor, kwarg names)}.
DIM_ARGUMENTS: dict[str, tuple[int, tuple[str, ...]]] = {
    "torch.transpose": (0, ("dim0", "dim1")), "transpose": (0, ("dim0", "dim1")),
    "torch.unsqueeze": (0, ("dim",)), "unsqueeze": (0, ("dim",)),
    "torch.chunk": (1, ("dim",)), "chunk": (1, ("dim",)),
}
MAXPOOL_FUNCTIONS = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3}
DROPOUT_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout)
RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_, F.relu_)
RELU_METHODS = ("relu", "relu_")
CLAMP_METHODS = ("clamp", "clamp_", "clamp_min", "clamp_min_", "clip", "clip_")
CLAMP_FUNCTIONS = (torch.clamp, torch.clamp_min, torch.clip)
# Clipped ReLUs min(max(x, 0), a): F.relu6 (a = 6) and F.hardtanh(x, 0, a); the modules nn.ReLU6 and
# nn.Hardtanh(0, a) are both nn.Hardtanh. An IF neuron's rate saturates at its threshold, so they
# convert with the threshold capped at a (patterns.ClippedReLU).
RELU6_FUNCTIONS = (F.relu6,)
HARDTANH_FUNCTIONS = (F.hardtanh, F.hardtanh_)
HARDTANH_TYPES = (nn.Hardtanh,)
# Activations that are not ReLU-like: refused by name before anything else (an IF neuron's rate is a
# clipped ReLU of its input and cannot follow them). Hardtanh and clamp with a lower bound other than 0
# are refused by the matcher (patterns.non_relu_activation).
OTHER_ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.PReLU, nn.RReLU,
    nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
    nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.GLU,
)
OTHER_ACTIVATION_FUNCTIONS: dict[Any, str] = {
    F.silu: "F.silu", F.gelu: "F.gelu", F.hardswish: "F.hardswish", F.hardsigmoid: "F.hardsigmoid",
    torch.sigmoid: "torch.sigmoid", F.sigmoid: "F.sigmoid", torch.tanh: "torch.tanh", F.tanh: "F.tanh",
    F.leaky_relu: "F.leaky_relu", F.leaky_relu_: "F.leaky_relu_", F.prelu: "F.prelu", F.rrelu: "F.rrelu",
    F.elu: "F.elu", F.elu_: "F.elu_", F.selu: "F.selu", F.celu: "F.celu", F.mish: "F.mish",
    F.softplus: "F.softplus", F.softsign: "F.softsign", F.logsigmoid: "F.logsigmoid", F.glu: "F.glu",
    F.tanhshrink: "F.tanhshrink", F.hardshrink: "F.hardshrink", F.softshrink: "F.softshrink",
    F.threshold: "F.threshold",
}
OTHER_ACTIVATION_METHODS = frozenset({"sigmoid", "sigmoid_", "tanh", "tanh_"})


def supported_summary() -> str:
    """One paragraph listing what conversion supports, for error messages."""
    layers = ", ".join(sorted(LAYER_TYPES))
    return (
        "Supported: activations nn.ReLU / F.relu / torch.relu / .relu() / .clamp(min=0) (and in-place "
        "variants, and snnconvert's QuantReLU), and the clipped ReLUs nn.ReLU6 / F.relu6 / nn.Hardtanh(0, a) / "
        f"F.hardtanh(x, 0, a) / clamp(x, 0, a) (threshold capped at a); layers {layers}; batch norm that no "
        "conv/linear feeds alone runs as a per-channel affine layer; max pooling (nn.MaxPool*/F.max_pool*, "
        "converted to spike-gated pooling); dropout and identity (removed); functions "
        f"{', '.join(sorted(FUNCTIONS))}; tensor methods {', '.join(sorted(METHODS))}."
    )
