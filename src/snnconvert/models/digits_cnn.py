"""A small CNN for scikit-learn's 8x8 digits and 28x28 MNIST / Fashion-MNIST (input_size from the data)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .registry import InputOptions, register_model


def _conv_block(cin: int, cout: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU())
    return layers


class DigitsCNN(nn.Module):
    """conv16-conv32-avgpool-conv64-avgpool-linear; each conv 3x3 pad 1 (+BN) + ReLU.

    `input_size` must be divisible by 4; the linear layer takes 64 * (input_size / 4)^2 features.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 8, batch_norm: bool = True) -> None:
        super().__init__()
        if input_size < 4 or input_size % 4:
            raise ConfigError(f"digits_cnn: input_size must be a multiple of 4 (e.g. 8 or 28), got {input_size}")
        self.features = nn.Sequential(
            *_conv_block(in_channels, 16, batch_norm),
            *_conv_block(16, 32, batch_norm),
            nn.AvgPool2d(2),
            *_conv_block(32, 64, batch_norm),
            nn.AvgPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64 * (input_size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.features(x)))


@register_model(inputs=InputOptions(channels="in_channels", size="input_size"))
def digits_cnn(num_classes: int = 10, in_channels: int = 1, input_size: int = 8, batch_norm: bool = True) -> nn.Module:
    """Conv16-conv32-avgpool-conv64-avgpool-linear with BN, for C x S x S images, S a multiple of 4:
    8x8 digits (26k parameters), 28x28 MNIST (55k). The default model; `snnconvert train` sets
    in_channels and input_size from the dataset."""
    return DigitsCNN(num_classes, in_channels, input_size, batch_norm)
