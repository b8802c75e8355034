"""Classification training for float and quantized ANNs, with atomic, resumable checkpoints.

train(model, train_set, TrainConfig(...)) -> TrainResult (training.loop; 1 process or torchrun),
evaluate_accuracy (training.evaluate), the checkpoint format (training.checkpoint), and the weight
files save_weights / load_weights (from io.weights).
"""
from ..io.weights import WEIGHTS_FORMAT, load_weights, save_weights
from .checkpoint import BEST, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, LAST
from .config import OPTIMIZERS, SCHEDULES, TrainConfig, TrainResult
from .evaluate import evaluate_accuracy
from .loop import train

__all__ = [
    "BEST", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "LAST", "OPTIMIZERS", "SCHEDULES", "WEIGHTS_FORMAT",
    "TrainConfig", "TrainResult", "evaluate_accuracy", "load_weights", "save_weights", "train",
]
