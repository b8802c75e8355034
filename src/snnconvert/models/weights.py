"""Loading torchvision-style state_dicts (`.pth` / `.pt` or `.safetensors`) into our models.

`loads_torchvision_state_dict(model, path)` reads with io.weights.read_state_dict and checks keys and
shapes with io.weights.check_state_dict; a mismatch is a ModelError listing every problem.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from ..io.weights import check_state_dict, read_state_dict

__all__ = ["loads_torchvision_state_dict", "read_state_dict"]

_SHOW = 12  # keys listed per category in error messages


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
    mismatch = check_state_dict(own, sd)
    shapes = [f"{k} {given} vs model {expected}" for k, given, expected in mismatch.shapes]
    problems = []
    if mismatch.missing:
        problems.append(_listing("missing keys", mismatch.missing))
    if mismatch.unexpected:
        problems.append(_listing("unexpected keys", mismatch.unexpected))
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
    state = OrderedDict(sd)
    # Modules' format versions (torchvision's MNASNet refuses a state_dict without one): the file's keys
    # and shapes were checked against this module's, so its versions are the module's own.
    state._metadata = getattr(own, "_metadata", OrderedDict())  # type: ignore[attr-defined]
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as e:  # a module's own _load_from_state_dict may refuse
        raise ModelError(f"weights {str(path)!r} do not load into {type(model).__name__}: {e}") from None
    return model
