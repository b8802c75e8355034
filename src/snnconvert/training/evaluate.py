"""Top-1 accuracy of a classifier, counted by evaluation.count_correct (the library's one counting loop).

- evaluate_accuracy(model, data): mean(argmax(model(x), 1) == y) over a Dataset, a DataLoader or an
  (inputs, labels) pair, in eval mode without grad; each submodule's previous mode is restored.
- validate(model, val_set, device): the same on train()'s val_set; under torchrun each rank counts its
  contiguous shard (distributed.shard_indices) and the counts are summed over ranks, so every rank
  returns the accuracy over the whole val_set.
Empty data is a DataError (EmptyDataError from iter_batches, or check_nonempty's).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from .. import distributed
from ..errors import DataError, EmptyDataError
from ..evaluation import count_correct, eval_mode

DeviceLike = Union[str, torch.device]
VAL_BATCH = 256


def check_nonempty(dataset: Dataset, name: str) -> None:
    """DataError if `dataset` has a length of 0 (datasets without a length pass)."""
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return
    if size == 0:
        raise DataError(f"{name} is empty; pass a dataset with at least one (x, y) pair")


def _count(model: nn.Module, data: Dataset | Iterable, batch_size: int, device: torch.device,
           what: str) -> tuple[int, int]:
    if isinstance(data, IterableDataset):  # samples, to be batched (iter_batches walks other iterables as batches)
        data = DataLoader(data, batch_size=batch_size)
    with eval_mode(model):
        return count_correct(model, data, batch_size, what, device)


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
    correct, seen = _count(model, data, batch_size, torch.device(device), "evaluate_accuracy data")
    return correct / seen


def validate(model: nn.Module, val_set: Dataset, device: torch.device) -> float:
    """Accuracy on `val_set`; under torchrun each rank counts its shard and the counts are summed."""
    rank, world = distributed.rank_and_world()
    data: Dataset = val_set
    if world > 1:
        check_nonempty(val_set, "val_set")
        data = Subset(val_set, distributed.shard_indices(len(val_set), rank, world))  # type: ignore[arg-type]
    try:
        counts = _count(model, data, VAL_BATCH, device, "val_set")
    except EmptyDataError:
        if world == 1:
            raise
        counts = (0, 0)  # this rank's shard is empty (fewer samples than ranks); it still joins the sum
    correct, seen = distributed.all_reduce_sum(torch.tensor(counts, dtype=torch.float64)).tolist()
    return correct / seen
