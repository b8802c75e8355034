"""Accuracy against time steps for every method on one trained network (issue: real data benchmark).

    python benchmarks/accuracy_latency.py --dataset cifar10 --data-dir ../shared/data/cifar10 \
        --model vgg_small --train-epochs 30 --max-T 1024
    python benchmarks/accuracy_latency.py --model-dir runs/vgg_small_cifar10 ...   # an existing ANN

Trains (or loads) the ANN, trains 3- and 2-bit QANNs progressively from it, converts with every
method (baseline max / 99.9%, RMP alpha 1 / lower, SNM neuron-wise and with V(0) = theta/2, the
calibrated preset for --calibrated-targets, Fast-SNN 3 and 2 bits before and after layer-wise fine-tuning), simulates each ONCE to its largest T on the test split, and writes
JSON (accuracy at every t, steps to come within 1% and 0.1%, firing rates and energy there, the
hard-vs-soft-reset step ratio) plus a PNG plot, with the command, the machine and the wall time.

On a CPU a run to T = 1024 on all 10,000 CIFAR-10 images costs about 1024 x 10,000 ANN passes per
method, so the script has two tiers: every method on the whole test split to --max-T / --snm-T /
--fast-T, and with --long-T the slow float methods (baseline, RMP, SNM) again on the first
--long-limit images to --long-T (JSON "long_runs", plot *_long.png).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import snnconvert as sc  # noqa: E402
from snnconvert.data import calibration_subset, dataset_as_tensors, dataset_info, get_dataset  # noqa: E402
from snnconvert.modelfile import load_model, save_model  # noqa: E402
from snnconvert.models import create_model  # noqa: E402
from snnconvert.files import write_json_atomic  # noqa: E402
from snnconvert.finetune import finetune_layerwise  # noqa: E402
from snnconvert.quantization import train_progressive  # noqa: E402
from snnconvert.report import accuracy_table, plot_accuracy_vs_T, powers_of_two  # noqa: E402
from snnconvert.training import TrainConfig, evaluate_accuracy, train  # noqa: E402


def first_reaching(acc: list[float], level: float) -> int | None:
    """First t (1-based) whose accuracy is at least `level`, None if never."""
    return next((t for t, a in enumerate(acc, start=1) if a >= level), None)


def hard_vs_soft(hard: list[float], soft: list[float], levels: int = 8) -> list[dict]:
    """Steps hard reset needs over steps soft reset (RMP) needs to first reach the same accuracy, at
    `levels` evenly spaced accuracies above the step-1 accuracy, up to the best accuracy both reach."""
    top = min(max(hard), max(soft))
    low = min(hard[0], soft[0])
    if top <= low:  # neither rises above its first step: no level to compare at
        return []
    rows = []
    for i in range(1, levels + 1):
        level = low + (top - low) * i / levels
        th, ts = first_reaching(hard, level), first_reaching(soft, level)
        if th and ts:
            rows.append({"accuracy": level, "hard_reset_steps": th, "rmp_steps": ts, "ratio": th / ts})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--model", default="vgg_small")
    p.add_argument("--model-kwargs", default="{}", help="JSON options for the model, e.g. '{\"width\": 32}'")
    p.add_argument("--model-dir", default=None, help="use this trained ANN instead of training one")
    p.add_argument("--train-epochs", type=int, default=30)
    p.add_argument("--qann-epochs", type=int, default=3, help="epochs per progressive stage (4, 3, 2 bits)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-T", type=int, default=1024)
    p.add_argument("--baseline-T", type=int, default=None, help="largest T of the baseline runs (default --max-T)")
    p.add_argument("--fast-T", type=int, default=None,
                   help="largest T simulated for Fast-SNN (default 2^(b+1): 16 for 3 bits, 8 for 2 bits)")
    p.add_argument("--snm-T", type=int, default=256, help="largest T simulated for SNM")
    p.add_argument("--calibrated-targets", type=int, nargs="*", default=[4, 8, 16],
                   help="target T of the calibrated preset's runs (none: skip them)")
    p.add_argument("--calibrated-T", type=int, default=64, help="largest T simulated for the calibrated preset")
    p.add_argument("--limit", type=int, default=None, help="only the first N test images (default: all)")
    p.add_argument("--long-T", type=int, default=None,
                   help="also run baseline, RMP and SNM to this T on the first --long-limit test images")
    p.add_argument("--long-limit", type=int, default=1000)
    p.add_argument("--long-snm-T", type=int, default=None, help="largest T of SNM's long run (default --long-T)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.compile'd neuron updates (the default; same spikes, faster); --no-compile: eager")
    p.add_argument("--calib", type=int, default=1024, help="training images used for calibration")
    p.add_argument("--finetune-images", type=int, default=5000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", default=str(ROOT / "runs" / "accuracy_latency"))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    work = Path(args.work_dir)
    info = dataset_info(args.dataset)
    train_set = get_dataset(args.dataset, root=args.data_dir, train=True, augment=True)
    plain_train = get_dataset(args.dataset, root=args.data_dir, train=True)
    test_set = get_dataset(args.dataset, root=args.data_dir, train=False)
    x_test, y_test = dataset_as_tensors(test_set)
    if args.limit:
        x_test, y_test = x_test[:args.limit], y_test[:args.limit]
    calib = calibration_subset(plain_train, args.calib, seed=0)
    log = lambda rec: print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"  # noqa: E731
                                     for k, v in rec.items()), flush=True)
    kwargs = json.loads(args.model_kwargs)
    if args.model_dir:
        ann, card = load_model(args.model_dir)
    else:
        cfg = TrainConfig(epochs=args.train_epochs, lr=args.lr, batch_size=args.batch_size, optimizer="sgd",
                          weight_decay=5e-4, progress=False)
        ann = train(create_model(args.model, num_classes=info.num_classes, **kwargs), train_set, cfg,
                    checkpoint_dir=work / "ann_ckpt", resume=(work / "ann_ckpt" / "last.safetensors").exists(),
                    log=log).model.eval()
        save_model(ann, work / "ann", args.model, info.num_classes, kwargs, dataset=args.dataset)
    ann_acc = evaluate_accuracy(ann, TensorDataset(x_test, y_test))
    print(f"ANN accuracy {100 * ann_acc:.2f}% ({time.perf_counter() - start:.0f} s)", flush=True)
    qcfg = TrainConfig(epochs=args.qann_epochs, lr=args.lr * 0.2, batch_size=args.batch_size, optimizer="sgd",
                       weight_decay=1e-4, progress=False)
    qanns = train_progressive(ann, train_set, qcfg, (4, 3, 2), calibration_data=calib,
                              checkpoint_dir=work / "qann_ckpt", resume=(work / "qann_ckpt").exists(), log=log)
    ft_x, ft_y = dataset_as_tensors(plain_train)
    ft_data = (ft_x[:args.finetune_images], ft_y[:args.finetune_images])

    runs: dict[str, dict] = {}
    long_runs: dict[str, dict] = {}
    path = Path(args.out or ROOT / "benchmarks" / "results" / f"accuracy_latency_{args.dataset}.json")

    def save(complete: bool, **extra) -> None:  # after every run, so an interrupted run keeps what it measured
        write_json_atomic(path, {
            "command": " ".join(["python"] + sys.argv), "machine": f"{platform.machine()} {platform.processor()}",
            "threads": args.threads, "torch": torch.__version__, "dataset": args.dataset, "model": args.model,
            "model_kwargs": kwargs, "test_images": len(y_test), "ann_accuracy": ann_acc, "complete": complete,
            "compiled_neurons": args.compile, "runs": runs, "long_runs": long_runs, **extra,
            "wall_seconds": time.perf_counter() - start, "date": time.strftime("%Y-%m-%d %H:%M:%S")})

    def run(label: str, snn: sc.SpikingModel, T: int, ref: float, model: torch.nn.Module,
            into: dict[str, dict] | None = None, limit: int | None = None) -> None:
        t0 = time.perf_counter()
        data = (x_test[:limit], y_test[:limit]) if limit else (x_test, y_test)
        res = sc.simulate(snn, data, T, ann=model, progress=True, compile=args.compile)
        w1, w01 = res.steps_to_reach(ref - 0.01), res.steps_to_reach(ref - 0.001)
        (runs if into is None else into)[label] = {
            "method": res.method, "test_images": res.samples, "reference_accuracy": ref, "accuracy": res.accuracy,
            "steps_within_1pct": w1, "steps_within_0.1pct": w01,
            "at_within_1pct": res.summary(w1) if w1 else None, "at_T": res.summary(),
            "seconds": time.perf_counter() - t0}
        save(complete=False)
        print(f"{label} [{res.samples} images]: acc@T={T} {100 * res.accuracy[-1]:.2f}% (ref {100 * ref:.2f}%), "
              f"within 1% at {w1}, within 0.1% at {w01} ({time.perf_counter() - t0:.0f} s)", flush=True)

    float_methods = {
        "baseline IF, max": (lambda: sc.convert(ann, calib, "baseline"), args.baseline_T or args.max_T),
        "baseline IF, p99.9": (lambda: sc.convert(ann, calib, "baseline", percentile=99.9),
                               args.baseline_T or args.max_T),
        "RMP, alpha=1": (lambda: sc.convert(ann, calib[:256], "rmp"), args.max_T),
        "RMP, alpha=0.5": (lambda: sc.convert(ann, calib[:256], "rmp", scale=0.5), args.max_T),
        "SNM, neuron-wise": (lambda: sc.convert(ann, calib, "snm"), args.snm_T),
        # beyond the papers: V(0) = theta/2 and post-training calibration for a target T (low_latency.py
        # compares more variants at few steps)
        "SNM, V(0)=theta/2": (lambda: sc.convert(ann, calib, "snm", v_init=0.5), args.snm_T),
        **{f"calibrated target_T={t}": ((lambda t=t: sc.convert(ann, calib, "calibrated", target_T=t)),
                                        args.calibrated_T) for t in args.calibrated_targets},
    }
    snns = {label: make() for label, (make, _) in float_methods.items()}
    for label, (_, T) in float_methods.items():
        run(label, snns[label], T, ann_acc, ann)
    for bits in (3, 2):
        qann = qanns[bits].model.eval()
        q_acc = evaluate_accuracy(qann, TensorDataset(x_test, y_test))
        snn = sc.convert(qann, method="fastsnn")
        fast_T = args.fast_T or 2 ** (bits + 1)
        run(f"Fast-SNN {bits}-bit, unsigned IF", sc.convert(qann, method="fastsnn", neuron="if"), fast_T, q_acc, qann)
        run(f"Fast-SNN {bits}-bit", snn, fast_T, q_acc, qann)
        tuned, report = finetune_layerwise(snn, qann, ft_data, epochs=1, progress=True)
        run(f"Fast-SNN {bits}-bit + fine-tuning", tuned, fast_T, q_acc, qann)
        runs[f"Fast-SNN {bits}-bit + fine-tuning"]["finetune"] = [vars(la) for la in report.layers]
    if args.long_T:
        n_long = min(args.long_limit, len(y_test))
        long_ann_acc = evaluate_accuracy(ann, TensorDataset(x_test[:n_long], y_test[:n_long]))
        for label in float_methods:
            if label.startswith("calibrated") or "theta/2" in label:  # few-step variants: no long run
                continue
            T = (args.long_snm_T or args.long_T) if label.startswith("SNM") else args.long_T
            run(label, snns[label], T, long_ann_acc, ann, into=long_runs, limit=n_long)

    rows = {k: v["accuracy"] for k, v in runs.items()}
    refs = {k: v["reference_accuracy"] for k, v in runs.items()}
    table = accuracy_table(rows, powers_of_two(args.max_T), refs)
    print(table)
    long_table = None
    if long_runs:
        long_table = accuracy_table({k: v["accuracy"] for k, v in long_runs.items()}, powers_of_two(args.long_T),
                                    {k: v["reference_accuracy"] for k, v in long_runs.items()})
        print(f"first {n_long} test images, to T={args.long_T}:\n{long_table}")
    # The paper's claim: RMP reaches an accuracy in 2-8x fewer steps than hard reset. Compared at every
    # accuracy level both reach, on the longest runs there are.
    curves = long_runs or runs
    reset_ratio = hard_vs_soft(curves["baseline IF, max"]["accuracy"], curves["RMP, alpha=1"]["accuracy"])
    save(complete=True, table=table, long_table=long_table, hard_vs_rmp_steps=reset_ratio)
    plot_accuracy_vs_T(rows, path.with_suffix(".png"), {"ANN": ann_acc},
                       f"{args.model} on {args.dataset} ({len(y_test)} test images)")
    if long_runs:
        plot_accuracy_vs_T({k: v["accuracy"] for k, v in long_runs.items()}, path.with_name(path.stem + "_long.png"),
                           {"ANN": long_ann_acc}, f"{args.model} on {args.dataset} (first {n_long} test images)")
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
