"""Save and load a SpikingModel: `snn.json` (graph, neurons, method) + `weights.safetensors`.

Nothing is unpickled: module types are looked up in an allow-list, functions in the conversion
op table, and tensors come from safetensors. Each file is written to a temporary name and moved
into place, the JSON last, carrying the SHA-256 of the weights so a mismatch is detected on load.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..conversion import ops
from ..conversion.graph import Node, Program, Ref
from ..errors import CheckpointError
from ..outdir import replace_atomic
from ..neurons import IFNeuron, SignedIFNeuron, SNMNeuron, SpikingNeuron
from ..simulation.engine import SpikingModel
from ..simulation.pooling import SpikingMaxPool

FORMAT = "snnconvert.spiking_model"
VERSION = 1
WEIGHTS, DESCRIPTION = "weights.safetensors", "snn.json"
NEURON_TYPES = {c.__name__: c for c in (IFNeuron, SNMNeuron, SignedIFNeuron)}
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
        d: dict[str, Any] = {"type": type(m).__name__, "v_init": m.v_init}
        if isinstance(m, IFNeuron):
            d["reset"] = m.reset_mode.value
        return d
    if isinstance(m, SpikingMaxPool):
        return {"type": "SpikingMaxPool", "pool": type(m.pool).__name__, "config": _module_config(m.pool)}
    name = type(m).__name__
    if ops.LAYER_TYPES.get(name) is not type(m):
        raise CheckpointError(f"cannot save layer of type {name}: not a supported spiking-model layer")
    return {"type": name, "config": _module_config(m)}


def _build_layer(key: str, d: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Module:
    kind = d.get("type")
    if kind in NEURON_TYPES:
        thr = tensors.get(f"program.layers.{key}.threshold")
        if thr is None:
            raise CheckpointError(f"neuron '{key}' has no threshold in {WEIGHTS}")
        kw = {"reset": d["reset"]} if kind == "IFNeuron" else {}
        return NEURON_TYPES[kind](thr, v_init=d["v_init"], **kw)
    if kind == "SpikingMaxPool":
        if d.get("pool") not in POOL_TYPES:
            raise CheckpointError(f"unknown pooling type {d.get('pool')!r} for layer '{key}'")
        return SpikingMaxPool(POOL_TYPES[d["pool"]](**d["config"]))
    if kind not in ops.LAYER_TYPES:
        raise CheckpointError(f"layer '{key}' has type {kind!r}, which is not an allowed layer type")
    return ops.LAYER_TYPES[kind](**d["config"])


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        replace_atomic(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, delete=True)
        probe.close()
    except OSError as e:
        raise CheckpointError(f"cannot write to directory {str(out)!r}: {e.strerror or e}") from e
    layers = {k: _describe_layer(m) for k, m in snn.program.layers.items()}
    nodes = [{"name": n.name, "kind": n.kind, "target": n.target, "args": _encode(n.args),
              "kwargs": _encode(n.kwargs)} for n in snn.program.nodes]
    tensors = {k: v.detach().cpu().contiguous() for k, v in snn.state_dict().items()}
    _atomic_write(out / WEIGHTS, lambda p: save_file(tensors, p))
    desc = {"format": FORMAT, "version": VERSION, "method": snn.method, "default_T": snn.default_T,
            "layers": layers, "nodes": nodes, "weights_sha256": _sha256(out / WEIGHTS)}

    def write_json(p: str) -> None:
        with open(p, "w") as f:
            json.dump(desc, f, indent=1)

    _atomic_write(out / DESCRIPTION, write_json)
    return out


_LAYER_KINDS = {"layer": "a layer", "activation": "a neuron", "maxpool": "a spiking max pool"}


def _check_nodes(nodes: list[Node], layers: dict[str, nn.Module]) -> None:
    """Refuse, at load time, a graph that could not run or that reaches outside the op table: unknown
    kinds, functions or methods, attributes with a leading underscore (getattr(x, "__class__") would
    open the way to arbitrary objects), modules of the wrong kind, references to later or unknown nodes."""
    if len(nodes) < 2 or nodes[0].kind != "input" or nodes[-1].kind != "output":
        raise CheckpointError("the graph must start with its input node and end with its output node")
    seen: set[str] = set()
    for i, n in enumerate(nodes):
        if n.name in seen:
            raise CheckpointError(f"node name '{n.name}' is used twice")
        if n.kind in ("input", "output") and 0 < i < len(nodes) - 1:
            raise CheckpointError(f"node '{n.name}': only the first node is the input and the last the output")
        if n.kind in _LAYER_KINDS:
            m = layers.get(n.target)
            expected = {"layer": type(m).__name__ in ops.LAYER_TYPES, "activation": isinstance(m, SpikingNeuron),
                        "maxpool": isinstance(m, SpikingMaxPool)}[n.kind]
            if m is None or not expected:
                raise CheckpointError(f"node '{n.name}' needs {_LAYER_KINDS[n.kind]} '{n.target}', which the "
                                      "description does not define")
        elif n.kind == "function":
            if n.target not in ops.FUNCTIONS:
                raise CheckpointError(f"node '{n.name}' calls {n.target!r}, which is not an allowed function")
            if n.target == "getattr" and not (len(n.args) >= 2 and isinstance(n.args[1], str)
                                              and not n.args[1].startswith("_")):
                raise CheckpointError(f"node '{n.name}' reads an attribute that is not allowed: {n.args[1:]!r}")
        elif n.kind == "method":
            if n.target not in ops.METHODS:
                raise CheckpointError(f"node '{n.name}' calls method {n.target!r}, which is not allowed")
        elif n.kind not in ("input", "output"):
            raise CheckpointError(f"node '{n.name}' has unknown kind {n.kind!r}")
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
    if desc.get("version") != VERSION:
        raise CheckpointError(f"{str(d / DESCRIPTION)!r} has format version {desc.get('version')}, "
                              f"this snnconvert reads version {VERSION}")
    if desc.get("weights_sha256") != _sha256(d / WEIGHTS):
        raise CheckpointError(f"{str(d / WEIGHTS)!r} does not match {DESCRIPTION} (corrupt or replaced file)")
    try:
        tensors = load_file(str(d / WEIGHTS))
    except Exception as e:  # safetensors raises its own error type on a malformed file
        raise CheckpointError(f"{str(d / WEIGHTS)!r} is not a valid safetensors file: {e}") from e
    try:
        layers = {k: _build_layer(k, v, tensors) for k, v in desc["layers"].items()}
        nodes = [Node(n["name"], n["kind"], n["target"], _decode(n["args"]), _decode(n["kwargs"]))
                 for n in desc["nodes"]]
        _check_nodes(nodes, layers)
        snn = SpikingModel(Program(nodes, layers), desc.get("method"), desc.get("default_T"))
        snn.load_state_dict(tensors, strict=True)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot rebuild the spiking model from {str(d)!r}: {e}") from e
    return snn.eval()
