"""Save and load a SpikingModel: `snn.json` (graph, neurons, method) + `weights.safetensors`.

Nothing is unpickled: module types are looked up in an allow-list (the op table's layer types),
neurons in the neuron registry, functions in the op table, and tensors come from safetensors. The
two files are replaced as one whole (files.DirectoryWrite); the JSON carries the SHA-256 of the
weights, so a mismatch is detected on load. Format version 2 describes a neuron by its registry kind;
version 1 files (neurons by class name) still load. Loading checks every value of snn.json against
what save() writes (schema.Doc: a CheckpointError naming the file, the key path and what was
expected), builds the layers on the meta device and then puts the stored tensors in: the model is
on the CPU with the stored dtypes (devices and dtypes are never part of a layer's config).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..files import DirectoryWrite, finish_interrupted_write, sha256_file
from ..graph import ACTIVATION, FUNCTION, INPUT, LAYER, MAXPOOL, METHOD, OUTPUT, Node, NodeKind, Program, Ref, ops
from ..methods import method_from_config
from ..neurons import SpikingMaxPool, SpikingNeuron, neuron_from_config
from ..schema import Doc, read_versioned, show, type_hints
from ..simulation import SpikingModel
from .weights import load_state, read_safetensors, safetensors_writer

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


_ENCODED = ('a JSON scalar, a list, or one of {"ref": node name}, {"tuple": [...]}, {"dict": {...}}, '
            '{"slice": [start, stop, step]}')


def _decode(doc: Doc) -> Any:
    """The argument value `_encode` wrote, read from `doc` (CheckpointError naming its key path)."""
    v = doc.value
    if isinstance(v, list):
        return [_decode(x) for x in doc.items()]
    if isinstance(v, dict):
        tag = next(iter(v), None)
        if len(v) != 1 or tag not in _DECODERS:
            raise doc.fail(_ENCODED)
        return _DECODERS[tag](doc[tag])
    if doc.missing:
        raise doc.fail(_ENCODED)
    return v


def _decode_slice(doc: Doc) -> slice:
    parts = doc.items()
    if len(parts) != 3:
        raise doc.fail("a list of 3 values (start, stop, step)")
    return slice(*(_decode(x) for x in parts))


_DECODERS = {
    "ref": lambda d: Ref(d.as_str()),
    "tuple": lambda d: tuple(_decode(x) for x in d.items()),
    "dict": lambda d: {k: _decode(x) for k, x in d.entries().items()},
    "slice": _decode_slice,
}


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


def _neuron_doc(doc: Doc, version: int) -> Doc | None:
    """The neuron config in layer description `doc`, None if it describes no neuron. Version 2:
    {"type": "neuron", "kind", "v_init"}; version 1: {"type": class name, "v_init", "reset" (IF only)}."""
    kind = doc["type"].value
    if version >= 2:
        return doc if kind == NEURON else None
    if kind == "IFNeuron":
        v1 = {"kind": f"if_{doc['reset'].as_str(('hard', 'soft'))}", "v_init": doc["v_init"].value}
    elif isinstance(kind, str) and kind in _V1_NEURON_KINDS:
        v1 = {"kind": _V1_NEURON_KINDS[kind], "v_init": doc["v_init"].value}
    else:
        return None
    return Doc(v1, doc.source, doc.path)


def _build_neuron(key: str, doc: Doc, tensors: dict[str, torch.Tensor]) -> SpikingNeuron:
    """The neuron `doc` describes, with its threshold (and initial potential offset) from the weights."""
    thr = tensors.get(f"program.layers.{key}.threshold")
    if thr is None:
        raise doc.error(f"the neuron has no threshold in {WEIGHTS} (tensor 'program.layers.{key}.threshold')")
    built = neuron_from_config(doc, thr)
    offset = tensors.get(f"program.layers.{key}.v_offset")
    if offset is not None:  # potential calibration
        try:
            built.set_initial_offset(offset)
        except ConfigError as e:
            raise doc.error(str(e)) from None
    return built


_NOT_STORED = ("; devices and dtypes are not stored: a model loads on the CPU with the dtypes of its weights, "
               "move it with .to()")


def _layer_args(cls: type[nn.Module], doc: Doc) -> dict[str, Any]:
    """The constructor arguments of `cls` in `doc` (an object: argument -> value), each checked against
    the constructor's type hint; required ones must be there, unknown ones (device, dtype) are refused."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values()
              if p.name not in _SKIP_ARGS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    doc.check_keys([p.name for p in params], _NOT_STORED)
    hints = type_hints(cls.__init__)
    return {p.name: doc[p.name].as_type(hints.get(p.name, Any)) for p in params
            if not doc[p.name].missing or p.default is p.empty}


