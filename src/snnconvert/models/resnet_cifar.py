"""ResNet-20 for CIFAR (He et al. 2016, section 4.2): 16-32-64 channels, 3 BasicBlocks per stage.

Shortcuts use option B (1x1 conv + BN projection when the shape changes, identity otherwise)
rather than option A's zero-padding, because projections trace cleanly with torch.fx and convert
like any other conv. Names follow the torchvision ResNet (conv1, bn1, relu, layer1..3, avgpool, fc).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .registry import InputOptions, register_model
from .resnet import init_resnet, make_stage


class CifarResNet(nn.Module):
    """3x3 conv16-BN-ReLU stem, three stages of n BasicBlocks (16, 32, 64 ch; strides 1, 2, 2),
    global average pool, linear. depth = 6n + 2."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = make_stage(16, 16, n, 1)
        self.layer2 = make_stage(16, 32, n, 2)
        self.layer3 = make_stage(32, 64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)
        init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


@register_model(inputs=InputOptions())  # any H x W: global average pooling
def resnet20(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-20 for 32x32 inputs, option-B shortcuts (0.27M params)."""
    return CifarResNet(20, num_classes, in_channels)
