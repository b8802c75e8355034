"""Dataset registry: names -> (info, builder). Dataset modules register themselves on import."""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from ..errors import ConfigError
from ..registry import Registry

DATA_ENV = "SNNCONVERT_DATA"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset: classes, input shape and normalisation."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, applied after scaling to [0, 1]
    std: tuple[float, ...]


InfoFn = Callable[..., DatasetInfo]
BuildFn = Callable[..., Dataset]


@dataclass(frozen=True)
class _Entry:
    info: InfoFn
    build: BuildFn


DATASETS: Registry[_Entry] = Registry("dataset", sep="-")


def register_dataset(name: str, info: InfoFn) -> Callable[[BuildFn], BuildFn]:
    """Decorator registering `build(root, train, augment, **options) -> Dataset` under `name`.

    `info(root=None, **options)` returns the dataset's DatasetInfo.
    """

    def deco(build: BuildFn) -> BuildFn:
        DATASETS.add(name, _Entry(info=info, build=build))
        return build

    return deco


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(DATASETS.names())


def _entry(name: str) -> _Entry:
    return DATASETS.get(name)


def dataset_info(name: str, root: str | Path | None = None, **options: Any) -> DatasetInfo:
    """DatasetInfo of a registered dataset (root/options only matter for `imagefolder`)."""
    info = _entry(name).info
    _check_options(name, info, options, ("root",))
    return info(root=root, **options)


def get_dataset(
    name: str,
    root: str | Path | None = None,
    train: bool = True,
    augment: bool = False,
    **options: Any,
) -> Dataset:
    """Build dataset `name`; items are `(x: float32 [C,H,W] normalised, y: int)`.

    `root` is the data directory (the folder holding the files or its parent); when None,
    `$SNNCONVERT_DATA` or `./data` is used (Fashion-MNIST defaults to Debian's install path,
    digits needs none). `augment` turns on random crop (+ flip where it makes sense) per item.
    Extra `options` go to the dataset (e.g. `image_size` for `imagefolder`).
    The returned dataset has an `info` attribute (DatasetInfo).
    """
    entry = _entry(name)
    _check_options(name, entry.build, options, ("root", "train", "augment"))
    return entry.build(root=root, train=bool(train), augment=bool(augment), **options)


def _check_options(name: str, fn: Callable[..., Any], options: dict[str, Any], fixed: tuple[str, ...]) -> None:
    accepted = [p for p in inspect.signature(fn).parameters if p not in fixed]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"dataset {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or 'no extra options'}"
        )


def default_root(root: str | Path | None) -> Path:
    """`root` if given, else `$SNNCONVERT_DATA`, else `./data`."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(DATA_ENV, "data")).expanduser()
