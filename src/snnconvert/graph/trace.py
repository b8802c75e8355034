"""trace(model): an nn.Module -> a Program, with torch.fx.

Tracing works on a deep copy (the user's model is never modified), folds eval-mode batch norm into
the conv/linear feeding it (a batch norm fed by anything else, e.g. a concatenation, stays as a
per-channel affine layer), drops dropout and identity, and marks every ReLU-like activation (see
patterns.py; clipped ReLUs become ClippedReLU(cap)). A non-ReLU activation anywhere in the model is
refused first, by name and location; anything else outside the op table raises
UnsupportedOperationError naming the node and listing what is supported.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ..errors import ModelError, UnsupportedOperationError
from . import ops
from .patterns import (ACTIVATION_TYPES, ActivationModule, ClippedReLU, StatefulModule, activation_cap,
                       is_activation_node, non_relu_activation)
from .program import ACTIVATION, FUNCTION, INPUT, LAYER, MAXPOOL, METHOD, OUTPUT, Node, Program, Ref


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type, ...]) -> None:
        super().__init__()
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaf_types) or super().is_leaf_module(m, qualname)


def _check_finite(model: nn.Module) -> None:
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelError(f"parameter {name!r} of the model contains NaN or infinite values; "
                             "conversion needs finite weights (check the checkpoint or the training run)")


def _fold_batch_norm(gm: fx.GraphModule) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fold eval-mode BN into the conv/linear feeding it when that output has no other user.
    Returns {name of the folded layer's node: (beta, |gamma|)}: the per-channel mean and standard
    deviation of the BN's output over the data its running statistics describe."""
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    modules = dict(gm.named_modules())
    call_count: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            call_count[node.target] = call_count.get(node.target, 0) + 1
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            continue
        prev = node.args[0]
        if not (isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1
                and call_count[prev.target] == 1):
            continue
        layer, bn = modules[prev.target], modules[node.target]
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            fused = fuse_conv_bn_eval(layer, bn)
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_mean)
        beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(bn.running_mean)
        stats[prev.name] = (beta.clone().float(), gamma.abs().clone().float())
        parent_name, _, attr = prev.target.rpartition(".")
        setattr(gm.get_submodule(parent_name) if parent_name else gm, attr, fused)
        modules[prev.target] = fused
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    gm.graph.lint()
    return stats


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"module {type(gm.get_submodule(node.target)).__name__} at '{node.target}'"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__module__', '')}.{getattr(node.target, '__name__', node.target)}"
    if node.op == "call_method":
        return f"tensor method .{node.target}()"
    return f"{node.op} {node.target}"


def _location(node: fx.Node, gm: fx.GraphModule) -> str:
    """Where a node sits in the user's model: the module path of a module call, else the innermost
    module whose forward() makes the call (torch.fx's nn_module_stack), else the top level."""
    if node.op == "call_module":
        return f"at '{node.target}'"
    stack = [v[0] if isinstance(v, tuple) else v for v in (node.meta.get("nn_module_stack") or {}).values()]
    stack = [p for p in stack if isinstance(p, str) and p]
    return f"in the forward() of '{stack[-1]}'" if stack else "in the model's own forward()"


def _refuse_non_relu(gm: fx.GraphModule) -> None:
    """UnsupportedOperationError naming the first non-ReLU activation and counting all of them."""
    found = [(node, name) for node in gm.graph.nodes if (name := non_relu_activation(node, gm)) is not None]
    if not found:
        return
    node, name = found[0]
    counts: dict[str, int] = {}
    for _, n in found:
        counts[n] = counts.get(n, 0) + 1
    every = ", ".join(f"{n} x {c}" for n, c in counts.items())
    raise UnsupportedOperationError(
        f"cannot convert node '{node.name}': the activation {name} {_location(node, gm)} is not ReLU-like. "
        "An integrate-and-fire neuron's firing rate is a clipped ReLU of its input, so only ReLU and "
        "clipped ReLUs (min(max(x, 0), a)) convert; the model has "
        f"{len(found)} non-ReLU activation{'s' if len(found) > 1 else ''} ({every}): retrain or fine-tune "
        "it with ReLU (or ReLU6). " + ops.supported_summary())


