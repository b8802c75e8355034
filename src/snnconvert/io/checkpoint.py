"""Save and load a SpikingModel: `snn.json` (graph, neurons, method) + `weights.safetensors`.

Nothing is unpickled: module types are looked up in an allow-list (the op table's layer types),
neurons in the neuron registry, functions in the op table, and tensors come from safetensors. Each
file is written atomically (io.weights / files.write_json_atomic), the JSON last, carrying the SHA-256 of the weights
so a mismatch is detected on load. Format version 2 describes a neuron by its registry kind;
version 1 files (neurons by class name) still load.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..files import ensure_writable_dir, write_json_atomic
from ..graph import ACTIVATION, FUNCTION, INPUT, LAYER, MAXPOOL, METHOD, OUTPUT, Node, NodeKind, Program, Ref, ops
from ..methods import method_from_config
from ..neurons import SpikingMaxPool, SpikingNeuron, neuron_from_config
from ..simulation import SpikingModel
from .weights import read_safetensors, write_safetensors

FORMAT = "snnconvert.spiking_model"
VERSION = 2
READABLE_VERSIONS = (1, 2)
WEIGHTS, DESCRIPTION = "weights.safetensors", "snn.json"
NEURON = "neuron"  # the "type" of a neuron's layer description
_V1_NEURON_KINDS = {"SNMNeuron": "snm", "SignedIFNeuron": "signed_if"}  # IFNeuron: "if_" + its reset
POOL_TYPES = {c.__name__: c for c in ops.MAXPOOL_TYPES}
_SKIP_ARGS = {"self", "device", "dtype"}


def _encode(v: Any) -> Any:
    if isinstance(v, Ref):
        return {"ref": v.name}
    if isinstance(v, tuple):
        return {"tuple": [_encode(x) for x in v]}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, dict):
        return {"dict": {k: _encode(x) for k, x in v.items()}}
    if isinstance(v, slice):
        return {"slice": [_encode(v.start), _encode(v.stop), _encode(v.step)]}
    if isinstance(v, (int, float, bool, str)) or v is None:
        return v
    raise CheckpointError(f"cannot save an argument of type {type(v).__name__}")


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        if "ref" in v:
            return Ref(v["ref"])
        if "tuple" in v:
            return tuple(_decode(x) for x in v["tuple"])
        if "dict" in v:
            return {k: _decode(x) for k, x in v["dict"].items()}
        if "slice" in v:
            return slice(*(_decode(x) for x in v["slice"]))
        raise CheckpointError(f"unknown encoded value {v!r}")
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def _module_config(m: nn.Module) -> dict[str, Any]:
    """Constructor arguments of a torch layer, read back from its attributes."""
    cfg: dict[str, Any] = {}
    for name in inspect.signature(type(m).__init__).parameters:
        if name in _SKIP_ARGS or not hasattr(m, name):
            continue
        value = getattr(m, name)
        if name == "bias" and not isinstance(value, bool):
            value = value is not None
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, torch.Size):
            value = list(value)
        if not isinstance(value, (int, float, bool, str, list)) and value is not None:
            raise CheckpointError(f"cannot save layer {type(m).__name__}: argument {name}={value!r}")
        cfg[name] = value
    return cfg


def _describe_layer(m: nn.Module) -> dict[str, Any]:
    if isinstance(m, SpikingNeuron):
        return {"type": NEURON, **m.config()}
    if isinstance(m, SpikingMaxPool):
        return {"type": "SpikingMaxPool", "pool": type(m.pool).__name__, "config": _module_config(m.pool)}
    name = type(m).__name__
    if ops.LAYER_TYPES.get(name) is not type(m):
        raise CheckpointError(f"cannot save layer of type {name}: not a supported spiking-model layer")
    return {"type": name, "config": _module_config(m)}


def _v1_neuron(d: dict[str, Any]) -> dict[str, Any] | None:
    """A version-1 neuron description ({"type": class name, "v_init", "reset"}) as a neuron config."""
    if d.get("type") == "IFNeuron":
        return {"kind": f"if_{d.get('reset')}", "v_init": d.get("v_init")}
    if d.get("type") in _V1_NEURON_KINDS:
        return {"kind": _V1_NEURON_KINDS[d["type"]], "v_init": d.get("v_init")}
    return None


def _build_layer(key: str, d: dict[str, Any], tensors: dict[str, torch.Tensor], version: int) -> nn.Module:
    kind = d.get("type")
    neuron = {k: v for k, v in d.items() if k != "type"} if kind == NEURON and version >= 2 else (
        _v1_neuron(d) if version == 1 else None)
    if neuron is not None:
        thr = tensors.get(f"program.layers.{key}.threshold")
        if thr is None:
            raise CheckpointError(f"neuron '{key}' has no threshold in {WEIGHTS}")
        built = neuron_from_config(neuron, thr)
        offset = tensors.get(f"program.layers.{key}.v_offset")
        if offset is not None:  # potential calibration
            try:
                built.set_initial_offset(offset)
            except ConfigError as e:
                raise CheckpointError(f"neuron '{key}': {e}") from e
        return built
    if kind == "SpikingMaxPool":
        if d.get("pool") not in POOL_TYPES:
            raise CheckpointError(f"unknown pooling type {d.get('pool')!r} for layer '{key}'")
        return SpikingMaxPool(POOL_TYPES[d["pool"]](**d["config"]))
    if kind not in ops.LAYER_TYPES:
        raise CheckpointError(f"layer '{key}' has type {kind!r}, which is not an allowed layer type")
    return ops.LAYER_TYPES[kind](**d["config"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(snn: SpikingModel, directory: str | Path) -> Path:
    """Write `directory/weights.safetensors` and `directory/snn.json`; returns the directory."""
    if not isinstance(snn, SpikingModel):
        raise CheckpointError(f"save() takes a SpikingModel, got {type(snn).__name__}")
    try:
        out = ensure_writable_dir(directory)
    except ConfigError as e:
        raise CheckpointError(f"cannot write the spiking model: {e}") from None
    layers = {k: _describe_layer(m) for k, m in snn.program.layers.items()}
    nodes = [{"name": n.name, "kind": n.kind.value, "target": n.target, "args": _encode(n.args),
              "kwargs": _encode(n.kwargs)} for n in snn.program.nodes]
    write_safetensors(out / WEIGHTS, snn.state_dict(), {})
    desc = {"format": FORMAT, "version": VERSION, "method": snn.method, "method_config": snn.method_config,
            "default_T": snn.default_T, "layers": layers, "nodes": nodes, "weights_sha256": _sha256(out / WEIGHTS)}
    write_json_atomic(out / DESCRIPTION, desc)
    return out


_MODULE_ROLES = {LAYER: "a layer", ACTIVATION: "a neuron", MAXPOOL: "a spiking max pool"}


def _is_role(kind: NodeKind, m: nn.Module | None) -> bool:
    """Whether module `m` may serve a node of `kind`."""
    if kind is LAYER:
        return m is not None and ops.LAYER_TYPES.get(type(m).__name__) is type(m)
    return isinstance(m, SpikingNeuron if kind is ACTIVATION else SpikingMaxPool)


def _node_kind(n: dict[str, Any]) -> NodeKind:
    try:
        return NodeKind(n["kind"])
    except ValueError:
        raise CheckpointError(f"node '{n.get('name')}' has unknown kind {n['kind']!r}") from None


def _check_nodes(nodes: list[Node], layers: dict[str, nn.Module]) -> None:
    """Refuse, at load time, a graph that could not run or that reaches outside the op table: unknown
    kinds, functions or methods, attributes with a leading underscore (getattr(x, "__class__") would
    open the way to arbitrary objects), modules of the wrong kind, references to later or unknown nodes."""
    if len(nodes) < 2 or nodes[0].kind is not INPUT or nodes[-1].kind is not OUTPUT:
        raise CheckpointError("the graph must start with its input node and end with its output node")
    seen: set[str] = set()
    for i, n in enumerate(nodes):
        if n.name in seen:
            raise CheckpointError(f"node name '{n.name}' is used twice")
        if n.kind in (INPUT, OUTPUT) and 0 < i < len(nodes) - 1:
            raise CheckpointError(f"node '{n.name}': only the first node is the input and the last the output")
        if n.kind.calls_module:
            if not _is_role(n.kind, layers.get(n.target)):
                raise CheckpointError(f"node '{n.name}' needs {_MODULE_ROLES[n.kind]} '{n.target}', which the "
                                      "description does not define")
        elif n.kind is FUNCTION:
            if n.target not in ops.FUNCTIONS:
                raise CheckpointError(f"node '{n.name}' calls {n.target!r}, which is not an allowed function")
            if n.target == "getattr" and not (len(n.args) >= 2 and isinstance(n.args[1], str)
                                              and not n.args[1].startswith("_")):
                raise CheckpointError(f"node '{n.name}' reads an attribute that is not allowed: {n.args[1:]!r}")
        elif n.kind is METHOD:
            if n.target not in ops.METHODS:
                raise CheckpointError(f"node '{n.name}' calls method {n.target!r}, which is not allowed")
        for r in n.refs():
            if r not in seen:
                raise CheckpointError(f"node '{n.name}' uses '{r}', which is not an earlier node")
        seen.add(n.name)


def load(directory: str | Path) -> SpikingModel:
    """Load a model written by save(). Raises CheckpointError on missing, corrupt or foreign files."""
    d = Path(directory)
    for name in (DESCRIPTION, WEIGHTS):
        if not (d / name).is_file():
            raise CheckpointError(f"{str(d / name)!r} not found: a saved spiking model is a directory holding "
                                  f"{DESCRIPTION} and {WEIGHTS} (written by snnconvert.save)")
    try:
        desc = json.loads((d / DESCRIPTION).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"{str(d / DESCRIPTION)!r} is not valid JSON: {e}") from e
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise CheckpointError(f"{str(d / DESCRIPTION)!r} is not a snnconvert spiking model description")
    version = desc.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{str(d / DESCRIPTION)!r} has format version {version}, "
                              f"this snnconvert reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    if desc.get("weights_sha256") != _sha256(d / WEIGHTS):
        raise CheckpointError(f"{str(d / WEIGHTS)!r} does not match {DESCRIPTION} (corrupt or replaced file)")
    tensors, _ = read_safetensors(d / WEIGHTS)
    try:
        layers = {k: _build_layer(k, v, tensors, version) for k, v in desc["layers"].items()}
        nodes = [Node(n["name"], _node_kind(n), n["target"], _decode(n["args"]), _decode(n["kwargs"]))
                 for n in desc["nodes"]]
        _check_nodes(nodes, layers)
        method_config = desc.get("method_config")
        if method_config is not None:
            method_from_config(method_config)  # a description that names unknown kinds or rules is refused
        snn = SpikingModel(Program(nodes, layers), desc.get("method"), desc.get("default_T"), method_config)
        snn.load_state_dict(tensors, strict=True)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot rebuild the spiking model from {str(d)!r}: {e}") from e
    return snn.eval()
