"""Classification training loop for float and quantized ANNs, with atomic, resumable checkpoints.

Contract:
- loss = cross_entropy(model(x), y, label_smoothing); one optimizer step per batch.
- lr at epoch e (0-based) = lr * (1 + cos(pi e / epochs)) / 2 ("cosine") or lr ("constant").
- Data order, dropout and any torch-RNG augmentation in epoch e depend only on (seed, epoch), so a run
  resumed from `last.safetensors` ends with the same weights as an uninterrupted one.
- Checkpoints are safetensors files (never pickle), written to a temp file and moved with os.replace.
- Under torchrun (an initialised process group with world size > 1) the model is wrapped in
  DistributedDataParallel: every global batch of the (seed, epoch) order is split across ranks and the
  gradient is the mean over the whole global batch, as in one process (BatchNorm statistics are
  per-rank, then rank 0's). History values are global; only rank 0 writes checkpoints and calls `log`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from . import distributed
from .outdir import replace_atomic
from .errors import CheckpointError, ConfigError, DataError, ModelError

PathLike = Union[str, Path]
DeviceLike = Union[str, torch.device]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")
CHECKPOINT_FORMAT = "snnconvert-train-checkpoint"
WEIGHTS_FORMAT = "snnconvert-weights"
CHECKPOINT_VERSION = "1"
LAST = "last.safetensors"
BEST = "best.safetensors"
_MODEL = "model."
_OPTIM = "optim."


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all validated on construction)."""

    epochs: int
    lr: float
    batch_size: int = 128
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    seed: int = 0
    label_smoothing: float = 0.0
    progress: bool = True
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ConfigError:
            return ConfigError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}")

        for name in ("epochs", "batch_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(name, "an int")
        if self.epochs < 1:
            raise bad("epochs", ">= 1")
        if self.batch_size < 1:
            raise bad("batch_size", ">= 1")
        if self.seed < 0:
            raise bad("seed", ">= 0")
        if not _finite(self.lr) or self.lr <= 0:
            raise bad("lr", "a finite number > 0")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {SCHEDULES}")
        if not _finite(self.momentum) or not 0 <= self.momentum < 1:
            raise bad("momentum", "in [0, 1)")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "a finite number >= 0")
        if not _finite(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "in [0, 1)")
        if self.grad_clip is not None and (not _finite(self.grad_clip) or self.grad_clip <= 0):
            raise bad("grad_clip", "None or a finite number > 0")

    def lr_at(self, epoch: int) -> float:
        """Learning rate used during 0-based `epoch`."""
        if self.schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))


@dataclass
class TrainResult:
    """The trained model (eval mode) and one history record per epoch.

    Each record: epoch (1-based), train_loss, train_acc, val_acc (None without val_set), lr, seconds.
    """

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_val_acc(self) -> float | None:
        accs = [h["val_acc"] for h in self.history if h.get("val_acc") is not None]
        return max(accs) if accs else None


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- training


