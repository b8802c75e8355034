"""Deterministic loaders and whole-dataset / calibration batches."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset, get_worker_info

from ..errors import CalibrationError, ConfigError


def _reseedable(dataset: object) -> Iterator[object]:
    """Datasets with a `reseed` method, looking through Subset/ConcatDataset-style wrappers."""
    if hasattr(dataset, "reseed"):
        yield dataset
    inner = getattr(dataset, "dataset", None)
    if inner is not None:
        yield from _reseedable(inner)
    for d in getattr(dataset, "datasets", ()) or ():
        yield from _reseedable(d)


def _worker_init(worker_id: int) -> None:
    info = get_worker_info()
    if info is not None:
        for d in _reseedable(info.dataset):
            d.reseed(info.seed)  # base seed drawn from the loader's generator + worker id


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose order and augmentation depend only on `seed` (and num_workers).

    Shuffling uses a torch.Generator seeded with `seed`; datasets with `reseed` (those from
    get_dataset) restart their augmentation sequence from `seed`, or, in worker processes,
    from the worker's seed (itself drawn from that generator).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"num_workers must be an int >= 0, got {num_workers!r}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    for d in _reseedable(dataset):
        d.reseed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=bool(shuffle),
        num_workers=num_workers,
        drop_last=bool(drop_last),
        generator=generator,
        worker_init_fn=_worker_init if num_workers > 0 else None,
    )


def calibration_subset(dataset: Dataset, n: int, seed: int = 0) -> torch.Tensor:
    """A batch [n, C, H, W] of inputs drawn without replacement (torch.randperm seeded by `seed`).

    Labels are dropped. Pass a dataset built with augment=False for plain inputs.
    """
    size = len(dataset)  # type: ignore[arg-type]
    if not isinstance(n, int) or n < 1:
        raise CalibrationError(f"calibration needs n >= 1 samples, got {n!r}")
    if n > size:
        raise CalibrationError(f"asked for {n} calibration samples but the dataset has only {size}; use n <= {size}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    indices = torch.randperm(size, generator=generator)[:n].tolist()
    return torch.stack([_input(dataset[i]) for i in indices])


def dataset_as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item as (x float32 [N, C, H, W], y int64 [N]), in dataset order.

    Datasets from get_dataset without augmentation take a vectorised path.
    """
    if hasattr(dataset, "as_tensors") and not getattr(dataset, "augment", False):
        return dataset.as_tensors()  # type: ignore[attr-defined]
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise ConfigError("dataset_as_tensors: the dataset is empty")
    items = [dataset[i] for i in range(size)]
    x = torch.stack([_input(it) for it in items]).float()
    y = torch.as_tensor([int(it[1]) for it in items], dtype=torch.int64)
    return x, y


def _input(item: object) -> torch.Tensor:
    x = item[0] if isinstance(item, (tuple, list)) else item
    return torch.as_tensor(x)


def holdout_split(dataset: Dataset, n: int, seed: int = 0, holdout_from: Dataset | None = None
                  ) -> tuple[Subset, Subset]:
    """(training part, held-out part) of `dataset`: the held-out part is the first `n` indices of
    torch.randperm(len, seed), the training part the rest, each in ascending index order.
    `holdout_from` (a version of the same data without augmentation) supplies the held-out images."""
    size = len(dataset)  # type: ignore[arg-type]
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n < size:
        raise ConfigError(f"a held-out split needs 0 < n < {size} (the dataset's size) images, got {n!r}")
    if holdout_from is not None and len(holdout_from) != size:  # type: ignore[arg-type]
        raise ConfigError(f"holdout_from has {len(holdout_from)} items, the dataset {size}")  # type: ignore[arg-type]
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(int(seed)))
    held, rest = perm[:n].sort().values.tolist(), perm[n:].sort().values.tolist()
    return Subset(dataset, rest), Subset(holdout_from if holdout_from is not None else dataset, held)


def reseed_augmentation(dataset: Dataset, seed: int) -> None:
    """Restart the augmentation sequence of every dataset inside `dataset` (through Subset/Concat
    wrappers) from `seed` (train() does it each epoch from (seed, epoch), so a resumed run augments
    as an uninterrupted one)."""
    for d in _reseedable(dataset):
        d.reseed(int(seed))  # type: ignore[attr-defined]


def is_augmented(dataset: Dataset) -> bool:
    """Whether any dataset inside `dataset` augments its items."""
    return any(getattr(d, "augment", False) for d in _reseedable(dataset))
