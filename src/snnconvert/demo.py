"""The `snnconvert demo`: train a small CNN on scikit-learn's digits, convert it with every method,
and report accuracy after T = 1, 2, 4, ..., 256 steps beside the ANN."""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .conversion import convert
from .data import dataset_as_tensors, get_dataset
from .models import create_model
from .outdir import ensure_writable_dir, write_json_atomic
from .report import accuracy_table, plot_accuracy_vs_T, powers_of_two
from .simulation import simulate
from .training import TrainConfig, train

# label -> (method, overrides)
DEMO_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline IF, max": ("baseline", {}),
    "baseline IF, p99.9": ("baseline", {"percentile": 99.9}),
    "RMP, alpha=1": ("rmp", {}),
    "RMP, alpha=0.5": ("rmp", {"scale": 0.5}),
    "SNM, neuron-wise": ("snm", {}),
}


def run_demo(out: str | Path = "snnconvert-demo", epochs: int = 40, T: int = 256, seed: int = 0,
             progress: bool = False, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, convert with every method, simulate on the test split; write results.json + PNG."""
    out_dir = ensure_writable_dir(out)
    start = time.perf_counter()
    torch.manual_seed(seed)
    train_set, test_set = get_dataset("digits", train=True), get_dataset("digits", train=False)
    x_train, y_train = dataset_as_tensors(train_set)
    x_test, y_test = dataset_as_tensors(test_set)
    model = create_model("digits_cnn", num_classes=10)
    cfg = TrainConfig(epochs=epochs, lr=3e-3, batch_size=64, optimizer="adamw", weight_decay=1e-4,
                      seed=seed, progress=progress)
    echo(f"training digits_cnn on {len(x_train)} digits images for {epochs} epochs ...")
    model = train(model, train_set, cfg).model.eval()
    ann_acc = _accuracy(model, x_test, y_test)
    echo(f"ANN test accuracy: {100 * ann_acc:.2f}% ({time.perf_counter() - start:.1f} s)")
    rows: dict[str, list[float]] = {}
    details: dict[str, Any] = {}
    for label, (method, overrides) in DEMO_METHODS.items():
        snn = convert(model, x_train, method, **overrides)
        res = simulate(snn, (x_test, y_test), T, ann=model, progress=progress)
        rows[label] = res.accuracy
        within = res.steps_to_reach(ann_acc - 0.01)
        details[label] = {"method": res.method, "accuracy": res.accuracy,
                          "steps_within_1pct_of_ann": within,
                          "at_T": res.summary(), "at_within_1pct": res.summary(within) if within else None,
                          "seconds": res.seconds}
    steps = powers_of_two(T)
    table = accuracy_table(rows, steps, {k: ann_acc for k in rows})
    echo(table)
    results = {"dataset": "digits (scikit-learn, 1437 train / 360 test)", "model": "digits_cnn",
               "ann_accuracy": ann_acc, "T": T, "methods": details, "table": table,
               "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "seconds": time.perf_counter() - start}
    write_json_atomic(out_dir / "results.json", results)
    plot_accuracy_vs_T(rows, out_dir / "accuracy_vs_T.png", {"ANN": ann_acc}, "digits_cnn on digits")
    echo(f"wrote {out_dir / 'results.json'} and {out_dir / 'accuracy_vs_T.png'} "
         f"({time.perf_counter() - start:.1f} s in all)")
    return results


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(-1) == y).double().mean().item()
