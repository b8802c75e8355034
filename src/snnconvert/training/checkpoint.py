"""The files train() writes: the resumable `last.safetensors` and the weights file `best.safetensors`.

last.safetensors holds tensors model.<state_dict key> and optim.<param index>.<state name>; the rest is
JSON in the safetensors metadata: format CHECKPOINT_FORMAT, version CHECKPOINT_VERSION, epoch, config,
history, optimizer_param_groups, optimizer_state_scalars, schedule. best.safetensors is a plain
io.weights file (load it with load_weights). Every file goes through `write_file` (atomic); resuming
checks the saved config against the given one (`check_resume_config`). Errors: CheckpointError for a
missing, corrupt or foreign file, ConfigError for a different config.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..io.weights import load_state, read_safetensors, weights_metadata, write_safetensors
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
    history: list[dict[str, Any]],
) -> None:
    """Tensors: model.<key>, optim.<param index>.<state name>; the rest as JSON metadata."""
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
    }
    write_file(tensors, path, metadata)


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
) -> list[dict[str, Any]]:
    """Restore model and optimizer from `path`; returns the saved history."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is not a version-{CHECKPOINT_VERSION} training checkpoint (format "
            f"{meta.get('format')!r}, version {meta.get('version')!r}); resume only from a train() last.safetensors"
        )
    try:
        saved_config = json.loads(meta["config"])
        history = json.loads(meta["history"])
        groups = json.loads(meta["optimizer_param_groups"])
        scalars = json.loads(meta["optimizer_state_scalars"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} has missing or corrupt metadata ({exc})") from exc
    check_resume_config(saved_config, config, path)

    model_state = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    load_state(model, model_state, path)

    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            index, name = key[len(_OPTIM):].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for index, values in scalars.items():
        state.setdefault(int(index), {}).update(values)
    for group in groups:  # JSON turned tuples such as AdamW's betas into lists
        for name, value in group.items():
            if name != "params" and isinstance(value, list):
                group[name] = tuple(value)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"optimizer state in {path} does not fit this model/optimizer ({exc})") from exc
    return history


def check_resume_config(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    """ConfigError unless `config` equals the `saved` one but for progress (and, with the constant
    schedule, a larger epochs)."""
    current = dataclasses.asdict(config)
    differ = [k for k in current if k != "progress" and saved.get(k) != current[k]]
    if differ == ["epochs"] and config.schedule == "constant" and config.epochs >= saved["epochs"]:
        return
    if differ:
        detail = ", ".join(f"{k}: saved {saved.get(k)!r}, given {current[k]!r}" for k in differ)
        raise ConfigError(
            f"cannot resume from {path} with a different config ({detail}); pass the saved config "
            "(only progress may differ, and epochs may grow with schedule='constant') or use a new checkpoint_dir"
        )
