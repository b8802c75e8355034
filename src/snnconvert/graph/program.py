"""The model IR: a Program is a list of named Nodes in topological order over a dict of modules.

A Node's `kind` (NodeKind) decides how its `target` is looked up: a module key (LAYER, ACTIVATION,
MAXPOOL), a function name of the op table (FUNCTION) or a tensor method name (METHOD). Arguments
hold constants and Refs to earlier nodes. The same Program runs as the ANN (activations are ReLU-
like modules) and, with activations replaced by neurons, inside the spiking engine; node names are
kept, so the two line up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from ..errors import ModelError
from . import ops


class NodeKind(str, Enum):
    """What a node is; the value is its name in saved files."""

    INPUT = "input"            # the model's one tensor input
    LAYER = "layer"            # a stateless module from ops.LAYER_TYPES (conv, linear, pooling, ...)
    ACTIVATION = "activation"  # a ReLU-like activation; a spiking neuron after conversion
    MAXPOOL = "maxpool"        # max pooling; spike-gated max pooling after conversion
    FUNCTION = "function"      # a function of the op table (add, cat, interpolate, ...)
    METHOD = "method"          # a tensor method (view, flatten, ...)
    OUTPUT = "output"          # the model's one tensor output

    @property
    def calls_module(self) -> bool:
        return self in (NodeKind.LAYER, NodeKind.ACTIVATION, NodeKind.MAXPOOL)


# Short names, so code reads `node.kind is ACTIVATION`.
INPUT, LAYER, ACTIVATION, MAXPOOL, FUNCTION, METHOD, OUTPUT = NodeKind


_ADDITIONS = {("function", "add"), ("function", "iadd"), ("function", "torch.add"), ("method", "add")}


def is_addition(node: "Node") -> bool:
    """Whether the node adds two values (a residual addition), as a function or a tensor method."""
    return (node.kind.value, node.target) in _ADDITIONS


@dataclass(frozen=True)
class Ref:
    """A reference to another node's value inside a node's arguments."""

    name: str


@dataclass
class Node:
    """One operation: `kind` decides how `target` is looked up (module key, function or method name)."""

    name: str
    kind: NodeKind
    target: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = NodeKind(self.kind)

    def refs(self) -> list[str]:
        return [r.name for r in iter_refs((self.args, self.kwargs))]


def iter_refs(value: Any) -> Iterator[Ref]:
    """Every Ref inside nested args (tuples, lists, dicts, slices)."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from iter_refs(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_refs(v)
    elif isinstance(value, slice):
        yield from iter_refs((value.start, value.stop, value.step))


def map_refs(value: Any, fn: Callable[[Ref], Any]) -> Any:
    """Replace every Ref inside nested args by fn(ref)."""
    if isinstance(value, Ref):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(map_refs(v, fn) for v in value)
    if isinstance(value, list):
        return [map_refs(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_refs(v, fn) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(map_refs(value.start, fn), map_refs(value.stop, fn), map_refs(value.step, fn))
    return value


class Program(nn.Module):
    """Nodes in topological order plus the modules they call (`layers[key]`). `preactivation_stats`
    (filled by trace when it folds batch norm): {layer node name: (mean, std) per channel of the
    folded layer's output}, from the BN's affine parameters; {} otherwise."""

    def __init__(self, nodes: list[Node], layers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.nodes = nodes
        self.layers = nn.ModuleDict(layers)
        self.preactivation_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def input_name(self) -> str:
        return next(n.name for n in self.nodes if n.kind is INPUT)

    def activation_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.kind is ACTIVATION]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def call(self, node: Node, args: tuple, kwargs: dict) -> Any:
        """Run one non-input node on concrete values."""
        if node.kind.calls_module:
            return self.layers[node.target](*args, **kwargs)
        if node.kind is FUNCTION:
            return ops.FUNCTIONS[node.target](*args, **kwargs)
        if node.kind is METHOD:
            obj, *rest = args
            # in-place variants run out of place: values may be shared across time steps
            return getattr(obj, node.target.rstrip("_"))(*rest, **kwargs)
        raise ModelError(f"node {node.name!r} of kind {node.kind.value!r} cannot be called")

    def run(self, x: torch.Tensor, capture: Iterable[str] = (), stop_after: str | None = None,
            given: dict[str, Any] | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
        """Evaluate as an ordinary network. Returns (output, {name: value} for names in `capture`).
        `given` maps node names to values used instead of computing those nodes."""
        want = set(capture)
        given = given or {}
        env: dict[str, Any] = {}
        captured: dict[str, torch.Tensor] = {}
        out = None
        for node in self.nodes:
            if node.kind is INPUT:
                env[node.name] = x
            elif node.kind is OUTPUT:
                out = env[node.args[0].name]
            elif node.name in given:
                env[node.name] = given[node.name]
            else:
                args = map_refs(node.args, lambda r: env[r.name])
                kwargs = map_refs(node.kwargs, lambda r: env[r.name])
                env[node.name] = self.call(node, args, kwargs)
            if node.name in want:
                captured[node.name] = env[node.name]
            if stop_after is not None and node.name == stop_after:
                break
        return out, captured

    def forward(self, x: torch.Tensor) -> Any:
        return self.run(x)[0]