def _construct(cls: type[nn.Module], doc: Doc) -> nn.Module:
    """cls(**arguments in `doc`) on the meta device: no memory for its tensors, which come from the
    weights file (load_state with assign); CheckpointError naming `doc` if the constructor refuses."""
    args = _layer_args(cls, doc)
    try:
        with torch.device("meta"):
            return cls(**args)
    except Exception as e:  # torch's constructors raise many types (TypeError, ValueError, RuntimeError, ...)
        raise doc.error(f"{cls.__name__}({show(args)}) cannot be built: {e}") from None


def _build_layer(key: str, doc: Doc, tensors: dict[str, torch.Tensor], version: int) -> nn.Module:
    """The module of layer description `doc`: a neuron, a spike-gated max pool, or a layer of the op
    table (its tensors still on the meta device)."""
    if not key or "." in key:
        raise doc.error("a layer key must be a non-empty name without '.'")
    neuron = _neuron_doc(doc, version)
    if neuron is not None:
        return _build_neuron(key, neuron, tensors)
    kind = doc["type"]
    if kind.value == "SpikingMaxPool":
        pool = POOL_TYPES[doc["pool"].as_str(POOL_TYPES)]
        return SpikingMaxPool(_construct(pool, doc["config"]))
    if not isinstance(kind.value, str) or kind.value not in ops.LAYER_TYPES:
        raise kind.fail(f"{NEURON!r}, 'SpikingMaxPool' or an allowed layer type ({', '.join(ops.LAYER_TYPES)})")
    return _construct(ops.LAYER_TYPES[kind.value], doc["config"])


def save(snn: SpikingModel, directory: str | Path) -> Path:
    """Write `directory/weights.safetensors` and `directory/snn.json` as one whole (files.DirectoryWrite:
    a reader sees the old pair or the new pair, even after a kill); returns the directory."""
    if not isinstance(snn, SpikingModel):
        raise CheckpointError(f"save() takes a SpikingModel, got {type(snn).__name__}")
    layers = {k: _describe_layer(m) for k, m in snn.program.layers.items()}
    nodes = [{"name": n.name, "kind": n.kind.value, "target": n.target, "args": _encode(n.args),
              "kwargs": _encode(n.kwargs)} for n in snn.program.nodes]
    with DirectoryWrite(directory) as w:
        weights = w.write(WEIGHTS, safetensors_writer(snn.state_dict(), {}))
        w.write_json(DESCRIPTION, {"format": FORMAT, "version": VERSION, "method": snn.method,
                                   "method_config": snn.method_config, "default_T": snn.default_T,
                                   "layers": layers, "nodes": nodes, "weights_sha256": sha256_file(weights)})
    return w.directory


_MODULE_ROLES = {LAYER: "a layer", ACTIVATION: "a neuron", MAXPOOL: "a spiking max pool"}


def _is_role(kind: NodeKind, m: nn.Module | None) -> bool:
    """Whether module `m` may serve a node of `kind`."""
    if kind is LAYER:
        return m is not None and ops.LAYER_TYPES.get(type(m).__name__) is type(m)
    return isinstance(m, SpikingNeuron if kind is ACTIVATION else SpikingMaxPool)


def _node(doc: Doc) -> Node:
    """One entry of the description's "nodes" list: name, kind, target, args (an encoded tuple), kwargs
    (an encoded dict)."""
    args, kwargs = _decode(doc["args"]), _decode(doc["kwargs"])
    if not isinstance(args, tuple):
        raise doc["args"].fail('an encoded tuple ({"tuple": [...]})')
    if not isinstance(kwargs, dict):
        raise doc["kwargs"].fail('an encoded dict ({"dict": {...}})')
    kind = NodeKind(doc["kind"].as_str([k.value for k in NodeKind]))
    return Node(doc["name"].as_str(), kind, doc["target"].as_str(), args, kwargs)


