"""Dataset registry: names -> (info, builder). Dataset modules register themselves on import.
DataRecord: what a trained model records of its data, and the choice of data for a later command."""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from torch.utils.data import Dataset

from ..errors import ConfigError
from ..registry import Registry
from ..schema import Doc

DATA_ENV = "SNNCONVERT_DATA"
DEFAULT_DATASET = "digits"  # what a command uses when neither its arguments nor a record name a dataset


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


def fixed_shape_infos() -> list[DatasetInfo]:
    """The DatasetInfo of every registered dataset whose shape is known without its files (all but
    those, like imagefolder, whose info needs a root)."""
    out = []
    for name in DATASETS.names():
        try:
            out.append(dataset_info(name))
        except ConfigError:
            continue
    return out


def shape_text(shape: tuple[int, ...] | list[int]) -> str:
    """(1, 28, 28) -> '1x28x28'."""
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class DataRecord:
    """The data a model was trained on, as `model.json` records it (top-level keys dataset, input_shape
    [C, H, W], num_classes, data_dir: an absolute path, only when one was given) and `snn.json` (the
    same keys under method.data)."""

    dataset: str | None
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    data_dir: str | None = None

    @classmethod
    def of(cls, info: DatasetInfo, data_dir: str | Path | None) -> "DataRecord":
        """The record of training (or converting) on `info`'s data read from `data_dir` (made absolute)."""
        root = None if data_dir is None else str(Path(data_dir).expanduser().resolve())
        return cls(info.name, tuple(info.input_shape), info.num_classes, root)  # type: ignore[arg-type]

    @classmethod
    def read(cls, fields: Mapping[str, Any] | None, source: str, path: str = "") -> "DataRecord | None":
        """The record in `fields` (a model card, or snn.json's method.data: `path`), None when it names
        no dataset and no shape; CheckpointError naming `source`, the key and what was expected when a
        value is malformed."""
        if fields is None:
            return None
        doc = Doc(fields, source, path)
        dataset, shape, classes, root = (doc.get(k) for k in ("dataset", "input_shape", "num_classes", "data_dir"))
        if dataset is None and shape is None:
            return None
        return cls(None if dataset is None else dataset.as_str(), None if shape is None else _shape(shape),
                   None if classes is None else classes.as_int(minimum=1), None if root is None else root.as_str())

    def to_dict(self) -> dict[str, Any]:
        """The keys to save (those known)."""
        out = {"dataset": self.dataset, "input_shape": None if self.input_shape is None else list(self.input_shape),
               "num_classes": self.num_classes, "data_dir": self.data_dir}
        return {k: v for k, v in out.items() if v is not None}

    def describe(self) -> str:
        """'mnist (1x28x28)', for messages."""
        shape = f" ({shape_text(self.input_shape)})" if self.input_shape else ""
        return f"{self.dataset or 'unrecorded data'}{shape}"

    def choose(self, dataset: str | None, data_dir: str | None) -> tuple[str, str | None]:
        """(dataset, data directory) for a later command: the given ones, else the recorded ones (the
        directory only for the recorded dataset, and only while it exists), else DEFAULT_DATASET."""
        name = dataset or self.dataset or DEFAULT_DATASET
        same = self.dataset is not None and self.dataset in DATASETS and DATASETS.resolve(name) == DATASETS.resolve(
            self.dataset)
        if data_dir is None and same and self.data_dir is not None and Path(self.data_dir).is_dir():
            data_dir = self.data_dir
        return name, data_dir

    def check(self, info: DatasetInfo, given: str) -> None:
        """ConfigError naming both when `info`'s images or classes are not the recorded ones; `given`
        says where the data came from in the caller's words (e.g. "--dataset cifar10")."""
        if self.input_shape is not None and tuple(info.input_shape) != tuple(self.input_shape):
            raise ConfigError(f"the model was trained on {self.describe()}; {given} gives "
                              f"{shape_text(info.input_shape)} images")
        if self.num_classes is not None and info.num_classes != self.num_classes:
            raise ConfigError(f"the model was trained on {self.dataset or 'data'} with {self.num_classes} classes; "
                              f"{given} has {info.num_classes} classes")


def choose_data(record: DataRecord | None, dataset: str | None, data_dir: str | None) -> tuple[str, str | None]:
    """DataRecord.choose, with DEFAULT_DATASET when nothing is recorded."""
    return (record or DataRecord(None)).choose(dataset, data_dir)


def _shape(doc: Doc) -> tuple[int, int, int]:
    items = doc.items()
    if len(items) != 3:
        raise doc.fail("a list [C, H, W] of 3 integers >= 1")
    c, h, w = (d.as_int(minimum=1) for d in items)
    return c, h, w
