"""import_nir(path): a NIR graph file as a SpikingModel that runs on snnconvert's engine.

Read: Input, Output, Affine, Linear, Conv2d, AvgPool2d, SumPool2d (an average pool times the kernel
area, as NIR's PyTorch readers compute it), Flatten (dims of one sample, as the NIR spec counts them)
and IF nodes with r = 1, v_reset = 0 and one v_threshold, one NIR step per time step. NIR's IF fires on
v > v_threshold, snnconvert's on v >= theta: theta is the next float32 above v_threshold, the same spikes
(divided by theta after the neuron when theta is not 1: NIR's spikes are 0/1). Several edges
into a node are summed. An IF node whose metadata says reset "subtract" (written by
export_nir(..., allow_soft_reset=True)) becomes a soft-reset neuron, with its recorded initial
potential. Anything else (LIF, recurrent edges, nested graphs, ...) is refused, naming the node.

The graph is translated into the description that snnconvert.save() writes and built by io.checkpoint,
so it is checked like a saved model.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..io.checkpoint import FORMAT as SNN_FORMAT
from ..io.checkpoint import VERSION as SNN_VERSION
from ..io.checkpoint import from_description
from ..simulation import SpikingModel
from .nir_format import RESET_KEY, SUBTRACT, V0_KEY, require_nir

READS = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "IF")


def import_nir(path: str | Path) -> SpikingModel:
    """The network in the NIR file `path` as a SpikingModel (CPU, float32). CheckpointError naming the file
    (and the node) for a missing or unreadable file and for nodes snnconvert does not simulate."""
    nir = require_nir(CheckpointError, "NIR import")
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{str(p)!r} not found: give a NIR graph file (written by nir.write or "
                              "snnconvert.export_nir)")
    try:
        graph = nir.read(p)
    except Exception as e:  # h5py and nir raise many types for foreign or broken files
        raise CheckpointError(f"{str(p)!r} is not a NIR graph that nir {nir.version} can read "
                              f"({type(e).__name__}: {e})") from None
    return _Reader(nir, graph, str(p)).model()


def _array(value: Any) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)


def _ints(value: Any, n: int = 2) -> list[int]:
    a = _array(value).astype(np.int64).reshape(-1)
    return [int(a[0])] * n if a.size == 1 else [int(x) for x in a]


def _ref(name: str) -> dict[str, str]:
    return {"ref": name}


class _Reader:
    def __init__(self, nir: Any, graph: Any, source: str) -> None:
        self.nir, self.graph, self.source = nir, graph, source
        self.nodes: list[dict[str, Any]] = []
        self.layers: dict[str, dict[str, Any]] = {}
        self.tensors: dict[str, torch.Tensor] = {}
        self.names: dict[str, str] = {}  # NIR node name -> its value's node name in the program
        self.used: set[str] = set()
        self.input_shape: list[int] | None = None

    def fail(self, name: str, why: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: node '{name}' ({type(self.graph.nodes[name]).__name__}): {why}")

    def _key(self, name: str) -> str:
        """A fresh program name for NIR node `name` (a layer key too: no '.', nothing ModuleDict defines)."""
        key = re.sub(r"\W", "_", name) or "node"
        if key[0].isdigit() or hasattr(nn.ModuleDict, key):
            key = f"nir_{key}"
        base, k = key, 1
        while key in self.used:
            key, k = f"{base}_{k}", k + 1
        self.used.add(key)
        return key

    def _emit(self, name: str, kind: str, target: str, *args: Any) -> str:
        self.nodes.append({"name": name, "kind": kind, "target": target, "args": {"tuple": list(args)},
                           "kwargs": {"dict": {}}})
        return name

    def _layer(self, key: str, description: dict[str, Any], **tensors: Any) -> None:
        self.layers[key] = description
        for attr, value in tensors.items():
            self.tensors[f"program.layers.{key}.{attr}"] = torch.as_tensor(_array(value), dtype=torch.float32).contiguous()

    def _order(self) -> list[str]:
        """The node names in an order where every node comes after its inputs; refuses cycles."""
        preds = {n: [] for n in self.graph.nodes}
        for src, dst in self.graph.edges:
            preds[dst].append(src)
        self.preds = preds
        order, done = [], set()
        pending = list(self.graph.nodes)
        while pending:
            ready = [n for n in pending if all(p in done for p in preds[n])]
            if not ready:
                raise self.fail(pending[0], "it is part of a cycle (recurrent edges); snnconvert simulates "
                                            "feed-forward graphs only")
            for n in ready:
                order.append(n)
                done.add(n)
            pending = [n for n in pending if n not in done]
        return order

    def _input_of(self, name: str) -> str:
        """The program value feeding `name`: its one input, or the sum of several (NIR sums fan-in)."""
        preds = self.preds[name]
        if not preds:
            raise self.fail(name, "it has no input edge")
        value = self.names[preds[0]]
        for i, p in enumerate(preds[1:], start=1):
            value = self._emit(self._key(f"{name}_in{i}"), "function", "add", _ref(value), _ref(self.names[p]))
        return value

    def model(self) -> SpikingModel:
        kinds = {type(n).__name__ for n in self.graph.nodes.values()}
        for name, node in self.graph.nodes.items():
            if type(node).__name__ not in READS:
                raise self.fail(name, f"snnconvert reads {', '.join(READS)} nodes only")
        inputs = [n for n, v in self.graph.nodes.items() if isinstance(v, self.nir.Input)]
        outputs = [n for n, v in self.graph.nodes.items() if isinstance(v, self.nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise CheckpointError(f"{self.source}: the graph has {len(inputs)} inputs and {len(outputs)} outputs; "
                                  "snnconvert reads graphs with one of each")
        order = self._order()
        order.remove(inputs[0])
        order.remove(outputs[0])
        for name in [inputs[0], *order, outputs[0]]:
            getattr(self, f"_read_{type(self.graph.nodes[name]).__name__}")(name, self.graph.nodes[name])
        metadata = self.graph.metadata if isinstance(self.graph.metadata, dict) else {}
        method = {"name": "nir", "file": self.source, "nir_version": str(self.nir.version), "input_shape": self.input_shape,
                  "nodes": sorted(kinds)}
        for key in ("method", "reset", "source"):
            if isinstance(metadata.get(key), str):
                method[f"nir_{key}"] = metadata[key]
        description = {"format": SNN_FORMAT, "version": SNN_VERSION, "method": method, "method_config": None,
                       "default_T": None, "layers": self.layers, "nodes": self.nodes}
        snn = from_description(description, self.tensors, self.source)
        self._probe(snn)
        return snn

    def _probe(self, snn: SpikingModel) -> None:
        """One step on zeros: a graph whose shapes do not fit together is refused here, not at first use."""
        try:
            with torch.no_grad():
                snn(torch.zeros(1, *self.input_shape), 1)
        except Exception as e:  # torch raises many types for mismatched shapes
            raise CheckpointError(f"{self.source}: the graph does not run on inputs of shape {self.input_shape} "
                                  f"({type(e).__name__}: {str(e).splitlines()[0]})") from None

    # ---- one method per NIR node type ----------------------------------------------------------------

    def _read_Input(self, name: str, node: Any) -> None:
        shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
        if shape is None:
            raise self.fail(name, "the input has no shape")
        self.input_shape = [int(d) for d in _array(shape).reshape(-1)]
        key = self._key(name)
        self.names[name] = self._emit(key, "input", key)

    def _read_Output(self, name: str, node: Any) -> None:
        self._emit(self._key(name), "output", "output", _ref(self._input_of(name)))

    def _read_Affine(self, name: str, node: Any) -> None:
        self._linear(name, node.weight, node.bias)

    def _read_Linear(self, name: str, node: Any) -> None:
        self._linear(name, node.weight, None)

    def _linear(self, name: str, weight: Any, bias: Any) -> None:
        w = _array(weight)
        if w.ndim != 2:
            raise self.fail(name, f"a weight of shape {list(w.shape)}; snnconvert reads 2-d weights [out, in]")
        src, key = self._input_of(name), self._key(name)
        self._layer(key, {"type": "Linear", "config": {"in_features": int(w.shape[1]), "out_features": int(w.shape[0]),
                                                       "bias": bias is not None}},
                    weight=w, **({} if bias is None else {"bias": bias}))
        self.names[name] = self._emit(key, "layer", key, _ref(src))

    def _read_Conv2d(self, name: str, node: Any) -> None:
        w = _array(node.weight)
        if w.ndim != 4:
            raise self.fail(name, f"a weight of shape {list(w.shape)}; Conv2d weights are [out, in / groups, kh, kw]")
        groups = int(_array(node.groups))
        padding = node.padding if isinstance(node.padding, str) else _ints(node.padding)
        src, key = self._input_of(name), self._key(name)
        bias = node.bias if node.bias is not None else np.zeros(w.shape[0], np.float32)
        self._layer(key, {"type": "Conv2d", "config": {
            "in_channels": int(w.shape[1]) * groups, "out_channels": int(w.shape[0]), "kernel_size": list(w.shape[2:]),
            "stride": _ints(node.stride), "padding": padding, "dilation": _ints(node.dilation), "groups": groups,
            "bias": True}}, weight=w, bias=bias)
        self.names[name] = self._emit(key, "layer", key, _ref(src))

    def _pool(self, name: str, node: Any, padding: list[int]) -> str:
        src, key = self._input_of(name), self._key(name)
        self._layer(key, {"type": "AvgPool2d", "config": {"kernel_size": _ints(node.kernel_size),
                                                          "stride": _ints(node.stride), "padding": padding}})
        return self._emit(key, "layer", key, _ref(src))

    def _read_AvgPool2d(self, name: str, node: Any) -> None:
        self.names[name] = self._pool(name, node, _ints(node.padding))

    def _read_SumPool2d(self, name: str, node: Any) -> None:
        if any(_ints(node.padding)):
            raise self.fail(name, "padded sum pooling: NIR's PyTorch readers ignore the padding, so its meaning is unclear")
        kh, kw = _ints(node.kernel_size)
        pooled = self._pool(name, node, [0, 0])
        # as torch.nn.LPPool2d(1, ...) computes it in sinabs, Norse and nirtorch: the average times the area
        self.names[name] = self._emit(self._key(f"{name}_sum"), "function", "mul", _ref(pooled), float(kh * kw))

    def _read_Flatten(self, name: str, node: Any) -> None:
        start, end = (int(_array(d)) for d in (node.start_dim, node.end_dim))
        # NIR counts the dims of one sample; torch's Flatten counts the batch dim too
        start, end = (d + 1 if d >= 0 else d for d in (start, end))
        src, key = self._input_of(name), self._key(name)
        self._layer(key, {"type": "Flatten", "config": {"start_dim": start, "end_dim": end}})
        self.names[name] = self._emit(key, "layer", key, _ref(src))

    def _read_IF(self, name: str, node: Any) -> None:
        r, v_thr = _array(node.r).astype(np.float32), _array(node.v_threshold).astype(np.float32)
        v_reset = np.zeros_like(v_thr) if node.v_reset is None else _array(node.v_reset)
        if not np.all(r == 1):
            raise self.fail(name, f"r = {np.unique(r)[:4]}: snnconvert's neurons add their input unscaled (r = 1, one "
                                  "NIR step per time step)")
        if not np.all(v_reset == 0):
            raise self.fail(name, "v_reset is not 0: snnconvert's IF neurons reset to zero or by subtraction")
        if not (np.all(np.isfinite(v_thr)) and np.all(v_thr >= 0)):
            raise self.fail(name, "v_threshold must be finite and >= 0")
        if v_thr.size == 0 or not np.all(v_thr == v_thr.reshape(-1)[0]):
            raise self.fail(name, "its v_threshold differs between neurons; snnconvert reads one threshold per IF node "
                                  "(fold per-neuron thresholds into the weights, as snnconvert's export does)")
        # fires on v > v_threshold = fires on v >= the next float32 above it
        theta = np.nextafter(v_thr.reshape(-1)[0], np.float32(np.inf)).astype(np.float32)
        metadata = node.metadata if isinstance(node.metadata, dict) else {}
        kind = "if_soft" if metadata.get(RESET_KEY) == SUBTRACT else "if_hard"
        tensors: dict[str, Any] = {"threshold": theta}
        if V0_KEY in metadata:
            v0 = _array(metadata[V0_KEY]).astype(np.float32)
            if not np.all(np.isfinite(v0)):
                raise self.fail(name, f"its metadata '{V0_KEY}' (the initial potential) is not finite")
            tensors["v_offset"] = v0 * theta
        src, key = self._input_of(name), self._key(name)
        self._layer(key, {"type": "neuron", "kind": kind, "v_init": 0.0}, **tensors)
        self.names[name] = self._emit(key, "activation", key, _ref(src))
        if theta != 1:  # snnconvert's spikes carry the threshold, NIR's are 0/1: theta * s / theta is s exactly
            self.names[name] = self._emit(self._key(f"{name}_spikes"), "function", "truediv", _ref(key), float(theta))
