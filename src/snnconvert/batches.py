"""One way to walk over user data: a tensor, a (inputs, labels) pair, a Dataset or a DataLoader."""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .errors import CalibrationError, EmptyDataError

Batch = tuple[torch.Tensor, "torch.Tensor | None"]


def iter_batches(data: Any, batch_size: int = 256, what: str = "data") -> Iterator[Batch]:
    """Yield (x, y) batches; y is None when the data has no labels.

    Accepts: a tensor [N, ...]; a tuple (inputs [N, ...], labels [N]); a torch Dataset of (x, y) or x;
    any iterable of batches (a DataLoader) of (x, y) or x. Raises EmptyDataError when empty.
    """
    if isinstance(data, torch.Tensor):
        tensor = data
        it: Any = ((tensor[i:i + batch_size], None) for i in range(0, len(tensor), batch_size))
    elif isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        inputs, labels = data
        if len(inputs) != len(labels):
            raise CalibrationError(f"{what}: {len(inputs)} inputs but {len(labels)} labels")
        it = ((inputs[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(inputs), batch_size))
    elif isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        it = (_split(b) for b in DataLoader(data, batch_size=batch_size, shuffle=False))
    else:
        try:
            it = (_split(b) for b in data)
        except TypeError:
            raise CalibrationError(
                f"{what} must be a tensor, an (inputs, labels) pair, a Dataset or a DataLoader, "
                f"got {type(data).__name__}") from None
    empty = True
    for xb, yb in it:
        if xb.numel() == 0 or len(xb) == 0:
            continue
        empty = False
        yield xb, yb
    if empty:
        raise EmptyDataError(f"{what} is empty: at least one input sample is needed")


def _split(batch: Any) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) >= 1 and isinstance(batch[0], torch.Tensor):
        y = batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        return batch[0], y
    raise CalibrationError(f"each batch must be a tensor or (inputs, labels), got {type(batch).__name__}")
