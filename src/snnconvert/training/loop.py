"""train(): the classification training loop for float and quantized ANNs, in 1 or N processes.

Contract:
- loss = cross_entropy(model(x), y, label_smoothing); one optimizer step per batch.
- lr at epoch e (0-based) = TrainConfig.lr_at(e): cosine or constant.
- Data order, dropout, torch-RNG augmentation and the datasets' own augmentation streams
  (data.reseed_augmentation) in epoch e depend only on (seed, epoch) (and the rank under torchrun), so
  a run resumed from `last.safetensors` ends with the same weights as an uninterrupted one. A
  checkpoint records its data (`data_signature`); resuming on other data is refused.
- Checkpoints (training.checkpoint) are safetensors files (never pickle), written atomically.
- Under torchrun (an initialised process group with world size > 1) the model is wrapped in
  DistributedDataParallel: every global batch of the (seed, epoch) order is split across ranks and the
  gradient is the mean over the whole global batch, as in one process (BatchNorm statistics are
  per-rank, then rank 0's). History values are global; only rank 0 writes checkpoints and calls `log`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import distributed
from ..batches import progress_bar
from ..data import is_augmented, reseed_augmentation
from ..files import ensure_writable_dir
from ..errors import ConfigError, ModelError
from .checkpoint import BEST, LAST, load_checkpoint, save_best, save_checkpoint
from .config import TrainConfig, TrainResult
from .evaluate import check_nonempty, validate

PathLike = Union[str, Path]
DeviceLike = Union[str, torch.device]


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
    check_nonempty(train_set, "train_set")
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and ckpt_dir is None:
        raise ConfigError("resume=True needs checkpoint_dir (the folder that holds last.safetensors)")
    device = torch.device(device)
    model.to(device)
    check_model_takes(model, train_set, device)
    optimizer = _make_optimizer(model, config)

    history: list[dict[str, Any]] = []
    data = data_signature(train_set)
    if resume:
        assert ckpt_dir is not None
        history = load_checkpoint(ckpt_dir / LAST, model, optimizer, config, data)
    best = max((h["val_acc"] for h in history if h.get("val_acc") is not None), default=-1.0)
    if ckpt_dir is not None:
        ensure_writable_dir(ckpt_dir)  # a read-only or full place fails now, not after the first epoch

    params = [p for p in model.parameters() if p.requires_grad]
    rank, world = distributed.rank_and_world()
    net = distributed.wrap_ddp(model, device) if world > 1 else model
    for epoch in range(len(history), config.epochs):
        start = time.perf_counter()
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        ranked = [rank] if world > 1 else []
        reseed_augmentation(train_set, _epoch_seed(config.seed, epoch, *ranked))  # like the order: (seed, epoch)
        with _epoch_rng(config.seed, epoch, device, *ranked):
            loss, acc = _train_one_epoch(net, train_set, optimizer, params, config, epoch, device)
        distributed.broadcast_buffers(model)
        _check_finite_weights(model, epoch + 1)
        val_acc = validate(model, val_set, device) if val_set is not None else None
        record = {
            "epoch": epoch + 1, "train_loss": loss, "train_acc": acc, "val_acc": val_acc,
            "lr": lr, "seconds": time.perf_counter() - start,
        }
        history.append(record)
        if ckpt_dir is not None and rank == 0:
            if val_acc is not None and val_acc > best:
                best = val_acc
                save_best(ckpt_dir / BEST, model)
            save_checkpoint(ckpt_dir / LAST, model, optimizer, config, history, data)
        if log is not None and rank == 0:
            log(dict(record))
    del net
    distributed.barrier()  # the last checkpoint is on disk before any rank returns
    model.eval()
    return TrainResult(model=model, history=history)


def check_model_takes(model: nn.Module, dataset: Dataset, device: torch.device | str = "cpu") -> None:
    """ConfigError, before any training, when `model` cannot take the dataset's items: one item is run
    through the model (eval mode, no gradient; the model's mode is restored) and a shape error is
    reported with the item's shape instead of deep inside the first epoch."""
    x = dataset[0][0]  # type: ignore[index]
    x = torch.as_tensor(x)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x.unsqueeze(0).to(device))
    except (RuntimeError, ValueError, IndexError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"the model cannot take this dataset's inputs: an item has shape {list(x.shape)} "
                          f"(channels, height, width) and the model fails on it ({first}); build the model for "
                          "that shape (its options such as in_channels or input_size)") from None
    finally:
        model.train(was_training)


