"""Per-item augmentation with plain torch ops (no torchvision)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop of x's own size from x zero-padded by `pad` pixels, then a horizontal flip
    with probability 0.5 if `flip`. x is [C,H,W]; the result has the same shape.

    Zero padding is applied to x as given (callers pad before normalising, as torchvision does).
    """
    if pad > 0:
        _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        i, j = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
        x = padded[:, i : i + h, j : j + w]
    if flip and bool(torch.rand((), generator=generator) < 0.5):
        x = x.flip(-1)
    return x