def train(
    model: nn.Module,
    train_set: Dataset,
    config: TrainConfig,
    *,
    val_set: Dataset | None = None,
    checkpoint_dir: PathLike | None = None,
    resume: bool = False,
    log: Callable[[dict[str, Any]], None] | None = None,
    device: DeviceLike = "cpu",
) -> TrainResult:
    """Train `model` on (x, y) pairs from `train_set` for `config.epochs` epochs.

    After each epoch: ModelError if any weight is NaN/inf; `best.safetensors` (weights) when val
    accuracy improves; `last.safetensors` (weights + optimizer + history + config) when
    `checkpoint_dir` is given; then `log(record)`. `resume=True` continues from `last.safetensors`
    with the same config (only `progress` may differ; `epochs` may grow with the constant schedule).
    Under torchrun, `batch_size` is the global batch (split across ranks), each rank passes its own
    `device` (e.g. DistInfo.device), and every rank returns the same trained model.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
    _check_nonempty(train_set, "train_set")
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and ckpt_dir is None:
        raise ConfigError("resume=True needs checkpoint_dir (the folder that holds last.safetensors)")
    device = torch.device(device)
    model.to(device)
    optimizer = _make_optimizer(model, config)

    history: list[dict[str, Any]] = []
    if resume:
        assert ckpt_dir is not None
        history = _load_checkpoint(ckpt_dir / LAST, model, optimizer, config)
    best = max((h["val_acc"] for h in history if h.get("val_acc") is not None), default=-1.0)
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    params = [p for p in model.parameters() if p.requires_grad]
    rank, world = distributed.rank_and_world()
    net = distributed.wrap_ddp(model, device) if world > 1 else model
    for epoch in range(len(history), config.epochs):
        start = time.perf_counter()
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with _epoch_rng(config.seed, epoch, device, *([rank] if world > 1 else [])):
            if world > 1:
                loss, acc = _train_one_epoch_ddp(net, train_set, optimizer, params, config, epoch, device)
            else:
                loss, acc = _train_one_epoch(model, train_set, optimizer, params, config, epoch, device)
        distributed.broadcast_buffers(model)
        _check_finite_weights(model, epoch + 1)
        val_acc = _validate(model, val_set, device) if val_set is not None else None
        record = {
            "epoch": epoch + 1, "train_loss": loss, "train_acc": acc, "val_acc": val_acc,
            "lr": lr, "seconds": time.perf_counter() - start,
        }
        history.append(record)
        if ckpt_dir is not None and rank == 0:
            if val_acc is not None and val_acc > best:
                best = val_acc
                save_weights(model, ckpt_dir / BEST)
            _save_checkpoint(ckpt_dir / LAST, model, optimizer, config, history)
        if log is not None and rank == 0:
            log(dict(record))
    del net
    distributed.barrier()  # the last checkpoint is on disk before any rank returns
    model.eval()
    return TrainResult(model=model, history=history)


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelError("the model has no trainable parameters (all have requires_grad=False)")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _epoch_seed(seed: int, epoch: int, *rank: int) -> int:
    """A well-mixed 63-bit seed that depends only on (seed, epoch) (and the rank, when given)."""
    return int(np.random.SeedSequence([seed, epoch, *rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


@contextmanager
def _epoch_rng(seed: int, epoch: int, device: torch.device, *rank: int) -> Iterator[None]:
    """Torch RNG (CPU, and `device` if CUDA) seeded from (seed, epoch[, rank]); the caller's state is restored."""
    cuda = device.type == "cuda" and torch.cuda.is_available()
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_epoch_seed(seed, epoch, *rank))
        yield


def _train_one_epoch(
    model: nn.Module,
    train_set: Dataset,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    config: TrainConfig,
    epoch: int,
    device: torch.device,
) -> tuple[float, float]:
    """One pass over `train_set` in a (seed, epoch)-determined order; returns (mean loss, accuracy)."""
    generator = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, generator=generator)
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not config.progress, leave=False)
    for step, (x, y) in enumerate(bar):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out, y, label_smoothing=config.label_smoothing)
        if not torch.isfinite(loss):
            raise ModelError(
                f"training diverged at epoch {epoch + 1} (loss {loss.item()} at batch {step}); "
                f"lower the learning rate (lr={config.lr:g}) or set grad_clip"
            )
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        n = y.shape[0]
        total_loss += loss.item() * n
        correct += int((out.detach().argmax(dim=1) == y).sum())
        seen += n
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
    bar.close()
    return total_loss / seen, correct / seen


def _train_one_epoch_ddp(
    model: nn.Module,
    train_set: Dataset,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    config: TrainConfig,
    epoch: int,
    device: torch.device,
) -> tuple[float, float]:
    """_train_one_epoch for a DDP-wrapped `model`: this rank's share of every global batch.

    The global batches are consecutive slices of randperm(len(train_set)) drawn from the (seed, epoch)
    generator (the same on every rank, whatever the progress setting). Each rank's loss is its
    summed per-sample loss x world / global batch size, so DDP's mean over ranks is the global
    batch mean. A rank with no sample in a short last batch steps on a zero-weighted stand-in so all
    ranks take the same steps. A non-finite loss on any rank ends the epoch with ModelError on every
    rank (raising on one rank alone would leave the others waiting). Returns the global (mean loss,
    accuracy).
    """
    rank, world = distributed.rank_and_world()
    generator = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
    order = torch.randperm(len(train_set), generator=generator).tolist()  # type: ignore[arg-type]
    shards = list(distributed.batch_shards(order, config.batch_size, rank, world))
    loader = DataLoader(train_set, batch_sampler=[own or order[:1] for own, _ in shards])
    model.train()
    stats = torch.zeros(4, dtype=torch.float64)  # summed loss, correct, seen, non-finite losses
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
               disable=not config.progress or rank != 0)
    for (x, y), (own, global_size) in zip(bar, shards):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        summed = F.cross_entropy(out, y, label_smoothing=config.label_smoothing, reduction="sum")
        (summed * (world / global_size if own else 0.0)).backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        if own:
            finite = bool(torch.isfinite(summed))
            stats += torch.tensor([summed.item() if finite else 0.0, int((out.detach().argmax(dim=1) == y).sum()),
                                   len(own), 0 if finite else 1], dtype=torch.float64)
        if stats[2] > 0:
            bar.set_postfix(loss=f"{float(stats[0] / stats[2]):.4f}", acc=f"{float(stats[1] / stats[2]):.3f}")
    bar.close()
    total_loss, correct, seen, bad = distributed.all_reduce_sum(stats).tolist()
    if bad:
        raise ModelError(
            f"training diverged at epoch {epoch + 1} (non-finite loss in {int(bad)} batch share(s)); "
            f"lower the learning rate (lr={config.lr:g}) or set grad_clip"
        )
    return total_loss / seen, correct / seen


