"""Fast-SNN's progressive quantization: float -> 4 -> 3 -> 2 bits, each stage from the previous."""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn
from torch.utils.data import Dataset

from ..errors import CheckpointError, ConfigError
from ..training import LAST, TrainConfig, TrainResult, train
from .quantize import quantize, quantized_bits, set_bits
from .quantizer import check_bits

PROGRESSIVE_BITS = (4, 3, 2)  # Fast-SNN's schedule: float -> 4 -> 3 -> 2 bits


def progressive_schedule(bits: int) -> list[int]:
    """The stages that end at `bits`: 4 -> 3 -> 2 down to `bits` (3 -> [4, 3], 1 -> [4, 3, 2, 1]); [bits] above 4."""
    check_bits(bits)
    return [b for b in PROGRESSIVE_BITS if b > bits] + [bits] if bits <= PROGRESSIVE_BITS[0] else [bits]


def train_progressive(model: nn.Module, train_set: Dataset, config: TrainConfig, bits: Sequence[int] = PROGRESSIVE_BITS,
                      *, calibration_data: Any = None, val_set: Dataset | None = None,
                      checkpoint_dir: str | Path | None = None, resume: bool = False,
                      log: Callable[[dict], None] | None = None,
                      after_stage: Callable[[int, nn.Module], None] | None = None) -> dict[int, TrainResult]:
    """Train one stage per bit width in `bits` (decreasing), each initialised from the previous stage.

    `model` is a trained float ANN (or an already quantized one). A float model is quantized with
    alphas from `calibration_data` (a high percentile of each activation) before the first stage.
    Returns {bits: TrainResult}; stage checkpoints go to checkpoint_dir/bits{b}/. `resume=True` resumes
    each stage that has a checkpoint (a finished one is only loaded) and starts the stages after the
    last such one afresh from the stage before, as an uninterrupted run would.
    `after_stage(bits, model)` is called after each stage with the stage's trained model (eval mode),
    before the next stage trains it further (e.g. to convert each stage as soon as it is done).
    """
    if not bits or any(b2 >= b1 for b1, b2 in zip(bits, bits[1:])):
        raise ConfigError(f"bits must be a decreasing sequence such as (4, 3, 2), got {tuple(bits)}")
    started = _started_stages(bits, checkpoint_dir, resume)
    current = copy.deepcopy(model)
    if quantized_bits(current) is None:
        current = quantize(current, bits[0], calibration_data)
    results: dict[int, TrainResult] = {}
    for b in bits:
        set_bits(current, b)
        stage_log = (lambda rec, b=b: log({**rec, "bits": b})) if log else None
        ckpt = Path(checkpoint_dir) / f"bits{b}" if checkpoint_dir is not None else None
        res = train(current, train_set, replace(config), val_set=val_set, checkpoint_dir=ckpt, resume=b in started,
                    log=stage_log)
        results[b] = TrainResult(copy.deepcopy(res.model), res.history)
        if after_stage is not None:
            after_stage(b, results[b].model)
        current = res.model
    return results


def _started_stages(bits: Sequence[int], checkpoint_dir: str | Path | None, resume: bool) -> set[int]:
    """The stages a resumed run continues: those up to the last one with a checkpoint (all of them
    must have one); empty without `resume`. CheckpointError when there is nothing to resume."""
    if not resume:
        return set()
    if checkpoint_dir is None:
        raise ConfigError("resume=True needs checkpoint_dir (the folder that holds bits<b>/last.safetensors)")
    have = [b for b in bits if (Path(checkpoint_dir) / f"bits{b}" / LAST).is_file()]
    if not have:
        raise CheckpointError(f"nothing to resume in {str(checkpoint_dir)!r}: no stage of {tuple(bits)} bits has "
                              f"a bits<b>/{LAST}; run without resume to start")
    started = list(bits[:list(bits).index(have[-1]) + 1])
    missing = [b for b in started if b not in have]
    if missing:
        raise CheckpointError(f"cannot resume from {str(checkpoint_dir)!r}: stage(s) {missing} have no {LAST} "
                              f"although a later stage ({have[-1]} bits) has one; use a new output directory")
    return set(started)
