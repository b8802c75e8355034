"""A dataset over images held once in memory as uint8 [N,H,W,C]; float conversion per item."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .augment import random_crop_flip
from .labels import check_labels
from .registry import DatasetInfo


class ImageArrayDataset(Dataset):
    """Items are `(x, y)`: x float32 [C,H,W] = (uint8 / scale - mean) / std, y a Python int.

    `images` must match `info.input_shape` and `labels` be integer class indices in
    [0, info.num_classes) (`check_labels`); otherwise DataError.

    `images` (uint8 [N,H,W,C]) is shared, never copied or modified. With `augment`, each item
    is randomly cropped from a `pad`-pixel zero-padded copy (and flipped if `flip`) using the
    dataset's own generator; `reseed(seed)` makes that sequence reproducible (make_loader does it).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        info: DatasetInfo,
        augment: bool = False,
        pad: int = 0,
        flip: bool = False,
        classes: list[str] | None = None,
        scale: float = 255.0,
    ) -> None:
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(f"{info.name}: images must be uint8 [N,H,W,C], got {images.dtype} {images.shape}")
        labels = check_labels(labels, info.num_classes, info.name)
        if len(labels) != len(images):
            raise DataError(f"{info.name}: {len(images)} images but {len(labels)} labels; they must match")
        if images.shape[1:] != (*info.input_shape[1:], info.input_shape[0]):
            raise DataError(f"{info.name}: images are [N,H,W,C] {images.shape}; expected [N,H,W,C] with (C,H,W) = {info.input_shape}")
        self.info = info
        self.classes = classes
        self.augment = augment
        self.pad = pad
        self.flip = flip
        self.scale = float(scale)
        self.images = torch.from_numpy(images)  # shares memory with the cached array
        self.labels = torch.from_numpy(labels)
        c = images.shape[-1]
        self._mean = torch.tensor(info.mean, dtype=torch.float32).view(c, 1, 1)
        self._std = torch.tensor(info.std, dtype=torch.float32).view(c, 1, 1)
        self._generator = torch.Generator()
        self._generator.manual_seed(0)

    def reseed(self, seed: int) -> None:
        """Restart the augmentation random sequence from `seed`."""
        self._generator.manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].permute(2, 0, 1).float().div_(self.scale)
        if self.augment:
            x = random_crop_flip(x, self.pad, self.flip, self._generator)
        x = (x - self._mean) / self._std
        return x.contiguous(), int(self.labels[index])

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All items, un-augmented, as (x float32 [N,C,H,W], y int64 [N])."""
        x = self.images.permute(0, 3, 1, 2).float().div_(self.scale)
        x = x.sub_(self._mean).div_(self._std)
        return x.contiguous(), self.labels.clone()