def _validate(model: nn.Module, val_set: Dataset, device: torch.device) -> float:
    """evaluate_accuracy on `val_set`; under torchrun each rank counts its shard and the counts are summed."""
    rank, world = distributed.rank_and_world()
    if world == 1:
        return evaluate_accuracy(model, val_set, device=device)
    _check_nonempty(val_set, "val_set")
    own = Subset(val_set, distributed.shard_indices(len(val_set), rank, world))  # type: ignore[arg-type]
    counts = torch.tensor(_count_correct(model, DataLoader(own, batch_size=256), device), dtype=torch.float64)
    correct, seen = distributed.all_reduce_sum(counts).tolist()
    return correct / seen


def _check_finite_weights(model: nn.Module, epoch: int) -> None:
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelError(
                f"training diverged at epoch {epoch} ({name} holds NaN/inf); lower the learning rate "
                "or set grad_clip"
            )


def _check_nonempty(dataset: Dataset, name: str) -> None:
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return
    if size == 0:
        raise DataError(f"{name} is empty; pass a dataset with at least one (x, y) pair")


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    data: Dataset | Iterable,
    batch_size: int = 256,
    device: DeviceLike | None = None,
) -> float:
    """Top-1 accuracy = mean(argmax(model(x), 1) == y) over a Dataset or an iterable of batches.

    The model runs in eval mode without grad; each submodule's previous mode is restored.
    `device` (default: the model's) is where inputs are moved; the model must already be there.
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if isinstance(data, Dataset):
        _check_nonempty(data, "dataset")
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    correct, seen = _count_correct(model, data, device)
    if seen == 0:
        raise DataError("evaluate_accuracy got no samples; pass a non-empty dataset or loader")
    return correct / seen


@torch.no_grad()
def _count_correct(model: nn.Module, batches: Iterable, device: torch.device) -> tuple[int, int]:
    """(correct, seen) over (x, y) batches in eval mode; each submodule's previous mode is restored."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    correct, seen = 0, 0
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            correct += int((model(x).argmax(dim=1) == y).sum())
            seen += y.shape[0]
    finally:
        for module, mode in modes:
            module.training = mode
    return correct, seen


# --------------------------------------------------------------------------- files


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file to a temp file beside `path`, fsync, then os.replace onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(_savable(tensors), tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        replace_atomic(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _savable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or train first")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for truncated/garbage files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a safetensors file ({exc}); delete it or use another file"
        ) from exc
    return tensors, metadata


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match the model: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}; build the same architecture it was saved from"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"checkpoint {path}: {key} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[key].shape)}; build the same architecture it was saved from"
            )
    model.load_state_dict(state, strict=True)


def save_weights(model: nn.Module, path: PathLike) -> None:
    """Write model.state_dict() to a safetensors file, atomically."""
    _atomic_save(model.state_dict(), Path(path), {"format": WEIGHTS_FORMAT, "version": CHECKPOINT_VERSION})


def load_weights(model: nn.Module, path: PathLike) -> nn.Module:
    """Load a safetensors state_dict into `model` in place (keys and shapes must match exactly)."""
    path = Path(path)
    tensors, _ = _read(path)
    _load_state(model, tensors, path)
    return model


def _save_checkpoint(
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
    _atomic_save(tensors, path, metadata)


def _load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
) -> list[dict[str, Any]]:
    """Restore model and optimizer from `path`; returns the saved history."""
    tensors, meta = _read(path)
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
    _check_resume_config(saved_config, config, path)

    model_state = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    _load_state(model, model_state, path)

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


def _check_resume_config(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
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
