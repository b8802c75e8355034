"""scikit-learn's 8x8 digits (ships with scikit-learn; nothing to download)."""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from .arrays import ImageArrayDataset
from .registry import DatasetInfo, register_dataset

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: (train indices, test indices), both sorted.

    The test set has ceil(test_fraction * N) items, shared among classes by largest remainder
    (ties to the lower class); each class's items are picked with numpy's PCG64(seed).
    """
    n = len(labels)
    n_test = math.ceil(test_fraction * n)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n_test / n
    per_class = np.floor(exact).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - per_class[i]), i))
    for i in order[: n_test - per_class.sum()]:
        per_class[i] += 1
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c, k in zip(classes, per_class):
        idx = np.flatnonzero(labels == c)
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(n), test_idx)
    return train_idx, test_idx


@functools.lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 [1797,8,8,1] on 0..16 scaled to 0..255, labels, train idx, test idx)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the 'digits' dataset needs scikit-learn, which is not installed; "
            "`pip install scikit-learn` (or snnconvert[demo])"
        ) from None
    d = load_digits()
    images = d.images.astype(np.uint8)[..., None]  # values 0..16, exact
    labels = d.target.astype(np.int64)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    return images, labels, train_idx, test_idx


@functools.lru_cache(maxsize=1)
def digits_info(root: str | Path | None = None) -> DatasetInfo:
    """DatasetInfo with the mean/std of the train split's pixels on [0, 1]."""
    images, _, train_idx, _ = _arrays()
    train = images[train_idx].astype(np.float64) / 16.0
    return DatasetInfo("digits", 10, (1, 8, 8), (float(train.mean()),), (float(train.std()),))


@register_dataset("digits", info=digits_info)
def digits(root: str | Path | None = None, train: bool = True, augment: bool = False) -> Dataset:
    """scikit-learn digits: 1797 8x8 grey images (0..16 -> [0, 1], normalised with the train mean/std),
    split 80/20 stratified with a fixed seed: 1437 train / 360 test. `root` is ignored.
    Augment: 1-pixel zero-padded random crop (no flip: digits are not mirror-symmetric).
    """
    images, labels, train_idx, test_idx = _arrays()
    idx = train_idx if train else test_idx
    return ImageArrayDataset(images[idx], labels[idx], digits_info(), augment=augment, pad=1, flip=False,
                             classes=[str(i) for i in range(10)], scale=16.0)