def _check_nodes(nodes: list[Node], layers: dict[str, nn.Module], source: str) -> None:
    """Refuse, at load time, a graph that could not run or that reaches outside the op table: unknown
    kinds, functions or methods, attributes with a leading underscore (getattr(x, "__class__") would
    open the way to arbitrary objects), modules of the wrong kind, references to later or unknown nodes.
    Messages name `source` (the description file)."""
    def bad(message: str) -> CheckpointError:
        return CheckpointError(f"{source}: nodes: {message}")

    if len(nodes) < 2 or nodes[0].kind is not INPUT or nodes[-1].kind is not OUTPUT:
        raise bad("the graph must start with its input node and end with its output node")
    seen: set[str] = set()
    for i, n in enumerate(nodes):
        if n.name in seen:
            raise bad(f"node name '{n.name}' is used twice")
        if n.kind in (INPUT, OUTPUT) and 0 < i < len(nodes) - 1:
            raise bad(f"node '{n.name}': only the first node is the input and the last the output")
        if n.kind.calls_module:
            if not _is_role(n.kind, layers.get(n.target)):
                raise bad(f"node '{n.name}' needs {_MODULE_ROLES[n.kind]} '{n.target}', which the description "
                          "does not define")
        elif n.kind is FUNCTION:
            if n.target not in ops.FUNCTIONS:
                raise bad(f"node '{n.name}' calls {n.target!r}, which is not an allowed function")
            if n.target == "getattr" and not (len(n.args) >= 2 and isinstance(n.args[1], str)
                                              and not n.args[1].startswith("_")):
                raise bad(f"node '{n.name}' reads an attribute that is not allowed: {show(n.args[1:])}")
        elif n.kind is METHOD:
            if n.target not in ops.METHODS:
                raise bad(f"node '{n.name}' calls method {n.target!r}, which is not allowed")
        for r in n.refs():
            if r not in seen:
                raise bad(f"node '{n.name}' uses '{r}', which is not an earlier node")
        seen.add(n.name)


def load(directory: str | Path) -> SpikingModel:
    """Load a model written by save(), on the CPU with the stored dtypes. Raises CheckpointError on missing,
    corrupt or foreign files, naming the file, the key path and what was expected, and on NaN/inf weights."""
    d = Path(directory)
    finish_interrupted_write(d)  # a save() killed after its commit is completed, one killed before it cleaned
    for name in (DESCRIPTION, WEIGHTS):
        if not (d / name).is_file():
            raise CheckpointError(f"{str(d / name)!r} not found: a saved spiking model is a directory holding "
                                  f"{DESCRIPTION} and {WEIGHTS} (written by snnconvert.save)")
    doc, version = _read_description(d / DESCRIPTION)
    if doc.value.get("weights_sha256") != sha256_file(d / WEIGHTS):
        raise CheckpointError(f"{str(d / WEIGHTS)!r} does not match {DESCRIPTION} (corrupt or replaced file)")
    tensors, _ = read_safetensors(d / WEIGHTS)
    try:
        snn = _build_model(doc, tensors, version)
        load_state(snn, tensors, d / WEIGHTS, assign=True)  # the stored tensors, dtypes kept, replace the meta ones
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot rebuild the spiking model from {str(d)!r}: {e}") from e
    return snn.eval()


def _read_description(path: Path) -> tuple[Doc, int]:
    """snn.json as a Doc, and its format version (CheckpointError unless it is one this snnconvert reads)."""
    return read_versioned(path, FORMAT, READABLE_VERSIONS, "spiking model description")


def _build_model(doc: Doc, tensors: dict[str, torch.Tensor], version: int) -> SpikingModel:
    """The SpikingModel the description `doc` describes, its layers' tensors still on the meta device;
    every value is checked (CheckpointError naming the file, the key path and what was expected)."""
    layers = {k: _build_layer(k, e, tensors, version) for k, e in doc["layers"].entries().items()}
    nodes = [_node(n) for n in doc["nodes"].items()]
    _check_nodes(nodes, layers, doc.source)
    method, default_T, method_config = doc.get("method"), doc.get("default_T"), doc.get("method_config")
    if method_config is not None:
        method_from_config(method_config)  # a description that names unknown kinds or rules is refused
    try:
        program = Program(nodes, layers)
    except KeyError as e:  # nn.ModuleDict refuses keys such as "keys" or "training"
        raise doc["layers"].error(f"{e.args[0]}; rename the layer") from None
    return SpikingModel(program, {} if method is None else method.as_object(),
                        None if default_T is None else default_T.as_int(minimum=1),
                        None if method_config is None else method_config.as_object())


def from_description(description: dict[str, Any], tensors: dict[str, torch.Tensor], source: str) -> SpikingModel:
    """The SpikingModel that `description` (a dict in snn.json's format; no weights hash) and `tensors` (its
    state_dict, the layers' tensors under "program.layers.KEY.NAME") describe, built and checked exactly as
    load() builds a saved model (CheckpointError naming `source`). For readers of other formats
    (interop.nir_import), which translate a file into this one rather than building modules themselves."""
    doc = Doc(description, source)
    try:
        snn = _build_model(doc, tensors, VERSION)
        load_state(snn, tensors, source, assign=True)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot build a spiking model from {source!r}: {e}") from e
    return snn.eval()
