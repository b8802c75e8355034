"""export_nir(snn, path): a converted network as a NIR graph (an HDF5 file written by the `nir` package).

What is written (nir_format.py states the neuron's meaning):
- Input, Output; Conv2d and Affine (every conv/linear layer, bias zeros where it has none); AvgPool2d
  (nn.AvgPool2d, nn.AdaptiveAvgPool2d, F.avg_pool2d, mean over H and W), or SumPool2d with
  `pooling="sum"`; Flatten; one IF node per neuron layer; residual additions as fan-in edges (NIR sums
  what arrives at a node); a channel concatenation as fan-in too, where it feeds convolutions or
  linear layers (their weights are split by input channel) or elementwise steps.
- Spikes are 0/1: the spike amplitude theta of each neuron layer is folded into the weights it feeds
  (input-channel columns), and the input of each neuron layer is divided by its theta (output-channel
  rows and bias), so every IF node fires at 1. A value that reaches a neuron or the output at another
  scale than the one it needs (an identity shortcut between layers of different thresholds, average
  pooling right before a neuron) passes a per-channel scaling node (a depthwise 1x1 Conv2d, or a diagonal
  Affine on flat values). The readout keeps its exact values: summed over T steps they are the SNN's.
- Exact in real arithmetic. In float32 the division by theta rounds; with thresholds that are powers of
  two the exported network's spike trains are bit for bit those of snnconvert's engine.

Refused, with the layer and the reason: signed neurons (SNM, Fast-SNN; negative spikes gated by a
count), spike-gated max pooling, neuron-wise thresholds after a convolution, nonzero initial potentials
and soft reset (NIR's IF resets to v_reset: `allow_soft_reset=True` writes them anyway for readers that
reset by subtraction, recorded in the metadata and measured on data), and operations NIR has no node for.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ExportError
from ..files import atomic_write
from ..graph import ACTIVATION, FUNCTION, INPUT, LAYER, MAXPOOL, METHOD, OUTPUT, Node, Program, Ref, is_addition, map_refs
from ..graph.program import iter_refs
from ..neurons import Negative, Reset, SpikingNeuron
from ..simulation import SpikingModel, simulate
from .nir_format import FIRE_ABOVE, FORMAT, FORMAT_VERSION, RESET_KEY, SUBTRACT, V0_KEY, ZERO, require_nir

POOLINGS = ("avg", "sum")
_IDENTITY_METHODS = {"contiguous", "float", "type_as"}
_RESHAPES = {(LAYER, "Flatten"), (FUNCTION, "torch.flatten"), (FUNCTION, "torch.reshape"), (METHOD, "flatten"),
             (METHOD, "view"), (METHOD, "reshape"), (METHOD, "view_as"), (METHOD, "reshape_as")}
_CATS = {"torch.cat", "torch.concat"}


@dataclass(frozen=True)
class ResetLoss:
    """Accuracy at T of a network exported with allow_soft_reset=True, as each kind of reader runs it: the
    source (soft reset, its initial potentials), readers that reset by subtraction (snnTorch, sinabs: soft
    reset from V(0) = 0) and readers that follow NIR's IF (Norse and the spec: reset to zero, V(0) = 0)."""

    T: int
    samples: int
    source: float
    subtract_readers: float
    zero_readers: float


@dataclass(frozen=True)
class NirExport:
    """What export_nir wrote: the file, its node count, the reset its IF nodes stand for ("zero": exact;
    "subtract" or "mixed": the soft-reset opt-in) and, for the opt-in with data, the measured loss."""

    path: Path
    nodes: int
    reset: str
    notes: tuple[str, ...] = ()
    loss: ResetLoss | None = None

    def summary(self) -> str:
        lines = [f"NIR graph with {self.nodes} nodes written to {self.path} (nir IF nodes: "
                 + ("hard reset, exact" if self.reset == ZERO else f"{self.reset} reset, NOT exact for every reader")
                 + ")"]
        lines += [f"note: {n}" for n in self.notes]
        if self.loss is not None:
            lo = self.loss
            lines.append(f"accuracy at T={lo.T} on {lo.samples} samples: source {100 * lo.source:.2f}%; readers that "
                         f"reset by subtraction (snnTorch, sinabs; they start at V(0) = 0) {100 * lo.subtract_readers:.2f}%; "
                         f"readers that reset to zero as NIR's IF says (Norse) {100 * lo.zero_readers:.2f}%")
        return "\n".join(lines)


@dataclass
class _Term:
    """One NIR node's output inside a value: value = amp * (that node's output), per channel."""

    node: str
    amp: torch.Tensor  # float64 [n]: one factor per channel (per feature for flat values)


