"""Accuracy at few time steps from a float ANN, without retraining: the papers' presets, their
V(0) = theta/2 variants, SpikingJelly's recipe rebuilt from our overrides, data-free thresholds,
and the calibrated preset for several target T (issue: near-lossless at T <= 8).

    python benchmarks/low_latency.py --model-dir DIR --dataset cifar10 --data-dir ../shared/data/cifar10
    python benchmarks/low_latency.py          # digits: trains digits_cnn first (about a minute)

Calibration images come from the training split (from the part the model trained on when the
model card records a held-out split); every variant is simulated once to --max-T on the test split
(--limit: the first N images). The JSON holds the accuracy at every t, the calibration time, and
diagnose() of the --diagnose variants at --diagnose-T on --diagnose-limit images.
"""
from __future__ import annotations

import argparse
import platform
import shlex
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import snnconvert as sc  # noqa: E402
from snnconvert.calibration import ErrorMinimising  # noqa: E402
from snnconvert.data import calibration_subset, dataset_as_tensors, get_dataset  # noqa: E402
from snnconvert.files import write_json_atomic  # noqa: E402
from snnconvert.modelfile import load_model, training_parts  # noqa: E402
from snnconvert.models import create_model  # noqa: E402
from snnconvert.report import accuracy_table, plot_accuracy_vs_T, plot_layer_errors  # noqa: E402
from snnconvert.training import TrainConfig, train  # noqa: E402

# label -> (method, overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "rmp": ("rmp", {}),
    "rmp, V(0)=theta/2": ("rmp", {"v_init": 0.5}),
    "snm": ("snm", {}),
    "snm, V(0)=theta/2": ("snm", {"v_init": 0.5}),
    "SpikingJelly recipe (p99.9 channel, V(0)=theta/2)": ("rmp", {"threshold": "percentile", "percentile": 99.9,
                                                                  "granularity": "channel", "v_init": 0.5}),
    "SpikingJelly recipe at percentile 99.7": ("rmp", {"threshold": "percentile", "percentile": 99.7,
                                                       "granularity": "channel", "v_init": 0.5}),
    "data-free (bn mean + 3 std, channel, V(0)=theta/2)": ("rmp", {"threshold": "bn_stats", "granularity": "channel",
                                                                   "v_init": 0.5}),
    "error_min thresholds for T=8, no bias calibration": ("rmp", {"threshold": ErrorMinimising(8, 0.5),
                                                                   "granularity": "channel", "v_init": 0.5}),
    "calibrated target_T=4, bias only": ("calibrated", {"target_T": 4, "potential": False}),
    "calibrated target_T=8, bias only": ("calibrated", {"target_T": 8, "potential": False}),
    "calibrated target_T=16, bias only": ("calibrated", {"target_T": 16, "potential": False}),
    "calibrated target_T=4": ("calibrated", {"target_T": 4}),
    "calibrated target_T=8": ("calibrated", {"target_T": 8}),
    "calibrated target_T=16": ("calibrated", {"target_T": 16}),
    "calibrated target_T=4, weight calibration": ("calibrated", {"target_T": 4, "weight_calibration": True}),
    "calibrated target_T=8, weight calibration": ("calibrated", {"target_T": 8, "weight_calibration": True}),
    "calibrated target_T=16, weight calibration": ("calibrated", {"target_T": 16, "weight_calibration": True}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model-dir", default=None)
    p.add_argument("--max-T", type=int, default=64)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--calib", type=int, default=1000, help="calibration images (training split)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="LABEL", help="subset of the labels")
    p.add_argument("--diagnose", nargs="*", default=["snm", "calibrated target_T=8"], metavar="LABEL")
    p.add_argument("--diagnose-T", type=int, default=8)
    p.add_argument("--diagnose-limit", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    unknown = [v for v in args.variants + args.diagnose if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    train_set = get_dataset(args.dataset, root=args.data_dir, train=True)
    x, y = dataset_as_tensors(get_dataset(args.dataset, root=args.data_dir, train=False))
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    card: dict = {}
    if args.model_dir:
        ann, card = load_model(args.model_dir)
    else:
        cfg = TrainConfig(epochs=40, lr=3e-3, batch_size=64, optimizer="adamw", weight_decay=1e-4, progress=False)
        ann = train(create_model("digits_cnn"), train_set, cfg).model.eval()
    pool, _ = training_parts(card, train_set)
    calib = calibration_subset(pool, min(args.calib, len(pool)), seed=0)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"low_latency_{args.dataset}.json")
    runs: dict[str, dict] = {}
    diagnoses: dict[str, dict] = {}

    def save(complete: bool) -> None:
        write_json_atomic(out, {
            "command": shlex.join(["python"] + sys.argv), "machine": f"{platform.machine()} {platform.processor()}",
            "threads": args.threads, "torch": torch.__version__, "dataset": args.dataset, "test_images": len(y),
            "calibration_images": len(calib), "complete": complete, "runs": runs, "diagnoses": diagnoses,
            "wall_seconds": time.perf_counter() - start, "date": time.strftime("%Y-%m-%d %H:%M")})

    ann_acc = None
    for label in args.variants:
        method, kw = VARIANTS[label]
        t0 = time.perf_counter()
        snn = sc.convert(ann, calib, method, **kw)
        seconds = time.perf_counter() - t0
        res = sc.simulate(snn, (x, y), args.max_T, ann=ann if ann_acc is None else None, record=False)
        ann_acc = res.ann_accuracy if ann_acc is None else ann_acc
        runs[label] = {"method": snn.method, "calibration_seconds": seconds, "accuracy": res.accuracy,
                       "simulation_seconds": res.seconds}
        print(f"{label}: calibration {seconds:.1f} s; " + " ".join(
            f"T={t}:{100 * res.accuracy[t - 1]:.2f}" for t in (1, 2, 4, 8, 16, 32, 64) if t <= args.max_T),
            flush=True)
        if label in args.diagnose:
            d = sc.diagnose(snn, ann, (x[:args.diagnose_limit], y[:args.diagnose_limit]), args.diagnose_T)
            print(d.table(), flush=True)
            diagnoses[label] = d.to_dict()
            slug = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
            plot_layer_errors(d.steps, {la.name: la.relative_error for la in d.layers},
                              out.with_name(out.stem + f"_diagnosis_{slug}.png"), title=f"{label}: error per layer")
        runs[label]["ann_accuracy"] = ann_acc
        save(False)
    steps = [t for t in (1, 2, 4, 8, 16, 32, 64, 128) if t <= args.max_T]
    print(accuracy_table({k: v["accuracy"] for k, v in runs.items()}, steps, {k: ann_acc for k in runs}))
    plot_accuracy_vs_T({k: v["accuracy"] for k, v in runs.items()}, out.with_suffix(".png"), {"ANN": ann_acc},
                       title=f"{args.dataset}: accuracy at few time steps, float ANN, no retraining")
    save(True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
