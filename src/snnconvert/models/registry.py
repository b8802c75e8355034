"""Model registry: `create_model(name, num_classes, **options)`; models register with a decorator."""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

ModelFn = Callable[..., nn.Module]
MODELS: Registry[ModelFn] = Registry("model")


def register_model(fn: ModelFn | None = None, *, name: str | None = None) -> Any:
    """Decorator registering `fn(num_classes=..., **options) -> nn.Module` under `name` (default: fn's name).

    Usable bare (`@register_model`) or with a name (`@register_model(name="my_net")`).
    """

    def deco(f: ModelFn) -> ModelFn:
        return MODELS.add(name or f.__name__, f)

    return deco(fn) if fn is not None else deco


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS.names())


def create_model(name: str, num_classes: int = 10, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build registered model `name` with `num_classes` outputs; `kwargs` are the model's options.

    With `seed`, the initial weights come from torch.manual_seed(seed) in a forked RNG (the same seed
    gives the same model; the caller's RNG state is untouched); without, from the global RNG.
    Unknown names or options raise ConfigError naming what is accepted.
    """
    key = MODELS.resolve(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
    fn = MODELS.get(key)
    accepted = [p for p in inspect.signature(fn).parameters if p != "num_classes"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"model {key!r} got unknown option(s) {', '.join(unknown)}; it accepts: {', '.join(accepted) or 'none'}"
        )
    if seed is None:
        return fn(num_classes=num_classes, **kwargs)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an int >= 0, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn(num_classes=num_classes, **kwargs)