@dataclass
class _Part:
    """A run of `size` channels of a value (several after a concatenation), the sum of its terms."""

    size: int
    terms: list[_Term]


@dataclass
class _Value:
    shape: tuple[int, ...]  # one sample's shape
    parts: list[_Part] = field(default_factory=list)


def export_nir(snn: SpikingModel, path: str | Path, *, pooling: str = "avg", allow_soft_reset: bool = False,
               input_shape: Sequence[int] | None = None, data: Any = None, T: int | None = None,
               batch_size: int = 256) -> NirExport:
    """Write `snn` to `path` as a NIR graph (module docstring: what is exact, what is refused).

    pooling: "avg" writes AvgPool2d (read by snnTorch), "sum" SumPool2d with 1 / (kernel area) folded into
    the next layer (read by Norse and sinabs, which have no AvgPool2d). input_shape: one sample's shape
    ([C, H, W] or [F]); default: the data recorded at conversion (snn.method["data"]["input_shape"]).
    allow_soft_reset: write soft-reset neurons and initial potentials as plain IF nodes whose metadata
    records them (readers ignore it); with `data` (labelled, as for simulate()) and T (default: the
    model's own T) the returned NirExport.loss says what each kind of reader computes. Raises ExportError
    naming the layer for anything NIR cannot express."""
    nir = require_nir(ExportError, "NIR export")
    if not isinstance(snn, SpikingModel):
        raise ExportError(f"export_nir() takes a SpikingModel (from snnconvert.convert or load), got {type(snn).__name__}")
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    shape = _input_shape(snn, input_shape)
    writer = _Writer(snn, nir, shape, pooling, allow_soft_reset)
    graph = writer.graph()
    loss = None
    if writer.lossy and data is not None:
        loss = measure_reset_loss(snn, data, T, batch_size)
        graph.metadata["accuracy"] = {"T": loss.T, "samples": loss.samples, "source": loss.source,
                                      "subtract_readers": loss.subtract_readers, "zero_readers": loss.zero_readers}
    out = Path(path)
    atomic_write(out, lambda tmp: nir.write(tmp, graph))
    notes = list(writer.notes)
    if writer.lossy and data is None:
        notes.append("no data given: what readers that reset otherwise lose was not measured (pass data=)")
    return NirExport(out, len(graph.nodes), writer.reset_summary(), tuple(notes), loss)


def lossy_layers(snn: SpikingModel) -> list[str]:
    """The neuron layers that export_nir writes only with allow_soft_reset=True (soft reset or a nonzero
    initial potential), in network order."""
    out = []
    for name, neuron in snn.neurons().items():
        soft = neuron.reset_mode is Reset.SOFT and neuron.negative is Negative.NONE
        v0 = neuron.v_init != 0 or (neuron.v_offset is not None and bool(neuron.v_offset.ne(0).any()))
        if soft or (v0 and neuron.negative is Negative.NONE):
            out.append(name)
    return out


def measure_reset_loss(snn: SpikingModel, data: Any, T: int | None = None, batch_size: int = 256) -> ResetLoss:
    """Accuracy at T of `snn` as it is, with every neuron starting at V(0) = 0, and with hard reset from
    V(0) = 0: what the source, readers that subtract and readers that reset to zero compute."""
    T = T if T is not None else snn.default_T
    if T is None:
        raise ConfigError("measuring the export's loss needs T (the number of time steps, e.g. T=64): this model has "
                          "no T of its own")

    def accuracy(model: SpikingModel) -> tuple[float, int]:
        res = simulate(model, data, T, batch_size=batch_size, progress=False, record=False, compile=False)
        return res.accuracy_at(T), res.samples

    source, n = accuracy(snn)
    return ResetLoss(T, n, source, accuracy(_as_read(snn, hard=False))[0], accuracy(_as_read(snn, hard=True))[0])


def _as_read(snn: SpikingModel, hard: bool) -> SpikingModel:
    """A copy of `snn` as a NIR reader runs it: V(0) = 0, and with `hard` every neuron reset to zero."""
    out = copy.deepcopy(snn)
    for neuron in out.neurons().values():
        neuron.v_init = 0.0
        neuron.set_initial_offset(None)
        if hard:
            neuron.reset_mode = Reset.HARD
    return out


