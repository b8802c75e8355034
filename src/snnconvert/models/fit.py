"""A zoo model built for a dataset: the options that carry the input shape (InputOptions) are filled
from the dataset's DatasetInfo unless given, and a model that still cannot take the data's images is
refused before any training, naming the shape the model expects and the shape the data has."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.registry import DatasetInfo, fixed_shape_infos, shape_text
from ..errors import ConfigError, SnnConvertError
from .registry import MODELS, create_model, input_options, list_models, model_defaults


def fill_input_options(name: str, shape: tuple[int, int, int], options: dict[str, Any]) -> dict[str, Any]:
    """`options` of model `name`, with the options that carry the input shape [C, H, W] set from `shape`
    where not given (a size option only for square images: H = W)."""
    spec = input_options(name)
    c, h, w = shape
    filled: dict[str, Any] = {}
    if spec.channels is not None:
        filled[spec.channels] = c
    if spec.size is not None and h == w:
        filled[spec.size] = h
    return {**filled, **options}


def expected_input(name: str, options: dict[str, Any]) -> str:
    """The images model `name` built with `options` takes: '1x28x28 images', '3xHxW images with H and
    W >= 32' or '3xHxW images of any size'."""
    spec, defaults = input_options(name), model_defaults(name)

    def value(option: str | None, symbol: str) -> str:
        v = inspect.Parameter.empty if option is None else options.get(option, defaults.get(option))
        return symbol if v in (inspect.Parameter.empty, None) else str(v)

    return _shape_phrase(name, value(spec.channels, "C"), value(spec.size, "S"))


def _shape_phrase(name: str, c: str, s: str) -> str:
    spec = input_options(name)
    if spec.size is not None:
        return f"{c}x{s}x{s} images"
    return f"{c}xHxW images " + (f"with H and W >= {spec.min_size}" if spec.min_size > 1 else "of any size")


def check_takes(name: str, info: DatasetInfo, options: dict[str, Any]) -> None:
    """ConfigError naming both shapes when model `name` built with `options` cannot take `info`'s images
    (see _failure); an option the model refuses is a ConfigError saying so and naming the data's shape."""
    try:
        failure = _failure(name, info, options)
    except ConfigError as e:
        raise ConfigError(f"{e} ({info.name} has {shape_text(info.input_shape)} images)") from None
    if failure is None:
        return
    shape_options = ", ".join(f"{k}={v!r}" for k, v in options.items() if k in _shape_options(name))
    fits = [m for m in list_models() if fits_data(m, info)]
    raise ConfigError(
        f"model {MODELS.resolve(name)!r}{f' ({shape_options})' if shape_options else ''} expects "
        f"{expected_input(name, options)}; {info.name} has {shape_text(info.input_shape)} images "
        f"({failure}). Models that fit {info.name}: {', '.join(fits) or 'none'} (their input options "
        "are filled from the data unless given)")


def fits_data(name: str, info: DatasetInfo) -> bool:
    """Whether model `name`, with its input options filled from `info`, takes `info`'s images."""
    try:
        return _failure(name, info, fill_input_options(name, info.input_shape, {})) is None
    except ConfigError:  # an option value the model refuses (e.g. digits_cnn's input_size 30)
        return False


def _failure(name: str, info: DatasetInfo, options: dict[str, Any]) -> str | None:
    """Why model `name` built with `options` cannot take one of `info`'s images, None if it can: the
    model is built on the meta device (no memory, no compute) and one image of the data's shape is run
    through it. A model the meta device cannot build or run passes (training's first-item probe still
    checks it); the model's own ConfigErrors propagate."""
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=info.num_classes, **options)
    except SnnConvertError:
        raise
    except Exception:  # a constructor that needs real tensors
        return None
    try:
        with torch.no_grad():
            model.eval()(torch.empty((1, *info.input_shape), device="meta"))
    except NotImplementedError:  # an operation without a meta kernel
        return None
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        return (str(e).splitlines() or [type(e).__name__])[0]
    return None


def model_for(name: str, info: DatasetInfo, seed: int | None = None,
              **options: Any) -> tuple[nn.Module, dict[str, Any]]:
    """(model `name` for `info`'s images and classes, the options it was built with). The input options
    (in_channels, input_size, ... as the model declares) come from `info` unless given in `options`;
    a model that cannot take the data is refused before it is built (check_takes). `seed` as in
    create_model."""
    full = fill_input_options(name, info.input_shape, options)
    check_takes(name, info, full)
    return create_model(name, num_classes=info.num_classes, seed=seed, **full), full


@dataclass(frozen=True)
class ModelSummary:
    """One zoo entry for listings: its name, a one-line description, the input shapes it takes (and
    which options carry them), the datasets it fits and its options with their defaults."""

    name: str
    description: str
    inputs: str
    fits: list[DatasetInfo]
    options: dict[str, Any]


def describe_models() -> list[ModelSummary]:
    """A ModelSummary of every registered model, by name; `fits` lists the datasets of known shape
    (data.fixed_shape_infos) the model takes with its input options filled from them."""
    infos = fixed_shape_infos()
    return [ModelSummary(name, _description(name), _inputs_text(name), [i for i in infos if fits_data(name, i)],
                         model_defaults(name)) for name in list_models()]


def _shape_options(name: str) -> list[str]:
    spec = input_options(name)
    return [o for o in (spec.channels, spec.size) if o is not None]


def _inputs_text(name: str) -> str:
    """'CxSxS images (C = in_channels, S = input_size: from the data unless given)', for listings."""
    spec = input_options(name)
    carried = [f"{symbol} = {o}" for symbol, o in (("C", spec.channels), ("S", spec.size)) if o is not None]
    return _shape_phrase(name, "C", "S") + (f" ({', '.join(carried)}: from the data unless given)" if carried else "")


def _description(name: str) -> str:
    """The first sentence of the model function's docstring."""
    text = " ".join((inspect.getdoc(MODELS.get(name)) or "").split())
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]
