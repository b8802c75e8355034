"""VGG networks for 32x32 inputs (CIFAR): vgg11, vgg16 and the CPU-sized vgg_small.

Layout: `features` (3x3 convs pad 1, [BN], ReLU, [Dropout], 2x2 pooling at each "M"),
`avgpool` (global average pooling, AdaptiveAvgPool2d(1)), `flatten`, `classifier`.
Classifier: vgg11/vgg16 use Linear(512, 512)-ReLU-Dropout-Linear(512, num_classes);
vgg_small uses [Dropout-]Linear(4 * width, num_classes).

`constrained=True` is RMP-SNN's conversion-friendly recipe (after Sengupta et al. 2019):
no batch norm, no biases, average pooling, dropout (0.5 in the classifier, 0.2 after each conv
ReLU unless `dropout` / `conv_dropout` say otherwise).
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from .registry import InputOptions, register_model

Cfg = Sequence[Union[int, str]]
CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG from a cfg list (ints: conv widths, "M": pooling); see the module docstring."""

    def __init__(
        self,
        cfg: Cfg,
        num_classes: int = 10,
        in_channels: int = 3,
        batch_norm: bool = True,
        pool: str = "avg",
        bias: bool = True,
        dropout: float = 0.5,
        conv_dropout: float = 0.0,
        hidden: int | None = 512,
    ) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ConfigError(f"pool must be 'avg' or 'max', got {pool!r}")
        for label, p in (("dropout", dropout), ("conv_dropout", conv_dropout)):
            if not 0.0 <= float(p) < 1.0:
                raise ConfigError(f"{label} must be in [0, 1), got {p!r}")
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.AvgPool2d(2, 2) if pool == "avg" else nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(c, int(v), 3, padding=1, bias=bias))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v), affine=True))
            layers.append(nn.ReLU())
            if conv_dropout > 0:
                layers.append(nn.Dropout(conv_dropout))
            c = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        head: list[nn.Module] = []
        if hidden:
            head += [nn.Linear(c, hidden, bias=bias), nn.ReLU()]
            c = hidden
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(c, num_classes, bias=bias))
        self.classifier = nn.Sequential(*head)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _build(
    cfg_name: str,
    cfg: Cfg,
    num_classes: int,
    in_channels: int,
    batch_norm: bool | None,
    pool: str | None,
    bias: bool | None,
    dropout: float | None,
    conv_dropout: float | None,
    constrained: bool,
    hidden: int | None,
    default_dropout: float,
) -> VGG:
    if constrained:
        clashes = [
            f"{k}={v!r}"
            for k, v, bad in (("batch_norm", batch_norm, True), ("bias", bias, True), ("pool", pool, "max"))
            if v == bad
        ]
        if clashes:
            raise ConfigError(
                f"{cfg_name}: constrained=True means no batch norm, no bias and average pooling; "
                f"drop {', '.join(clashes)} or set constrained=False"
            )
        batch_norm, bias, pool = False, False, "avg"
        dropout = 0.5 if dropout is None else dropout
        conv_dropout = 0.2 if conv_dropout is None else conv_dropout
    return VGG(
        cfg,
        num_classes=num_classes,
        in_channels=in_channels,
        batch_norm=True if batch_norm is None else batch_norm,
        pool=pool or "avg",
        bias=True if bias is None else bias,
        dropout=default_dropout if dropout is None else dropout,
        conv_dropout=0.0 if conv_dropout is None else conv_dropout,
        hidden=hidden,
    )


def _cifar_vgg(name: str, params: str) -> Callable[..., nn.Module]:
    """Register VGG `name` (layout CFGS[name]) for CIFAR: 512-unit hidden classifier, dropout 0.5."""

    def build(num_classes: int = 10, in_channels: int = 3, batch_norm: bool | None = None, pool: str | None = None,
              bias: bool | None = None, dropout: float | None = None, conv_dropout: float | None = None,
              constrained: bool = False) -> nn.Module:
        return _build(name, CFGS[name], num_classes, in_channels, batch_norm, pool, bias, dropout, conv_dropout,
                      constrained, 512, 0.5)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"{name.upper().replace('VGG', 'VGG-')} for CIFAR ({params} params). Defaults: "
                     "batch_norm=True, pool=\"avg\", bias=True, dropout=0.5.")
    return register_model(build, inputs=InputOptions(min_size=32))  # five 2x2 poolings


vgg11 = _cifar_vgg("vgg11", "9.2M")
vgg16 = _cifar_vgg("vgg16", "15M")


@register_model(inputs=InputOptions(min_size=8))  # three 2x2 poolings, then global average pooling
def vgg_small(num_classes: int = 10, in_channels: int = 3, batch_norm: bool | None = None, pool: str | None = None,
              bias: bool | None = None, dropout: float | None = None, conv_dropout: float | None = None,
              constrained: bool = False, width: int = 64) -> nn.Module:
    """w-w-pool-2w-2w-pool-4w-4w-pool, global average pool, linear; w = `width` (64: 1.15M params).
    Any C x H x W input with H, W >= 8 (MNIST too: `snnconvert train` sets in_channels from the data).

    Intent: a CIFAR-10 model small enough to train on a CPU. Measured on this project's 2 CPU
    cores (batch 128, fp32, SGD lr 0.05 cosine, crop+flip): width 32 (0.29M parameters) takes
    75-90 s per epoch and reaches 87.0% test accuracy after 15 epochs (21 min; see
    benchmarks/results/accuracy_latency_cifar10.json). Defaults: batch_norm=True, pool="avg",
    bias=True, dropout=0.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"vgg_small: width must be a positive int (64 gives the standard layout), got {width!r}")
    cfg: list[int | str] = [width, width, "M", 2 * width, 2 * width, "M", 4 * width, 4 * width, "M"]
    return _build("vgg_small", cfg, num_classes, in_channels, batch_norm, pool, bias, dropout, conv_dropout, constrained, None, 0.0)