def _input_shape(snn: SpikingModel, given: Sequence[int] | None) -> tuple[int, ...]:
    if given is None:
        data = snn.method.get("data")
        given = data.get("input_shape") if isinstance(data, dict) else snn.method.get("input_shape")
    if given is None:
        raise ConfigError("export_nir() needs the shape of one input sample (input_shape=[C, H, W]); this model "
                          "does not record the data it was converted on")
    try:
        shape = tuple(int(d) for d in given)
    except (TypeError, ValueError):
        raise ConfigError(f"input_shape must be a list of sizes such as [1, 8, 8], got {given!r}") from None
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ConfigError(f"input_shape must be [C, H, W] (images) or [F] (vectors) with sizes >= 1, got {list(shape)}")
    return shape


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _Writer:
    """Walks the program once, in order, and writes the NIR nodes and edges of each value."""

    def __init__(self, snn: SpikingModel, nir: Any, input_shape: tuple[int, ...], pooling: str,
                 allow_soft_reset: bool) -> None:
        self.program: Program = snn.program
        self.snn, self.nir, self.pooling, self.allow_soft_reset = snn, nir, pooling, allow_soft_reset
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.values: dict[str, _Value] = {}
        self.notes: list[str] = []
        self.resets: set[str] = set()
        self.lossy = False
        self.samples = self._run_shapes(input_shape)
        self.users: dict[str, list[Node]] = {}
        for n in self.program.nodes:
            for r in dict.fromkeys(n.refs()):
                self.users.setdefault(r, []).append(n)
        self.demand = self._demands()

    # ---- what each node is --------------------------------------------------------------------------

    def _run_shapes(self, input_shape: tuple[int, ...]) -> dict[str, Any]:
        """Every node's value on a batch of 2 zero samples (neurons as identities): shapes and non-tensors."""
        env: dict[str, Any] = {}
        dtype = next((p.dtype for p in self.snn.parameters() if p.is_floating_point()), torch.float32)
        with torch.no_grad():
            for node in self.program.nodes:
                if node.kind is INPUT:
                    env[node.name] = torch.zeros(2, *input_shape, dtype=dtype, device=self.snn.device)
                    continue
                args = _resolve(node.args, env)
                if node.kind is OUTPUT:
                    env[node.name] = args[0]
                elif node.kind is ACTIVATION:
                    env[node.name] = args[0]
                elif node.kind is MAXPOOL:
                    env[node.name] = self.program.layers[node.target].static_forward(args[0])
                else:
                    try:
                        env[node.name] = self.program.call(node, args, _resolve(node.kwargs, env))
                    except Exception as e:  # torch raises many types for a wrong input shape
                        raise ConfigError(f"the model cannot run on inputs of shape {list(input_shape)} (node "
                                          f"'{node.name}': {type(e).__name__}: {e}); give the right input_shape") from None
        return env

    def _shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.samples[name].shape[1:])

    def _is_tensor(self, name: str) -> bool:
        v = self.samples.get(name)
        return isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == 2

    def _op(self, node: Node) -> str:
        """What `node` is to the exporter: input, output, neuron, maxpool, conv, linear, pool, mean, flatten,
        identity, add, cat, skip (not a tensor: sizes) or unsupported."""
        if node.kind is INPUT:
            return "input"
        if node.kind is OUTPUT:
            return "output"
        if node.kind is ACTIVATION:
            return "neuron"
        if node.kind is MAXPOOL:
            return "maxpool"
        if not self._is_tensor(node.name):
            return "skip"
        if node.kind is LAYER:
            m = self.program.layers[node.target]
            if isinstance(m, nn.Conv2d):
                return "conv"
            if isinstance(m, nn.Linear):
                return "linear"
            if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                return "pool"
        if node.kind is FUNCTION and node.target in ("F.avg_pool2d", "F.adaptive_avg_pool2d"):
            return "pool"
        if is_addition(node):
            return "add"
        if node.kind is FUNCTION and node.target in _CATS:
            return "cat"
        if (node.kind, node.target) in ((FUNCTION, "torch.mean"), (METHOD, "mean")):
            return "mean"
        key = (node.kind, type(self.program.layers[node.target]).__name__ if node.kind is LAYER else node.target)
        if key in _RESHAPES or (node.kind is METHOD and node.target in _IDENTITY_METHODS):
            src = self._source(node)
            if src is not None:
                before, after = self._shape(src), self._shape(node.name)
                if after == before:
                    return "identity"
                if len(before) >= 2 and after == (math.prod(before),):
                    return "flatten"
        return "unsupported"

    def _source(self, node: Node) -> str | None:
        """The name of the tensor a one-input node reads (its first argument)."""
        first = node.args[0] if node.args else None
        return first.name if isinstance(first, Ref) and self._is_tensor(first.name) else None

    def _what(self, node: Node) -> str:
        if node.kind.calls_module:
            m = self.program.layers[node.target]
            if isinstance(m, SpikingNeuron):
                return f"{m.kind} neuron"
            return f"{type(m).__name__} '{node.target}'"
        return f"function {node.target}" if node.kind is FUNCTION else f"tensor method .{node.target}()"

    def refuse(self, node: Node, why: str) -> ExportError:
        return ExportError(f"cannot export node '{node.name}' ({self._what(node)}) to NIR: {why}")

    # ---- the scale each value must have where it is used ---------------------------------------------

    def _demands(self) -> dict[str, torch.Tensor | None]:
        """For each tensor value, the per-channel factor its first scale-fixing user needs (a neuron: its
        threshold; the output: 1), looking through additions, pooling, flattening and concatenation; None
        when only convolutions and linear layers (which absorb any factor) use it."""
        demand: dict[str, torch.Tensor | None] = {}
        for node in reversed(self.program.nodes):
            if node.kind is OUTPUT or not self._is_tensor(node.name):
                continue
            demand[node.name] = None
            for user in self.users.get(node.name, []):
                d = self._demand_of(user, node.name, demand)
                if d is not None:
                    demand[node.name] = d
                    break
        return demand

    def _demand_of(self, user: Node, src: str, demand: dict[str, torch.Tensor | None]) -> torch.Tensor | None:
        op = self._op(user)
        channels = self._shape(src)[0]
        if op == "output":
            return torch.ones(channels, dtype=torch.float64)
        if op == "neuron":
            try:
                return self._threshold(user)
            except ExportError:
                return None  # refused when the neuron is written
        d = demand.get(user.name)
        if d is None:
            return None
        if op in ("add", "identity"):
            return d if len(d) == channels else None
        if op == "mean":
            area = math.prod(self._shape(src)[1:]) if self.pooling == "sum" else 1
            return d * area if len(d) == channels else None
        if op == "pool":
            try:
                return d * self._pool(user)[3] if len(d) == channels else None
            except ExportError:
                return None
        if op == "flatten":
            rows = d.reshape(channels, -1)
            return rows[:, 0].clone() if bool((rows == rows[:, :1]).all()) else None
        if op == "cat":
            offset = 0
            for r in self._cat_inputs(user):
                if r == src:
                    return d[offset:offset + channels]
                offset += self._shape(r)[0]
        return None

    def _threshold(self, node: Node) -> torch.Tensor:
        """The neuron's threshold per channel (per feature for flat values), float64 [C]."""
        neuron = self.program.layers[node.target]
        shape = self._shape(node.name)
        thr = torch.broadcast_to(neuron.threshold.detach().double().cpu(), shape).reshape(shape[0], -1)
        if not bool((thr == thr[:, :1]).all()):
            raise self.refuse(node, "its thresholds differ within a channel (neuron-wise thresholds after a "
                                    "convolution), which cannot be folded into the convolution's weights (it shares "
                                    "them over positions) nor written as NIR IF thresholds most readers accept; "
                                    "convert with granularity 'channel' or 'layer'")
        return thr[:, 0].clone()

    # ---- writing nodes and edges --------------------------------------------------------------------

    def add(self, name: str, nir_node: Any) -> str:
        base, k = name, 1
        while name in self.nodes:
            name, k = f"{base}_{k}", k + 1
        self.nodes[name] = nir_node
        return name

    def connect(self, terms: list[_Term], dst: str, target: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
        """Edges from every term to `dst` (NIR sums them there), each first scaled to `target` (default:
        the first term's factor) where its factor differs; returns the common factor."""
        target = terms[0].amp if target is None else target
        for term in terms:
            src = term.node if torch.equal(term.amp, target) else self._rescale(term, target, shape, dst)
            self.edges.append((src, dst))
        return target

    def _rescale(self, term: _Term, target: torch.Tensor, shape: tuple[int, ...], near: str) -> str:
        """A node whose output is term's node's output times term.amp / target (per channel)."""
        name = self._scaling(term.amp / target, shape, near)
        self.edges.append((term.node, name))
        return name

    def _scaling(self, scale: torch.Tensor, shape: tuple[int, ...], near: str) -> str:
        """A node multiplying each channel of a value of `shape` by `scale` (no edges yet): a 1x1 Conv2d with
        a diagonal weight for images, a diagonal Affine for vectors."""
        s = scale.numpy().astype(np.float32)
        if len(shape) == 3:  # a dense 1x1 conv: NIR (1.0.8) infers a grouped conv's input channels wrongly
            node = self.nir.Conv2d(input_shape=shape[1:], weight=np.diag(s)[:, :, None, None], stride=1, padding=0,
                                   dilation=1, groups=1, bias=np.zeros(len(s), np.float32))
        else:
            node = self.nir.Affine(weight=np.diag(s), bias=np.zeros(len(s), np.float32))
        return self.add(f"{near}_scale", node)

    def single(self, value: _Value, node: Node, what: str) -> _Part:
        if len(value.parts) != 1:
            raise self.refuse(node, f"{what} of a concatenation, which NIR cannot express (it has no concatenation "
                                    "node; snnconvert writes one only where convolutions, linear layers or "
                                    "elementwise steps read it)")
        return value.parts[0]

    # ---- the walk -----------------------------------------------------------------------------------

    def graph(self) -> Any:
        for node in self.program.nodes:
            op = self._op(node)
            if op == "skip":
                continue
            handler = getattr(self, f"_write_{op}", None)
            if handler is None:
                raise self.refuse(node, self._unsupported_reason(node, op))
            handler(node)
        order = {name: i for i, name in enumerate(self.nodes)}
        # each source's edges in the order of their destinations: readers that run the graph depth first
        # (nirtorch's GraphExecutor: Norse, sinabs) then reach a fan-in node after its inputs where they can
        edges = sorted(self.edges, key=lambda e: (order[e[0]], order[e[1]]))
        metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "source": "snnconvert",
                    "method": str(self.snn.method.get("name", "")), "reset": self.reset_summary(),
                    "time": "one NIR step per SNN time step (dt = 1), r = 1",
                    "threshold": f"v > {float(FIRE_ABOVE)!r} (1 - 2**-24): fires when v >= 1 in float32",
                    "spikes": "0/1; each layer's threshold is folded into the weights",
                    "pooling": self.pooling}
        try:
            return self.nir.NIRGraph(nodes=self.nodes, edges=edges, metadata=metadata, type_check=True)
        except (ValueError, AssertionError, KeyError, NotImplementedError) as e:
            raise ExportError(f"the NIR graph built from this model does not type-check ({e}); please report this "
                              "with the model") from None

    def reset_summary(self) -> str:
        if not self.resets or self.resets == {ZERO}:
            return ZERO
        return SUBTRACT if self.resets == {SUBTRACT} else "mixed"

    def _unsupported_reason(self, node: Node, op: str) -> str:
        if op == "maxpool":
            return ("spike-gated max pooling passes the increase of the largest accumulated input, which no NIR node "
                    "computes (NIR has no max pooling); convert a model with average pooling")
        shape = self._shape(node.name) if self._is_tensor(node.name) else None
        return (f"NIR has no node for it (output shape {list(shape) if shape else '?'}); exportable: Conv2d, Linear, "
                "average pooling (nn.AvgPool2d, nn.AdaptiveAvgPool2d, F.avg_pool2d, mean over H and W), flattening, "
                "residual additions, channel concatenation read by convolutions, IF neurons")

    def _value(self, node: Node, index: int = 0) -> _Value:
        ref = node.args[index]
        if not isinstance(ref, Ref) or ref.name not in self.values:
            raise self.refuse(node, f"its argument {index} is not a value the exporter wrote")
        return self.values[ref.name]

    def _write_input(self, node: Node) -> None:
        shape = self._shape(node.name)
        name = self.add(node.name, self.nir.Input(input_type=np.array(shape)))
        self.values[node.name] = _Value(shape, [_Part(shape[0], [_Term(name, torch.ones(shape[0], dtype=torch.float64))])])

    def _write_output(self, node: Node) -> None:
        value = self._value(node)
        part = self.single(value, node, "the network output")
        name = self.add(node.name, self.nir.Output(output_type=np.array(value.shape)))
        ones = torch.ones(part.size, dtype=torch.float64)
        terms = part.terms
        if len(terms) > 1:  # NIR readers take one input at the output: sum the terms in a scaling node first
            common = terms[0].amp
            joint = self._scaling(common / ones, value.shape, node.name)
            self.connect(terms, joint, common, value.shape)
            terms = [_Term(joint, ones)]
        self.connect(terms, name, ones, value.shape)

    def _write_neuron(self, node: Node) -> None:
        neuron = self.program.layers[node.target]
        if neuron.negative is not Negative.NONE:
            raise self.refuse(node, "a signed neuron emits negative spikes, gated by the count of spikes it has sent; "
                                    "NIR's IF node has neither (its spikes are 0/1)")
        reset = SUBTRACT if neuron.reset_mode is Reset.SOFT else ZERO
        v0 = self._initial_potential(neuron, self._shape(node.name))
        if reset == SUBTRACT and not self.allow_soft_reset:
            raise self.refuse(node, "it resets by subtraction (V <- V - theta), but NIR's IF resets to v_reset: written "
                                    "as IF it would lose the residue above threshold in every reader that follows "
                                    "NIR (Norse, hardware importers). allow_soft_reset=True (CLI --allow-soft-reset) "
                                    "writes it for readers that reset by subtraction (snnTorch, sinabs), recorded in "
                                    "the metadata")
        if v0 is not None and not self.allow_soft_reset:
            raise self.refuse(node, f"its neurons start at V(0) = {self._describe_v0(v0)}, but NIR's IF "
                                    "has no initial potential (every reader starts at 0). allow_soft_reset=True "
                                    "(CLI --allow-soft-reset) writes it into the node metadata, which readers ignore")
        if reset == SUBTRACT or v0 is not None:
            self.lossy = True
        self.resets.add(reset)
        value = self._value(node)
        shape = self._shape(node.name)
        thr = self._threshold(node)
        out: list[_Part] = []
        offset = 0
        for i, part in enumerate(value.parts):
            part_shape = (part.size, *shape[1:])
            theta = thr[offset:offset + part.size]
            metadata: dict[str, Any] = {RESET_KEY: reset}
            if v0 is not None:
                metadata[V0_KEY] = (v0[offset:offset + part.size] / theta.reshape(-1, *[1] * (len(shape) - 1))
                                    ).numpy().astype(np.float32)
            if_node = self.nir.IF(r=np.ones(part_shape, np.float32), v_threshold=np.full(part_shape, FIRE_ABOVE, np.float32),
                                  v_reset=np.zeros(part_shape, np.float32), metadata=metadata)
            name = self.add(node.name if len(value.parts) == 1 else f"{node.name}_part{i}", if_node)
            self.connect(part.terms, name, theta, part_shape)
            out.append(_Part(part.size, [_Term(name, theta)]))
            offset += part.size
        self.values[node.name] = _Value(shape, out)

    @staticmethod
    def _describe_v0(v0: torch.Tensor) -> str:
        lo, hi = float(v0.min()), float(v0.max())
        return f"{lo:.4g}" if lo == hi else f"{lo:.4g} to {hi:.4g}"

    @staticmethod
    def _initial_potential(neuron: SpikingNeuron, shape: tuple[int, ...]) -> torch.Tensor | None:
        """V(0) broadcast to one sample's shape (float64), None when it is 0 everywhere."""
        thr = neuron.threshold.detach().double().cpu()
        v0 = neuron.v_init * thr
        if neuron.v_offset is not None:
            v0 = v0 + neuron.v_offset.detach().double().cpu()
        v0 = torch.broadcast_to(v0, shape).clone()
        return None if not bool(v0.ne(0).any()) else v0

    @staticmethod
    def _folded(weight: torch.Tensor, a_in: torch.Tensor, a_out: torch.Tensor, groups: int = 1) -> np.ndarray:
        """weight [O, I/groups, ...] * a_in (per input channel) / a_out (per output channel), as a dense float32
        weight [O, I, ...] (zeros outside the groups: NIR 1.0.8 infers a grouped conv's input channels wrongly)."""
        w = weight.detach().double().cpu()
        o, i_g = w.shape[:2]
        in_index = (torch.arange(o) // (o // groups))[:, None] * i_g + torch.arange(i_g)[None, :]
        scaled = w * (a_in[in_index] / a_out[:, None]).reshape(o, i_g, *[1] * (w.dim() - 2))
        if groups == 1:
            return scaled.numpy().astype(np.float32)
        dense = torch.zeros(o, i_g * groups, *w.shape[2:], dtype=w.dtype)
        dense.scatter_(1, in_index.reshape(o, i_g, *[1] * (w.dim() - 2)).expand_as(scaled), scaled)
        return dense.numpy().astype(np.float32)

    def _write_conv(self, node: Node) -> None:
        conv: nn.Conv2d = self.program.layers[node.target]
        if conv.padding_mode != "zeros":
            raise self.refuse(node, f"padding_mode {conv.padding_mode!r}: NIR's Conv2d pads with zeros")
        value = self._value(node)
        in_shape, shape = value.shape, self._shape(node.name)
        padding = self._conv_padding(node, conv)
        a_out = self.demand.get(node.name)
        a_out = torch.ones(shape[0], dtype=torch.float64) if a_out is None else a_out
        bias = torch.zeros(shape[0], dtype=torch.float64) if conv.bias is None else conv.bias.detach().double().cpu()
        if len(value.parts) > 1 and conv.groups != 1:
            raise self.refuse(node, "a grouped convolution of a concatenation cannot be split by input channel")
        if conv.groups != 1:
            self.notes.append(f"grouped convolution '{node.name}' written as a dense Conv2d (zeros outside its "
                              f"{conv.groups} groups): nir 1.0.8 infers a grouped Conv2d's input channels wrongly")
        terms: list[_Term] = []
        offset = 0
        for i, part in enumerate(value.parts):
            a_in = part.terms[0].amp
            w = conv.weight[:, offset:offset + part.size] if len(value.parts) > 1 else conv.weight
            b = bias / a_out if i == 0 else torch.zeros_like(bias)
            nir_node = self.nir.Conv2d(input_shape=in_shape[1:], weight=self._folded(w, a_in, a_out, conv.groups),
                                       stride=_pair(conv.stride), padding=padding, dilation=_pair(conv.dilation),
                                       groups=1, bias=b.numpy().astype(np.float32))
            name = self.add(node.name if len(value.parts) == 1 else f"{node.name}_part{i}", nir_node)
            self.connect(part.terms, name, a_in, (part.size, *in_shape[1:]))
            terms.append(_Term(name, a_out))
            offset += part.size
        self.values[node.name] = _Value(shape, [_Part(shape[0], terms)])

    def _conv_padding(self, node: Node, conv: nn.Conv2d) -> tuple[int, int]:
        if conv.padding == "valid":
            return (0, 0)
        if conv.padding == "same":
            total = [d * (k - 1) for d, k in zip(_pair(conv.dilation), _pair(conv.kernel_size))]
            if any(t % 2 for t in total):
                raise self.refuse(node, "padding='same' with an even kernel pads unevenly, which NIR's Conv2d cannot")
            return (total[0] // 2, total[1] // 2)
        return _pair(conv.padding)

    def _write_linear(self, node: Node) -> None:
        lin: nn.Linear = self.program.layers[node.target]
        value = self._value(node)
        if len(value.shape) != 1:
            raise self.refuse(node, f"a linear layer on inputs of shape {list(value.shape)}: NIR's Affine takes vectors "
                                    "(flatten first)")
        out_features = lin.out_features
        a_out = self.demand.get(node.name)
        a_out = torch.ones(out_features, dtype=torch.float64) if a_out is None else a_out
        bias = torch.zeros(out_features, dtype=torch.float64) if lin.bias is None else lin.bias.detach().double().cpu()
        terms: list[_Term] = []
        offset = 0
        for i, part in enumerate(value.parts):
            a_in = part.terms[0].amp
            w = lin.weight[:, offset:offset + part.size]
            b = bias / a_out if i == 0 else torch.zeros_like(bias)
            nir_node = self.nir.Affine(weight=self._folded(w, a_in, a_out), bias=b.numpy().astype(np.float32))
            name = self.add(node.name if len(value.parts) == 1 else f"{node.name}_part{i}", nir_node)
            self.connect(part.terms, name, a_in, (part.size,))
            terms.append(_Term(name, a_out))
            offset += part.size
        self.values[node.name] = _Value((out_features,), [_Part(out_features, terms)])

    def _pool(self, node: Node) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], float]:
        """(kernel, stride, padding, factor) of an average pooling node: factor multiplies the per-channel
        scale of what passes (1 for AvgPool2d; the kernel area for SumPool2d, which sums)."""
        in_shape = self._shape(self._source(node) or node.name)
        if len(in_shape) != 3:
            raise self.refuse(node, f"pooling of inputs of shape {list(in_shape)}: NIR's pooling nodes are 2-d")
        m = self.program.layers[node.target] if node.kind is LAYER else self._pool_module(node)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
            size = tuple(in_shape[1 + i] if s is None else s for i, s in enumerate(size))
            if any(h % s for h, s in zip(in_shape[1:], size)):
                raise self.refuse(node, f"adaptive pooling from {list(in_shape[1:])} to {list(size)} uses windows of "
                                        "unequal size, which NIR's AvgPool2d cannot")
            kernel = (in_shape[1] // size[0], in_shape[2] // size[1])
            stride, padding = kernel, (0, 0)
        else:
            if m.ceil_mode or m.divisor_override is not None:
                raise self.refuse(node, "average pooling with ceil_mode or divisor_override: NIR's AvgPool2d has neither")
            kernel, padding = _pair(m.kernel_size), _pair(m.padding)
            stride = kernel if m.stride is None or m.stride == [] else _pair(m.stride)
            if any(padding) and not m.count_include_pad:
                raise self.refuse(node, "padded average pooling with count_include_pad=False: NIR's AvgPool2d counts "
                                        "the padding")
        if self.pooling == "sum" and any(padding):
            raise self.refuse(node, "padded pooling as SumPool2d: its readers (Norse, sinabs) ignore the padding; use "
                                    "pooling='avg'")
        return kernel, stride, padding, float(kernel[0] * kernel[1]) if self.pooling == "sum" else 1.0

    def _pool_module(self, node: Node) -> nn.Module:
        args, kwargs = list(node.args[1:]), dict(node.kwargs)
        if node.target == "F.adaptive_avg_pool2d":
            return nn.AdaptiveAvgPool2d(*args, **kwargs)
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        params = dict(zip(names, args))
        params.update(kwargs)
        return nn.AvgPool2d(**params)

    def _write_pool(self, node: Node) -> None:
        kernel, stride, padding, factor = self._pool(node)
        value = self._value(node)
        shape = self._shape(node.name)
        cls = self.nir.SumPool2d if self.pooling == "sum" else self.nir.AvgPool2d
        out: list[_Part] = []
        for i, part in enumerate(value.parts):
            name = self.add(node.name if len(value.parts) == 1 else f"{node.name}_part{i}",
                            cls(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding)))
            amp = self.connect(part.terms, name, None, (part.size, *value.shape[1:]))
            out.append(_Part(part.size, [_Term(name, amp / factor)]))
        self.values[node.name] = _Value(shape, out)

    def _write_mean(self, node: Node) -> None:
        value = self._value(node)
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        dims = {d % 4 for d in dims} if isinstance(dims, (tuple, list)) else None
        if len(value.shape) != 3 or dims != {2, 3} or set(node.kwargs) - {"dim", "keepdim"}:
            raise self.refuse(node, "a mean that is not over the two spatial dimensions of an image (global average "
                                    "pooling); NIR has no node for it")
        kernel = value.shape[1:]
        cls = self.nir.SumPool2d if self.pooling == "sum" else self.nir.AvgPool2d
        factor = float(kernel[0] * kernel[1]) if self.pooling == "sum" else 1.0
        pooled: list[_Part] = []
        for i, part in enumerate(value.parts):
            name = self.add(f"{node.name}_pool" if len(value.parts) == 1 else f"{node.name}_pool{i}",
                            cls(kernel_size=np.array(kernel), stride=np.array(kernel), padding=np.zeros(2, np.int64)))
            amp = self.connect(part.terms, name, None, (part.size, *kernel))
            pooled.append(_Part(part.size, [_Term(name, amp / factor)]))
        self.values[node.name] = _Value((value.shape[0], 1, 1), pooled)
        if not keepdim:
            self.values[node.name] = self._flattened(node, self.values[node.name], f"{node.name}_flatten")

    def _write_flatten(self, node: Node) -> None:
        self.values[node.name] = self._flattened(node, self._value(node), node.name)

    def _flattened(self, node: Node, value: _Value, name: str) -> _Value:
        """value [C, ...] flattened to [C * ...]: one NIR Flatten per part, the scales repeated per position."""
        positions = math.prod(value.shape[1:])
        out: list[_Part] = []
        for i, part in enumerate(value.parts):
            part_shape = (part.size, *value.shape[1:])
            # negative dims: every reader (snnTorch, Norse, sinabs) reads them the same, with or without a batch dim
            flat = self.nir.Flatten(input_type={"input": np.array(part_shape)}, start_dim=-len(part_shape), end_dim=-1)
            flat_name = self.add(name if len(value.parts) == 1 else f"{name}_part{i}", flat)
            amp = self.connect(part.terms, flat_name, None, part_shape)
            out.append(_Part(part.size * positions, [_Term(flat_name, amp.repeat_interleave(positions))]))
        return _Value((math.prod(value.shape),), out)

    def _write_identity(self, node: Node) -> None:
        self.values[node.name] = self._value(node)

    def _write_add(self, node: Node) -> None:
        refs = [a for a in node.args]
        if len(refs) != 2 or node.kwargs or not all(isinstance(r, Ref) and r.name in self.values for r in refs):
            raise self.refuse(node, "only the sum of two values (a residual addition) is written, as fan-in edges; "
                                    "NIR has no node to add a constant or a scaled value")
        a, b = (self.values[r.name] for r in refs)
        if [p.size for p in a.parts] != [p.size for p in b.parts]:
            raise self.refuse(node, "an addition of values concatenated differently")
        parts = []
        for pa, pb in zip(a.parts, b.parts):
            merged: dict[str, _Term] = {}
            for t in pa.terms + pb.terms:  # x + x: one edge whose scale counts twice
                merged[t.node] = _Term(t.node, merged[t.node].amp + t.amp) if t.node in merged else t
            parts.append(_Part(pa.size, list(merged.values())))
        self.values[node.name] = _Value(a.shape, parts)

    def _cat_inputs(self, node: Node) -> list[str]:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        return [r.name for r in iter_refs(tensors)]

    def _write_cat(self, node: Node) -> None:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        shape = self._shape(node.name)
        if not isinstance(dim, int) or dim % (len(shape) + 1) != 1:
            raise self.refuse(node, f"concatenation along dim {dim}: NIR can express a concatenation of channels only")
        names = self._cat_inputs(node)
        if len(set(names)) != len(names):
            raise self.refuse(node, "a concatenation that repeats a value")
        parts = [p for r in names for p in self.values[r].parts]
        self.values[node.name] = _Value(shape, parts)


def _resolve(value: Any, env: dict[str, Any]) -> Any:
    return map_refs(value, lambda r: env[r.name])
