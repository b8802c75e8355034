"""A trained ANN or QANN on disk: `model.safetensors` + `model.json` (architecture name, options,
bit width, dataset, training history). Rebuilt from the model registry, never unpickled: the card's
structure is checked (read_card), the architecture is built on the meta device and the stored tensors
are put in, so the model keeps the stored dtypes."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .errors import CheckpointError, ConfigError
from .data import holdout_split
from .models import create_model
from .models.registry import MODELS
from .schema import Doc, read_versioned, type_hints
from .files import DirectoryWrite, finish_interrupted_write, sha256_file
from .quantization import quantize, quantized_bits
from .io.weights import load_state, read_safetensors, safetensors_writer, weights_metadata

CARD, WEIGHTS = "model.json", "model.safetensors"
CARD_VERSION = 2  # 2: the card carries weights_sha256; version-1 cards (no hash) still load
CARD_FORMAT = "snnconvert.model"
READABLE_CARD_VERSIONS = (1, 2)  # read_card refuses others


def save_model(model: nn.Module, directory: str | Path, arch: str, num_classes: int,
               model_kwargs: dict[str, Any] | None = None, **info: Any) -> Path:
    """Write the weights and a JSON card carrying their SHA-256, as one whole (files.DirectoryWrite);
    `info` (dataset, accuracy, history, ...) goes into the card. Other files of the directory
    (checkpoints/) stay."""
    with DirectoryWrite(directory) as w:
        weights = w.write(WEIGHTS, safetensors_writer(model.state_dict(), weights_metadata()))
        w.write_json(CARD, {"format": CARD_FORMAT, "version": CARD_VERSION, "arch": arch,
                            "num_classes": num_classes, "model_kwargs": model_kwargs or {},
                            "bits": quantized_bits(model), **info, "weights_sha256": sha256_file(weights)})
    return w.directory


def read_card(directory: str | Path) -> dict[str, Any]:
    """The card of a model directory, its structure checked (CheckpointError naming the file, the key
    and what was expected): format, a version in READABLE_CARD_VERSIONS, arch (a registered model),
    num_classes, model_kwargs (the model's options, typed by its signature), bits, holdout, dataset.
    Other keys (history, accuracies, ...) are not read here."""
    d = Path(directory)
    finish_interrupted_write(d)  # a save_model() killed after its commit is completed, before it cleaned
    if not (d / CARD).is_file() or not (d / WEIGHTS).is_file():
        raise CheckpointError(f"{str(d)!r} is not a model directory: expected {CARD} and {WEIGHTS} "
                              "(written by `snnconvert train`)")
    doc, _ = read_versioned(d / CARD, CARD_FORMAT, READABLE_CARD_VERSIONS, "model card")
    _check_card(doc)
    return doc.value


def _check_card(doc: Doc) -> None:
    """The keys of a card that loading and the CLI read, typed."""
    arch = doc["arch"]
    try:
        MODELS.resolve(arch.as_str())
    except ConfigError as e:
        raise arch.error(str(e)) from None
    doc["num_classes"].as_int(minimum=1)
    _model_kwargs(doc)
    bits, holdout, dataset = doc.get("bits"), doc.get("holdout"), doc.get("dataset")
    if bits is not None:
        bits.as_int(minimum=1)
    if holdout is not None:  # training_parts reads it
        holdout["images"].as_int(minimum=1)
        holdout["seed"].as_int(minimum=0)
    if dataset is not None:
        dataset.as_str()


def _model_kwargs(doc: Doc) -> dict[str, Any]:
    """The card's model_kwargs, each one an option of model `arch` of the type its signature names."""
    kwargs = doc.get("model_kwargs")
    if kwargs is None:
        return {}
    fn = MODELS.get(doc["arch"].as_str())
    options = [p for p in inspect.signature(fn).parameters if p != "num_classes"]
    kwargs.check_keys(options, f" (the options of model {doc['arch'].value!r})")
    hints = type_hints(fn)
    return {k: kwargs[k].as_type(hints.get(k, Any)) for k in kwargs.as_object()}


def check_weights_hash(card: dict[str, Any], directory: str | Path) -> None:
    """CheckpointError unless the weights file is the one the card was written with (version >= 2)."""
    if card.get("version", 1) >= 2 and card.get("weights_sha256") != sha256_file(Path(directory) / WEIGHTS):
        raise CheckpointError(f"{str(Path(directory) / WEIGHTS)!r} does not match {CARD} (a corrupt or replaced "
                              "file, or one written by another training run); train again or restore both files")


def load_model(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the architecture from the card (quantized if the card says so) and load the weights."""
    card = read_card(directory)
    check_weights_hash(card, directory)
    path = Path(directory) / WEIGHTS
    tensors, _ = read_safetensors(path)
    model = _build(Doc(card, str(Path(directory) / CARD)))
    load_state(model, tensors, path, assign=True)  # the stored tensors, dtypes kept, replace the meta ones
    return model.eval(), card


def _build(card: Doc) -> nn.Module:
    """The card's architecture (quantized if it says so), built on the meta device: no memory is spent
    on tensors (a card asking for a huge model costs nothing), they come from the weights file. A model
    whose constructor needs real tensors (meta ones hold no values) is built on the CPU. Any error of
    the model's constructor is a CheckpointError naming the card."""
    arch, num_classes, kwargs = card["arch"].as_str(), card["num_classes"].as_int(minimum=1), _model_kwargs(card)
    bits = card.get("bits")
    n_bits = None if bits is None else bits.as_int(minimum=1)

    def build(device: str) -> nn.Module:
        with torch.device(device):
            model = create_model(arch, num_classes=num_classes, **kwargs)
            return model if n_bits is None else quantize(model, n_bits)

    try:
        return build("meta")
    except Exception:  # a registered model's constructor may raise anything; the CPU build says what
        pass
    try:
        return build("cpu")
    except Exception as e:
        raise card.error(f"model {arch!r} cannot be built from num_classes, model_kwargs and bits "
                         f"({type(e).__name__}: {e}); the card does not describe a model this snnconvert "
                         "builds") from None


def training_parts(card: dict[str, Any], train_split: Dataset) -> tuple[Dataset, Dataset | None]:
    """(the images the model trained on, the held-out ones) of its training split, from the split the
    card records (`train --holdout N`); (train_split, None) when it records none."""
    h = card.get("holdout")
    if not h:
        return train_split, None
    return holdout_split(train_split, int(h["images"]), int(h["seed"]))
