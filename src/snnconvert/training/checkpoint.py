"""The files train() writes: the resumable `last.safetensors` and the weights file `best.safetensors`.

last.safetensors holds tensors model.<state_dict key> and optim.<param index>.<state name>; the rest is
JSON in the safetensors metadata: format CHECKPOINT_FORMAT, version CHECKPOINT_VERSION, epoch, config,
history, optimizer_param_groups, optimizer_state_scalars, schedule. best.safetensors is a plain
io.weights file (load it with load_weights). Every file goes through `write_file` (atomic); resuming
checks the saved config against the given one (`check_resume_config`). Errors: CheckpointError for a
missing, corrupt or foreign file (every metadata value is typed: the message names the metadata key,
the key path inside it and what was expected; NaN/inf tensors are refused), ConfigError for a
different config.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..io.weights import load_state, read_safetensors, weights_metadata, write_safetensors
from ..schema import Doc, parse_json, type_hints
from .config import TrainConfig

CHECKPOINT_FORMAT = "snnconvert-train-checkpoint"
CHECKPOINT_VERSION = "1"
LAST = "last.safetensors"
BEST = "best.safetensors"
_MODEL = "model."
_OPTIM = "optim."


def write_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write one training file atomically: every file train() writes goes through here."""
    write_safetensors(path, tensors, metadata)


