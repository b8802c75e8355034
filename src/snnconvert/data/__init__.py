"""Datasets for training and converting models: name -> torch Dataset of (x [C,H,W] float32, y int).

Registered: digits (scikit-learn, built in), mnist, fashion-mnist, cifar10, cifar100, imagefolder.
"""
from __future__ import annotations

from . import cifar, digits, idx, imagefolder  # noqa: F401  (registers the datasets)
from .arrays import ImageArrayDataset
from .loaders import (calibration_subset, dataset_as_tensors, holdout_split, is_augmented, make_loader,
                      reseed_augmentation)
from .registry import DATA_ENV, DatasetInfo, dataset_info, get_dataset, list_datasets, register_dataset
from .safe_pickle import RestrictedUnpickler, safe_load

__all__ = [
    "DATA_ENV",
    "DatasetInfo",
    "ImageArrayDataset",
    "RestrictedUnpickler",
    "calibration_subset",
    "dataset_as_tensors",
    "dataset_info",
    "get_dataset",
    "holdout_split",
    "is_augmented",
    "list_datasets",
    "make_loader",
    "register_dataset",
    "reseed_augmentation",
    "safe_load",
]
