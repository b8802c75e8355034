"""Loading torchvision-style state_dicts (`.pth` / `.pt` or `.safetensors`) into our models."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import CheckpointError, ModelError

_SHOW = 12  # keys listed per category in error messages


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file, or of a `.pth` read with torch.load(weights_only=True).

    A `{"state_dict": ...}` or `{"model": ...}` wrapper is unwrapped, and a `module.` prefix on
    every key (DataParallel) is stripped. CheckpointError if missing, unreadable or not tensors.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"weights file {str(p)!r} does not exist; expected a .pth/.pt or .safetensors state_dict")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(p), device="cpu")
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load / safetensors raise many types on garbled files
        raise CheckpointError(
            f"cannot read weights {str(p)!r} ({type(exc).__name__}: {exc}); expected a state_dict saved with "
            f"torch.save(model.state_dict(), ...) or a .safetensors file"
        ) from None
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{str(p)!r} does not hold a state_dict (a mapping of names to tensors)")
    sd = {str(k): v for k, v in obj.items()}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _listing(label: str, keys: list[str]) -> str:
    more = f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return f"{label} ({len(keys)}): {', '.join(keys[:_SHOW])}{more}"


def loads_torchvision_state_dict(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the state_dict at `path` into `model` strictly (same keys, same shapes); return `model`.

    ModelError lists missing / unexpected keys and shape mismatches, or names non-finite tensors;
    CheckpointError if the file is missing or unreadable.
    """
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(_listing("missing keys", missing))
    if unexpected:
        problems.append(_listing("unexpected keys", unexpected))
    if shapes:
        problems.append(_listing("shape mismatches", shapes))
    if problems:
        hint = ""
        if shapes and any(k.startswith("fc.") for k in own):
            hint = " (ImageNet weights need num_classes=1000 and cifar_stem=False)"
        raise ModelError(
            f"weights {str(path)!r} do not fit {type(model).__name__}: " + "; ".join(problems) + hint
        )
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelError(_listing(f"weights {str(path)!r} hold NaN/inf values in", bad))
    model.load_state_dict(sd, strict=True)
    return model