def save_best(path: Path, model: nn.Module) -> None:
    """model.state_dict() as a weights file, the same format as io.weights.save_weights."""
    write_file(model.state_dict(), path, weights_metadata())


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
    history: list[dict[str, Any]], data: dict[str, Any] | None = None,
) -> None:
    """Tensors: model.<key>, optim.<param index>.<state name>; the rest as JSON metadata, with `data`
    (what the training set was: training.loop.data_signature) checked again on resume."""
    tensors = {_MODEL + k: v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in opt["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "epoch": str(len(history)),
        "config": json.dumps(dataclasses.asdict(config)),
        "history": json.dumps(history),
        "optimizer_param_groups": json.dumps(opt["param_groups"]),
        "optimizer_state_scalars": json.dumps(scalars),
        "schedule": json.dumps({"schedule": config.schedule, "next_epoch": len(history)}),
        "data": json.dumps(data or {}),
    }
    write_file(tensors, path, metadata)


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
    data: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Restore model and optimizer from `path`; returns the saved history. ConfigError when the saved
    config or training data (`data`, if the file records one) differs from the given one."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is not a version-{CHECKPOINT_VERSION} training checkpoint (format "
            f"{meta.get('format')!r}, version {meta.get('version')!r}); resume only from a train() last.safetensors"
        )
    saved_config = _saved_config(_metadata(meta, "config", path))
    history = _history(_metadata(meta, "history", path))
    groups = _param_groups(_metadata(meta, "optimizer_param_groups", path), optimizer)
    count = sum(len(g["params"]) for g in groups)
    scalars = _scalars(_metadata(meta, "optimizer_state_scalars", path), count)
    check_resume_config(saved_config, config, path)
    check_resume_data(meta.get("data"), data, path)

    model_state = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    load_state(model, model_state, path)

    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            index, _, name = key[len(_OPTIM):].partition(".")
            if not (index.isdigit() and int(index) < count and name):
                raise CheckpointError(f"checkpoint {path}: tensor {key!r} is not named optim.<parameter index below "
                                      f"{count}>.<state name>; resume only from a train() last.safetensors")
            state.setdefault(int(index), {})[name] = value
    for index, values in scalars.items():
        both = set(values) & set(state.get(index, {}))
        if both:
            raise CheckpointError(f"checkpoint {path}: optimizer state {sorted(both)} of parameter {index} is both a "
                                  "tensor and a scalar; resume only from a train() last.safetensors")
        state.setdefault(index, {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as exc:
        raise CheckpointError(f"optimizer state in {path} does not fit this model/optimizer ({exc})") from exc
    return history


def _metadata(meta: dict[str, str], key: str, path: Path) -> Doc:
    """Metadata entry `key` of checkpoint `path`, parsed as JSON (CheckpointError naming both)."""
    source = f"checkpoint {path} metadata {key!r}"
    if key not in meta:
        raise CheckpointError(f"{source} is missing; resume only from a train() last.safetensors")
    return Doc(parse_json(meta[key], source), source)


def _saved_config(doc: Doc) -> dict[str, Any]:
    """The saved TrainConfig (an object), each field present of the type TrainConfig declares."""
    hints = type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if not doc[f.name].missing:
            doc[f.name].as_type(hints.get(f.name, Any))
    return doc.as_object()


def _history(doc: Doc) -> list[dict[str, Any]]:
    """The saved history: a list of epoch records (objects) whose val_acc is a number or null."""
    for record in doc.items():
        val_acc = record.get("val_acc")
        if val_acc is not None:
            val_acc.as_number()
    return doc.as_list()


def _like(doc: Doc, current: Any) -> Any:
    """The saved value of an optimizer option, of the kind of this optimizer's own value `current` (a list
    where it holds a tuple, such as AdamW's betas, which becomes a tuple again)."""
    if isinstance(current, bool):
        return doc.as_bool()
    if isinstance(current, (int, float)):
        return doc.as_type(Union[int, float])
    if isinstance(current, (tuple, list)):
        items = doc.items()
        if len(items) != len(current):
            raise doc.fail(f"a list of {len(current)} values")
        return tuple(_like(i, c) for i, c in zip(items, current))
    if current is None:
        return doc.as_type(Union[bool, None])
    if isinstance(current, str):
        return doc.as_str()
    return doc.value


def _param_groups(doc: Doc, optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The saved parameter groups, one per group of `optimizer`: params a list of indices, each option of
    the kind of the optimizer's own (options the file lacks take the optimizer's values)."""
    saved, own = doc.items(), optimizer.state_dict()["param_groups"]
    if len(saved) != len(own):
        raise doc.fail(f"a list of {len(own)} parameter group(s), as this optimizer has")
    groups = []
    for group, current in zip(saved, own):
        values = {k: (_like(group[k], current[k]) if k in current else group[k].value)
                  for k in group.as_object() if k != "params"}
        values["params"] = [p.as_int(minimum=0) for p in group["params"].items()]
        groups.append({**current, **values})
    return groups


def _scalars(doc: Doc, count: int) -> dict[int, dict[str, Any]]:
    """The optimizer's non-tensor state: parameter index (below `count`) -> name -> number, bool or null."""
    out: dict[int, dict[str, Any]] = {}
    for index, values in doc.entries().items():
        if not (index.isdigit() and int(index) < count):
            raise values.error(f"the key must be a parameter index below {count}")
        out[int(index)] = {k: v.as_type(Union[bool, int, float, None]) for k, v in values.entries().items()}
    return out


def check_resume_data(saved: str | None, data: dict[str, Any] | None, path: Path) -> None:
    """ConfigError when the checkpoint's recorded training data (JSON) differs from `data`; files
    written before the record existed, or no `data` given, are not checked."""
    source = f"checkpoint {path} metadata 'data'"
    recorded = Doc(parse_json(saved, source), source).as_object() if saved else {}
    if not recorded or not data or recorded == data:
        return
    detail = ", ".join(f"{k}: saved {recorded.get(k)!r}, given {data.get(k)!r}"
                       for k in sorted(set(recorded) | set(data)) if recorded.get(k) != data.get(k))
    raise ConfigError(f"cannot resume from {path} with other training data ({detail}); resume with the data "
                      "(and --augment / --holdout choice) it was trained with, or use a new output directory")


def check_resume_config(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """ConfigError unless `config` equals the `saved` one but for progress (and, with the constant
    schedule, a larger epochs)."""
    current = dataclasses.asdict(config)
    differ = [k for k in current if k != "progress" and saved.get(k) != current[k]]
    saved_epochs = saved.get("epochs")
    if (differ == ["epochs"] and config.schedule == "constant" and isinstance(saved_epochs, int)
            and config.epochs >= saved_epochs):
        return
    if differ:
        detail = ", ".join(f"{k}: saved {saved.get(k)!r}, given {current[k]!r}" for k in differ)
        raise ConfigError(
            f"cannot resume from {path} with a different config ({detail}); pass the saved config "
            "(only progress may differ, and epochs may grow with schedule='constant') or use a new checkpoint_dir"
        )