def _activation_module(node: fx.Node, gm: fx.GraphModule) -> nn.Module:
    """The module an activation node runs in the Program (copied by the caller): the model's own
    ActivationModule (QuantReLU), else nn.ReLU or ClippedReLU(cap) (never in-place: inputs may be captured)."""
    if node.op == "call_module" and isinstance(gm.get_submodule(node.target), ActivationModule):
        return gm.get_submodule(node.target)
    cap = activation_cap(node, gm)
    return nn.ReLU() if cap is None else ClippedReLU(cap)


def _check_dims(node: fx.Node, name: str, unsupported) -> None:
    """Refuse a rearrangement along dim 0: the spiking engine folds time into the batch dimension."""
    if name not in ops.DIM_ARGUMENTS:
        return
    first, keywords = ops.DIM_ARGUMENTS[name]
    rest = node.args[1:]
    dims = list(rest[first:first + len(keywords)]) + [node.kwargs[k] for k in keywords if k in node.kwargs]
    if name.endswith("chunk") and len(rest) < 2 and "dim" not in node.kwargs:
        dims.append(0)  # chunk's dim defaults to 0
    if any(isinstance(d, int) and d == 0 for d in dims):
        raise unsupported(node, "it rearranges dimension 0, the batch, into which the spiking engine folds time")


def fx_trace(model: nn.Module, leaf_types: tuple[type, ...] = ACTIVATION_TYPES) -> fx.GraphModule:
    """torch.fx-trace `model` (not copied here), leaf types kept whole; errors made readable."""
    try:
        graph = _Tracer(leaf_types).trace(model)
    except Exception as e:  # fx raises many types: control flow, proxies in unsupported places
        raise UnsupportedOperationError(
            f"torch.fx could not trace {type(model).__name__}: {e}. Data-dependent control flow cannot be "
            "converted; move it out of forward() or pass the submodule type in leaf_modules."
        ) from e
    return fx.GraphModule(model, graph)