def data_signature(train_set: Dataset) -> dict[str, Any]:
    """What a checkpoint records of its training data, to refuse resuming on other data: the number
    of samples and whether they are augmented."""
    return {"samples": len(train_set), "augment": is_augmented(train_set)}  # type: ignore[arg-type]


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


def _epoch_batches(
    train_set: Dataset, config: TrainConfig, epoch: int, rank: int, world: int,
) -> tuple[DataLoader, list[tuple[int, int]]]:
    """This rank's batches in epoch `epoch`, and for each: (samples of this rank's own, global batch size).

    Both orders come from the (seed, epoch) generator alone. One process: DataLoader(shuffle=True) with
    that generator, as always (the loader draws its base seed from it before the sampler's randperm, so
    this order is not the world > 1 one). world > 1: consecutive global batches of randperm(n) from a fresh generator (the same on every rank),
    split by distributed.batch_shards; a rank with no sample in a short last batch gets a stand-in
    (order[:1]) that _train_one_epoch weights 0, so all ranks take the same steps.
    """
    generator = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch))
    if world == 1:
        loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, generator=generator)
        n, size = len(train_set), config.batch_size  # type: ignore[arg-type]
        return loader, [(min(size, n - start),) * 2 for start in range(0, n, size)]
    order = torch.randperm(len(train_set), generator=generator).tolist()  # type: ignore[arg-type]
    shards = list(distributed.batch_shards(order, config.batch_size, rank, world))
    loader = DataLoader(train_set, batch_sampler=[own or order[:1] for own, _ in shards])
    return loader, [(len(own), size) for own, size in shards]


def _diverged(epoch: int, config: TrainConfig, detail: str) -> ModelError:
    return ModelError(
        f"training diverged at epoch {epoch + 1} ({detail}); lower the learning rate (lr={config.lr:g}) or set grad_clip"
    )


def _train_one_epoch(
    net: nn.Module,
    train_set: Dataset,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    config: TrainConfig,
    epoch: int,
    device: torch.device,
) -> tuple[float, float]:
    """One pass over `train_set` in the (seed, epoch) order; returns the global (mean loss, accuracy).

    One process: the loss is the batch mean and a non-finite one raises ModelError at once. world > 1
    (`net` DDP-wrapped): each rank's loss is its summed per-sample loss x world / global batch size, so
    DDP's mean over ranks is the global batch mean; a non-finite loss on any rank ends the epoch with
    ModelError on every rank (raising on one rank alone would leave the others waiting).
    """
    rank, world = distributed.rank_and_world()
    loader, shares = _epoch_batches(train_set, config, epoch, rank, world)
    net.train()
    total_loss, correct, seen, bad = 0.0, 0, 0, 0
    bar = progress_bar(f"epoch {epoch + 1}/{config.epochs}", len(shares), config.progress and rank == 0,
                       leave=False, iterable=loader)
    for step, ((x, y), (own, global_size)) in enumerate(zip(bar, shares)):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        out = net(x)
        if world == 1:
            loss = F.cross_entropy(out, y, label_smoothing=config.label_smoothing)
            if not torch.isfinite(loss):
                raise _diverged(epoch, config, f"loss {loss.item()} at batch {step}")
            loss.backward()
        else:
            loss = F.cross_entropy(out, y, label_smoothing=config.label_smoothing, reduction="sum")
            (loss * (world / global_size if own else 0.0)).backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        if own:
            summed = loss.item() * own if world == 1 else loss.item()  # the batch mean x n in one process
            finite = math.isfinite(summed)
            total_loss += summed if finite else 0.0
            bad += not finite
            correct += int((out.detach().argmax(dim=1) == y).sum())
            seen += own
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}", refresh=False)
    bar.close()
    stats = torch.tensor([total_loss, correct, seen, bad], dtype=torch.float64)
    total_loss, correct, seen, bad = distributed.all_reduce_sum(stats).tolist()
    if bad:
        raise _diverged(epoch, config, f"non-finite loss in {int(bad)} batch share(s)")
    return total_loss / seen, correct / seen


def _check_finite_weights(model: nn.Module, epoch: int) -> None:
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelError(
                f"training diverged at epoch {epoch} ({name} holds NaN/inf); lower the learning rate "
                "or set grad_clip"
            )
