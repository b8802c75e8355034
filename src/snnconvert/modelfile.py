"""A trained ANN or QANN on disk: `model.safetensors` + `model.json` (architecture name, options,
bit width, dataset, training history). Rebuilt from the model registry, never unpickled."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from .errors import CheckpointError
from .data import holdout_split
from .models import create_model
from .files import ensure_writable_dir, write_json_atomic
from .quantization import quantize, quantized_bits
from .io.weights import load_weights, save_weights

CARD, WEIGHTS = "model.json", "model.safetensors"


def save_model(model: nn.Module, directory: str | Path, arch: str, num_classes: int,
               model_kwargs: dict[str, Any] | None = None, **info: Any) -> Path:
    """Write the weights and a JSON card; `info` (dataset, accuracy, history, ...) goes into the card."""
    d = ensure_writable_dir(directory)
    save_weights(model, d / WEIGHTS)
    card = {"format": "snnconvert.model", "version": 1, "arch": arch, "num_classes": num_classes,
            "model_kwargs": model_kwargs or {}, "bits": quantized_bits(model), **info}
    write_json_atomic(d / CARD, card)
    return d


def read_card(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    if not (d / CARD).is_file() or not (d / WEIGHTS).is_file():
        raise CheckpointError(f"{str(d)!r} is not a model directory: expected {CARD} and {WEIGHTS} "
                              "(written by `snnconvert train`)")
    try:
        card = json.loads((d / CARD).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(d / CARD)!r} is not valid JSON: {e}") from e
    if not isinstance(card, dict) or card.get("format") != "snnconvert.model":
        raise CheckpointError(f"{str(d / CARD)!r} is not a snnconvert model card")
    return card


def load_model(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the architecture from the card (quantized if the card says so) and load the weights."""
    card = read_card(directory)
    model = create_model(card["arch"], num_classes=card["num_classes"], **card.get("model_kwargs", {}))
    if card.get("bits"):
        model = quantize(model, int(card["bits"]))
    load_weights(model, Path(directory) / WEIGHTS)
    return model.eval(), card


def training_parts(card: dict[str, Any], train_split: Dataset) -> tuple[Dataset, Dataset | None]:
    """(the images the model trained on, the held-out ones) of its training split, from the split the
    card records (`train --holdout N`); (train_split, None) when it records none."""
    h = card.get("holdout")
    if not h:
        return train_split, None
    return holdout_split(train_split, int(h["images"]), int(h["seed"]))
