"""Top-1 accuracy over a dataset: the one counting loop used by training, simulation, fine-tuning
and the demo.

    accuracy = mean over samples of [argmax(predict(x)) == y]

`predict` maps a batch x [N, ...] to scores [N, classes, ...] (flattened after the batch dimension
before the argmax). Data is anything `iter_batches` walks: a tensor pair, a Dataset or a DataLoader.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import torch
from torch import nn

from .batches import iter_batches
from .errors import ConfigError

Predict = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode for the block; afterwards every submodule gets back its own mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


@torch.no_grad()
def count_correct(predict: Predict, data: Any, batch_size: int = 256, what: str = "data",
                  device: torch.device | str | None = None) -> tuple[int, int]:
    """(correct, seen) of `predict` over labelled `data`; inputs and labels are moved to `device` if given.

    ConfigError when the data has no labels, EmptyDataError when it holds no sample."""
    correct = seen = 0
    for x, y in iter_batches(data, batch_size, what):
        if y is None:
            raise ConfigError(f"{what}: accuracy needs labelled data, (inputs, labels) pairs")
        if device is not None:
            x, y = x.to(device), y.to(device)
        correct += int((predict(x).flatten(1).argmax(-1) == y).sum())
        seen += len(y)
    return correct, seen


def accuracy(predict: Predict, data: Any, batch_size: int = 256, what: str = "data",
             device: torch.device | str | None = None) -> float:
    """Top-1 accuracy of `predict` over labelled `data` (see count_correct)."""
    correct, seen = count_correct(predict, data, batch_size, what, device)
    return correct / seen