def trace(model: nn.Module, leaf_modules: tuple[type[nn.Module], ...] = (), fold_bn: bool = True) -> Program:
    """Trace a deep copy of `model` (eval mode) into a Program; raise on anything unsupported."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    _check_finite(model)
    model = copy.deepcopy(model).eval()
    gm = fx_trace(model, tuple(leaf_modules) + ACTIVATION_TYPES + (StatefulModule,))
    _refuse_non_relu(gm)
    stats = _fold_batch_norm(gm) if fold_bn else {}
    program = _to_program(gm)
    program.preactivation_stats = stats
    return program


def _to_program(gm: fx.GraphModule) -> Program:
    nodes: list[Node] = []
    layers: dict[str, nn.Module] = {}
    alias: dict[str, str] = {}  # removed nodes (dropout, identity) -> the node they pass through
    key_of_target: dict[str, str] = {}

    def ref(v: Any) -> Any:
        if isinstance(v, fx.Node):
            return Ref(alias.get(v.name, v.name))
        if isinstance(v, (tuple, list)):
            return type(v)(ref(x) for x in v)
        if isinstance(v, dict):
            return {k: ref(x) for k, x in v.items()}
        if isinstance(v, slice):
            return slice(ref(v.start), ref(v.stop), ref(v.step))
        if isinstance(v, (int, float, bool, str)) or v is None:
            return v
        raise UnsupportedOperationError(f"argument of type {type(v).__name__} is not supported")

    def layer_key(target: str, module: nn.Module, fresh: bool) -> str:
        if not fresh and target in key_of_target:
            return key_of_target[target]
        key = target.replace(".", "_") or "root"
        while key in layers:
            key += "_"
        layers[key] = module if not fresh else copy.deepcopy(module)
        if not fresh:
            key_of_target[target] = key
        return key

    def unsupported(node: fx.Node, why: str = "") -> UnsupportedOperationError:
        return UnsupportedOperationError(
            f"cannot convert node '{node.name}' ({_describe(node, gm)}){': ' + why if why else ''}. "
            + ops.supported_summary())

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedOperationError(
            f"the model's forward() must take exactly one tensor input, it takes {len(placeholders)}")
    for node in gm.graph.nodes:
        args, kwargs = node.args, dict(node.kwargs)
        if node.op == "placeholder":
            nodes.append(Node(node.name, INPUT, node.name))
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node):
                raise UnsupportedOperationError(
                    "the model must return a single tensor (logits or a feature map), "
                    f"not {type(out).__name__}")
            nodes.append(Node(node.name, OUTPUT, "output", (ref(out),)))
        elif node.op == "get_attr":
            raise unsupported(node, "parameters used directly in forward() (e.g. F.conv2d(x, self.weight)) "
                                    "are not supported; use nn modules")
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            if is_activation_node(node, gm):
                nodes.append(Node(node.name, ACTIVATION, layer_key(node.name, _activation_module(node, gm), fresh=True),
                                  (ref(args[0]),)))
            elif isinstance(m, ops.REMOVED_TYPES):
                alias[node.name] = alias.get(args[0].name, args[0].name)
            elif isinstance(m, ops.MAXPOOL_TYPES):
                if m.return_indices:
                    raise unsupported(node, "max pooling with return_indices")
                nodes.append(Node(node.name, MAXPOOL, layer_key(node.name, copy.deepcopy(m), fresh=True),
                                  (ref(args[0]),)))
            elif type(m).__name__ in ops.LAYER_TYPES and isinstance(m, ops.LAYER_TYPES[type(m).__name__]):
                nodes.append(Node(node.name, LAYER, layer_key(node.target, m, fresh=False), ref(args), ref(kwargs)))
            else:
                raise unsupported(node)
        elif node.op == "call_function":
            fn = node.target
            if is_activation_node(node, gm):
                nodes.append(Node(node.name, ACTIVATION, layer_key(node.name, _activation_module(node, gm), fresh=True),
                                  (ref(args[0]),)))
            elif fn in ops.DROPOUT_FUNCTIONS:
                alias[node.name] = alias.get(args[0].name, args[0].name)
            elif fn in ops.MAXPOOL_FUNCTIONS:
                pool = _maxpool_module(ops.MAXPOOL_FUNCTIONS[fn], args, kwargs, node, unsupported)
                nodes.append(Node(node.name, MAXPOOL, layer_key(node.name, pool, fresh=True), (ref(args[0]),)))
            elif fn in ops.FUNCTION_NAMES:
                _check_dims(node, ops.FUNCTION_NAMES[fn], unsupported)
                nodes.append(Node(node.name, FUNCTION, ops.FUNCTION_NAMES[fn], ref(args), ref(kwargs)))
            else:
                raise unsupported(node)
        elif node.op == "call_method":
            if is_activation_node(node, gm):
                nodes.append(Node(node.name, ACTIVATION, layer_key(node.name, _activation_module(node, gm), fresh=True),
                                  (ref(args[0]),)))
            elif node.target in ops.METHODS:
                _check_dims(node, node.target, unsupported)
                nodes.append(Node(node.name, METHOD, node.target, ref(args), ref(kwargs)))
            else:
                raise unsupported(node)
        else:
            raise unsupported(node)
    return Program(nodes, layers)


def _maxpool_module(dims: int, args: tuple, kwargs: dict, node: fx.Node, unsupported) -> nn.Module:
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    params = dict(zip(names, args[1:]))
    params.update({k: v for k, v in kwargs.items() if k in names})
    if params.get("return_indices"):
        raise unsupported(node, "max pooling with return_indices")
    params.pop("return_indices", None)
    if params.get("stride") is None:
        params.pop("stride", None)
    cls = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims]
    return cls(**params)
