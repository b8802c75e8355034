"""What a training run is asked to do (`TrainConfig`) and what it returns (`TrainResult`).

TrainConfig is frozen and validated on construction (ConfigError naming the field). Its learning rate
at 0-based epoch e is lr * (1 + cos(pi e / epochs)) / 2 with schedule "cosine", lr with "constant".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all validated on construction)."""

    epochs: int
    lr: float
    batch_size: int = 128
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    seed: int = 0
    label_smoothing: float = 0.0
    progress: bool = True
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ConfigError:
            return ConfigError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}")

        for name in ("epochs", "batch_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(name, "an int")
        if self.epochs < 1:
            raise bad("epochs", ">= 1")
        if self.batch_size < 1:
            raise bad("batch_size", ">= 1")
        if self.seed < 0:
            raise bad("seed", ">= 0")
        if not _finite(self.lr) or self.lr <= 0:
            raise bad("lr", "a finite number > 0")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {SCHEDULES}")
        if not _finite(self.momentum) or not 0 <= self.momentum < 1:
            raise bad("momentum", "in [0, 1)")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "a finite number >= 0")
        if not _finite(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "in [0, 1)")
        if self.grad_clip is not None and (not _finite(self.grad_clip) or self.grad_clip <= 0):
            raise bad("grad_clip", "None or a finite number > 0")

    def lr_at(self, epoch: int) -> float:
        """Learning rate used during 0-based `epoch`."""
        if self.schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))


@dataclass
class TrainResult:
    """The trained model (eval mode) and one history record per epoch.

    Each record: epoch (1-based), train_loss, train_acc, val_acc (None without val_set), lr, seconds.
    """

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_val_acc(self) -> float | None:
        accs = [h["val_acc"] for h in self.history if h.get("val_acc") is not None]
        return max(accs) if accs else None


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
