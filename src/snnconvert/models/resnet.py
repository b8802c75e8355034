"""ResNet-18/34 with torchvision's module names, so torchvision state_dicts load with strict=True.

Names: conv1, bn1, relu, maxpool, layer1..layer4 (BasicBlocks: conv1, bn1, relu, conv2, bn2,
downsample.0 conv / downsample.1 BN, relu2), avgpool, flatten, fc. The parameter-free modules
`relu2` (after the residual add) and `flatten` are extra: each ReLU is its own module so a converter
can give it its own threshold; they add no state_dict keys.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .registry import InputOptions, register_model


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU-3x3 conv-BN, plus the identity (or `downsample(x)`), then ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return self.relu2(out)


def make_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """`blocks` BasicBlocks; the first strides and, if the shape changes, has a 1x1 conv+BN shortcut."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes),
        )
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_resnet(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming-normal convs (fan_out), BN weight 1 / bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """torchvision-layout ResNet with BasicBlocks (64-128-256-512 channels).

    `cifar_stem=True` replaces the 7x7/2 conv + 3x3/2 max pool stem with a 3x3/1 conv and no
    pooling (for 32x32 inputs; `maxpool` becomes nn.Identity). `stem_pool` picks the stem pooling
    of the ImageNet stem: "max" (torchvision) or "avg" (conversion-friendly; same state_dict).
    """

    def __init__(
        self,
        layers: list[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        cifar_stem: bool = False,
        stem_pool: str = "max",
    ) -> None:
        super().__init__()
        if stem_pool not in ("max", "avg"):
            raise ConfigError(f"stem_pool must be 'max' or 'avg', got {stem_pool!r}")
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        if cifar_stem:
            self.maxpool: nn.Module = nn.Identity()
        elif stem_pool == "max":
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.maxpool = nn.AvgPool2d(3, stride=2, padding=1)
        self.layer1 = make_stage(64, 64, layers[0], 1)
        self.layer2 = make_stage(64, 128, layers[1], 2)
        self.layer3 = make_stage(128, 256, layers[2], 2)
        self.layer4 = make_stage(256, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, num_classes)
        init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


@register_model(inputs=InputOptions())  # any H x W: global average pooling
def resnet18(num_classes: int = 10, in_channels: int = 3, cifar_stem: bool = False, stem_pool: str = "max") -> nn.Module:
    """ResNet-18 (11.7M params with 1000 classes); torchvision-compatible names. Use num_classes=1000
    for ImageNet weights and cifar_stem=True for 32x32 inputs."""
    return ResNet([2, 2, 2, 2], num_classes, in_channels, cifar_stem, stem_pool)


@register_model(inputs=InputOptions())  # any H x W: global average pooling
def resnet34(num_classes: int = 10, in_channels: int = 3, cifar_stem: bool = False, stem_pool: str = "max") -> nn.Module:
    """ResNet-34 (21.8M params with 1000 classes); torchvision-compatible names."""
    return ResNet([3, 4, 6, 3], num_classes, in_channels, cifar_stem, stem_pool)
