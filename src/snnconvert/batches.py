"""One way to walk over user data: a tensor, a (inputs, labels) pair, a Dataset or a DataLoader;
how many samples and batches such a walk has (known without reading the data, or None), and the
progress bar every long walk shows (`progress_bar`: tqdm on stderr, a total and so an ETA)."""
from __future__ import annotations

import sys
from typing import Any, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

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


def _is_pair(data: Any) -> bool:
    return isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data)


def count_samples(data: Any) -> int | None:
    """Samples in `data` (a tensor, an (inputs, labels) pair, a sized Dataset or a DataLoader over
    one) without reading it; None when that is not known in advance."""
    if isinstance(data, torch.Tensor):
        return len(data)
    if _is_pair(data):
        return len(data[0])
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, Dataset):
        try:
            return len(data)  # type: ignore[arg-type]
        except TypeError:
            return None
    return None


def count_batches(data: Any, batch_size: int) -> int | None:
    """Batches iter_batches(data, batch_size) yields (before empty ones are skipped), without reading
    the data: ceil(samples / batch_size) for a tensor, a pair or a map-style Dataset, len() of a
    DataLoader or another sized iterable of batches; None when unknown."""
    if isinstance(data, torch.Tensor) or _is_pair(data) or (
            isinstance(data, Dataset) and not isinstance(data, IterableDataset)):
        n = count_samples(data)
        return None if n is None else -(-n // batch_size)
    try:
        return len(data)
    except TypeError:
        return None


def progress_bar(desc: str, total: int | None, enabled: bool, unit: str = "batch", leave: bool = True,
                 iterable: Iterable[Any] | None = None) -> tqdm:
    """The library's progress bar: tqdm on stderr with `total` (so a percentage and an ETA; a bare
    counter when None), nothing at all when not `enabled`. Callers advance it with update(n), or
    iterate it when `iterable` is given (one step per item)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, leave=leave, file=sys.stderr,
                dynamic_ncols=True)
