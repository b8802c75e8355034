"""Model registry: `create_model(name, num_classes, **options)`; models register with a decorator,
declaring which of their options carry the input shape (InputOptions)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

ModelFn = Callable[..., nn.Module]
MODELS: Registry[ModelFn] = Registry("model")


@dataclass(frozen=True)
class InputOptions:
    """Which options of a model carry its input shape [C, H, W], filled from the dataset (models.fit).

    channels: the option taking C (None: the model fixes it); size: the option taking H = W, for a
    model whose layers depend on it (None: any size its poolings allow); min_size: the smallest H and
    W it takes then (e.g. 32 for five 2x2 poolings)."""

    channels: str | None = "in_channels"
    size: str | None = None
    min_size: int = 1


INPUTS: dict[str, InputOptions] = {}  # canonical model name -> its input options


def register_model(fn: ModelFn | None = None, *, name: str | None = None,
                   inputs: InputOptions | None = None) -> Any:
    """Decorator registering `fn(num_classes=..., **options) -> nn.Module` under `name` (default: fn's name).

    Usable bare (`@register_model`) or with arguments (`@register_model(name="my_net", inputs=...)`).
    `inputs` declares the options that carry the input shape; by default `in_channels` and
    `input_size`, where `fn` has them.
    """

    def deco(f: ModelFn) -> ModelFn:
        key = name or f.__name__
        MODELS.add(key, f)
        INPUTS[MODELS.resolve(key)] = inputs or _inferred_inputs(f)
        return f

    return deco(fn) if fn is not None else deco


def _inferred_inputs(fn: ModelFn) -> InputOptions:
    params = inspect.signature(fn).parameters
    return InputOptions("in_channels" if "in_channels" in params else None,
                        "input_size" if "input_size" in params else None)


def input_options(name: str) -> InputOptions:
    """The InputOptions model `name` registered with (ConfigError naming the models if unknown)."""
    return INPUTS[MODELS.resolve(name)]


def model_defaults(name: str) -> dict[str, Any]:
    """The options of model `name` (all but num_classes) and their defaults (inspect.Parameter.empty
    for a required one)."""
    fn = MODELS.get(name)
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if k != "num_classes"}


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
    accepted = list(model_defaults(key))
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
