"""CIFAR-10 / CIFAR-100 from the python-pickle batches or the lossless `.npz` batches."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from .arrays import ImageArrayDataset
from .labels import check_labels
from .locate import find_files, stat_key
from .registry import DatasetInfo, default_root, register_dataset
from .safe_pickle import safe_load

CIFAR10_INFO = DatasetInfo("cifar10", 10, (3, 32, 32), mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
CIFAR100_INFO = DatasetInfo("cifar100", 100, (3, 32, 32), mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762))
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_SPECS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "title": "CIFAR-10",
        "info": CIFAR10_INFO,
        "subdirs": ["", "cifar-10-batches-py", "cifar10", "cifar-10"],
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_keys": ("labels",),
    },
    "cifar100": {
        "title": "CIFAR-100",
        "info": CIFAR100_INFO,
        "subdirs": ["", "cifar-100-python", "cifar100", "cifar-100"],
        "train": ["train"],
        "test": ["test"],
        "label_keys": ("fine_labels", "labels"),
    },
}


def _read_npz(path: Path) -> dict[str, Any]:
    """The arrays of an .npz file (never unpickling), or DataError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # a garbled zip or .npy header raises many different types
        raise DataError(f"{str(path)!r}: corrupt .npz ({type(exc).__name__}: {exc}); expected arrays 'data' and labels") from None


def _read_batch(path: Path, npz: bool) -> dict[Any, Any]:
    """The batch's entries, by str key (Python 3 pickles' bytes keys decoded as latin-1)."""
    if npz:
        return _read_npz(path)
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise DataError(f"{str(path)!r}: expected a pickled dict with 'data' and labels, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _keys(batch: dict[Any, Any]) -> list[str]:
    """The batch's keys for a message, sortable whatever their types."""
    return sorted(repr(k) for k in batch)


def _check_data(data: Any, path: Path) -> np.ndarray:
    """`data` if it is a uint8 array (N, 3072) (CIFAR's row-major 3x32x32 images), else DataError."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{str(path)!r}: 'data' is {got}; expected uint8 (N, 3072)")
    return data


def _decode_batch(path: Path, npz: bool, label_keys: tuple[str, ...], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_batch(path, npz)
    if "data" not in batch:
        raise DataError(f"{str(path)!r}: no 'data' entry (has {_keys(batch)}); expected 'data' uint8 (N, 3072)")
    key = next((k for k in label_keys if k in batch), None)
    if key is None:
        raise DataError(f"{str(path)!r}: no label entry (has {_keys(batch)}); expected one of {list(label_keys)}")
    data = _check_data(batch["data"], path)
    labels = check_labels(batch[key], num_classes, repr(str(path)), key)
    if len(labels) != len(data):
        raise DataError(f"{str(path)!r}: {len(data)} images but {len(labels)} labels in {key!r}; they must match")
    return data, labels


@functools.lru_cache(maxsize=8)
def _decode(kind: str, npz: bool, key: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Decode (and cache per process) the batches in `key`: uint8 [N,32,32,3] and int64 [N]."""
    spec = _SPECS[kind]
    parts = [_decode_batch(Path(p), npz, spec["label_keys"], spec["info"].num_classes) for p, _, _ in key]
    data = np.concatenate([d for d, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def load_cifar_arrays(kind: str, root: str | Path | None, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,32,32,3], labels int64 [N]) of `kind` ("cifar10"/"cifar100"), cached per process."""
    spec = _SPECS[kind]
    names = spec["train" if train else "test"]
    layouts = [[[n] for n in names], [[n + ".npz"] for n in names]]
    paths, layout = find_files(
        f"{spec['title']} ({'train' if train else 'test'})",
        default_root(root),
        spec["subdirs"],
        layouts,
        hint=" Give root= the folder holding these files or its parent.",
    )
    return _decode(kind, layout == 1, stat_key(paths))


def _build(kind: str, root: str | Path | None, train: bool, augment: bool) -> Dataset:
    images, labels = load_cifar_arrays(kind, root, train)
    return ImageArrayDataset(
        images,
        labels,
        _SPECS[kind]["info"],
        augment=augment,
        pad=4,
        flip=True,
        classes=CIFAR10_CLASSES if kind == "cifar10" else None,
    )


@register_dataset("cifar10", info=lambda root=None: CIFAR10_INFO)
def cifar10(root: str | Path | None = None, train: bool = True, augment: bool = False) -> Dataset:
    """CIFAR-10: 50,000 train / 10,000 test 32x32 RGB images, 10 classes.

    Reads `data_batch_1..5` + `test_batch` (python pickles, through a restricted unpickler)
    or `data_batch_1.npz..5.npz` + `test_batch.npz`, in root or root/cifar-10-batches-py or root/cifar10.
    Augment: 4-pixel zero-padded random crop + horizontal flip.
    """
    return _build("cifar10", root, train, augment)


@register_dataset("cifar100", info=lambda root=None: CIFAR100_INFO)
def cifar100(root: str | Path | None = None, train: bool = True, augment: bool = False) -> Dataset:
    """CIFAR-100 (fine labels): `train` / `test` pickles (or `train.npz` / `test.npz`), in root or
    root/cifar-100-python or root/cifar100. Augment as for CIFAR-10."""
    return _build("cifar100", root, train, augment)
