"""Weight files: the one implementation of each way the library reads, writes and checks state_dicts.

- `save_weights(model, path)` / `load_weights(model, path)`: a model's state_dict as a safetensors file
  (metadata format "snnconvert-weights", version "1"), loaded strictly (same keys, same shapes).
- `write_safetensors(path, tensors, metadata)`: `savable(tensors)` written with files.atomic_write, so
  `path` holds the old file or the new one, never a part.
- `read_safetensors(path) -> (tensors, metadata)`; `read_state_dict(path)`: a torchvision-style `.pth`
  (torch.load with weights_only=True) or `.safetensors` state_dict. Nothing is unpickled.
- `check_state_dict(expected, given)`: missing keys, unexpected keys and shape mismatches.
Failures to read are CheckpointError naming the file, as are NaN/inf floating tensors in a safetensors
file (`check_finite`; models.loads_torchvision_state_dict refuses them in a `.pth`).
"""
from __future__ import annotations

import pickle
import re
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError
from ..files import atomic_write

PathLike = Union[str, Path]

WEIGHTS_FORMAT = "snnconvert-weights"
WEIGHTS_VERSION = "1"


@dataclass
class StateDictMismatch:
    """How `given` differs from `expected`: keys in expected order (unexpected ones in given order),
    shapes as (key, given shape, expected shape). Falsy when the two fit exactly."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shapes)


def check_state_dict(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> StateDictMismatch:
    """Compare the keys and shapes of `given` (e.g. a file's tensors) with `expected` (a model's state_dict)."""
    return StateDictMismatch(
        missing=[k for k in expected if k not in given],
        unexpected=[k for k in given if k not in expected],
        shapes=[(k, tuple(given[k].shape), tuple(expected[k].shape))
                for k in expected if k in given and given[k].shape != expected[k].shape],
    )


def savable(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors; those sharing storage (tied weights, views) are cloned."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
        elif t.numel():
            seen.add(ptr)
        out[key] = t
    return out


def safetensors_writer(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> Callable[[str], None]:
    """A function that writes `tensors` (made savable now) and string `metadata` to the file it is given
    (for files.atomic_write and files.DirectoryWrite)."""
    ready = savable(tensors)

    def write(path: str) -> None:
        save_file(ready, path, metadata=metadata)
        _sort_metadata(path)

    return write


def _sort_metadata(path: str) -> None:
    """Rewrite, in place, the header of a safetensors file with its metadata keys sorted: safetensors
    writes them in hash-map order, which differs between runs, so equal content gave unequal bytes.
    Only the order of the keys changes, so the header keeps its length and the data stays put."""
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        raw = f.read(size)
        header = json.loads(raw)
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # a formatting this code does not reproduce: leave the file as it is
            return
        f.seek(8)
        f.write(text + b" " * (size - len(text)))


def write_safetensors(path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write `tensors` (made savable) and string `metadata` to a safetensors file at `path`, atomically."""
    return atomic_write(path, safetensors_writer(tensors, metadata))


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, metadata


def check_finite(tensors: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """CheckpointError naming `path` and the first floating tensor that holds NaN or inf."""
    for key, t in tensors.items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"checkpoint {path}: tensor {key!r} holds NaN or infinite values; the file is corrupt or was "
                "saved from a diverged model: use an earlier checkpoint or train again"
            )


def read_safetensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on CPU, metadata) of a safetensors file; CheckpointError if missing, corrupt or holding
    a NaN/inf floating tensor."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or train first")
    try:
        tensors, metadata = _load_safetensors(path)
    except Exception as exc:  # safetensors raises its own error types for truncated/garbage files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a safetensors file ({exc}); delete it or use another file"
        ) from exc
    check_finite(tensors, path)
    return tensors, metadata


def weights_metadata() -> dict[str, str]:
    """The metadata of a weights file written by save_weights."""
    return {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION}


def save_weights(model: nn.Module, path: PathLike) -> None:
    """Write model.state_dict() to a safetensors file, atomically."""
    write_safetensors(path, model.state_dict(), weights_metadata())


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: PathLike, *, assign: bool = False) -> None:
    """model.load_state_dict(state, strict=True) after check_state_dict; CheckpointError naming `path`.

    `assign=True` puts the file's tensors themselves into the model (their dtypes kept; parameters stay
    nn.Parameter, buffers stay buffers), for a model just built on the meta device; without it they
    are copied into the model's own tensors (whose dtypes and devices stay)."""
    problems = check_state_dict(model.state_dict(), state)
    if problems.missing or problems.unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match the model: missing keys {sorted(problems.missing)[:5]}, "
            f"unexpected keys {sorted(problems.unexpected)[:5]}; build the same architecture it was saved from"
        )
    if problems.shapes:
        wrong = {key: (given, expected) for key, given, expected in problems.shapes}
        key = next(k for k in state if k in wrong)  # the first in the file's order
        given, expected = wrong[key]
        raise CheckpointError(
            f"checkpoint {path}: {key} has shape {given}, the model expects {expected}; "
            "build the same architecture it was saved from"
        )
    model.load_state_dict(state, strict=True, assign=assign)
    left = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"checkpoint {path} leaves {left[:5]} of the model without values; "
                              "build the same architecture it was saved from")


def load_weights(model: nn.Module, path: PathLike) -> nn.Module:
    """Load a safetensors state_dict into `model` in place (keys and shapes must match exactly)."""
    tensors, _ = read_safetensors(path)
    load_state(model, tensors, Path(path))
    return model


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file, or of a `.pth` read with torch.load(weights_only=True).

    A `{"state_dict": ...}` or `{"model": ...}` wrapper is unwrapped, and a `module.` prefix on
    every key (DataParallel) is stripped. CheckpointError if missing, unreadable or not tensors.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"weights file {str(p)!r} does not exist; expected a .pth/.pt or .safetensors state_dict")
    try:
        if p.suffix == ".safetensors":
            obj: Any = _load_safetensors(p)[0]
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused what the file holds
        raise CheckpointError(_refused_pickle(p, exc)) from None
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
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _refused_pickle(path: Path, exc: Exception) -> str:
    """Why a pickle file is refused, and how to convert it (torch's own advice, to load with
    weights_only=False, is not passed on)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    holds = f"it holds a {found.group(1)} object" if found else "it is not a plain pickle of tensors"
    return (f"cannot read weights {str(path)!r}: {holds}, and snnconvert never unpickles arbitrary objects "
            "(it reads only tensors, with torch.load(weights_only=True)). To convert the file, load it in a "
            "Python session you trust (unpickling runs code the file names), take the model's state_dict() "
            "and save that: torch.save(model.state_dict(), 'weights.pth') or "
            "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')")
