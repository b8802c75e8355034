"""Accuracy against time steps for every method on one trained network (issue: real data benchmark).

    python benchmarks/accuracy_latency.py --dataset cifar10 --data-dir ../shared/data/cifar10 \
        --model vgg_small --train-epochs 30 --max-T 1024
    python benchmarks/accuracy_latency.py --model-dir runs/vgg_small_cifar10 ...   # an existing ANN

Trains (or loads) the ANN, trains 3- and 2-bit QANNs progressively from it, converts with every
method (baseline max / 99.9%, RMP alpha 1 / lower, SNM neuron-wise, Fast-SNN 3 and 2 bits before and
after layer-wise fine-tuning), simulates each ONCE to its largest T on the test split, and writes
JSON (accuracy at every t, steps to come within 1% and 0.1%, firing rates and energy there, the
hard-vs-soft-reset step ratio) plus a PNG plot, with the command, the machine and the wall time.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import snnconvert as sc  # noqa: E402
from snnconvert.data import calibration_subset, dataset_as_tensors, dataset_info, get_dataset  # noqa: E402
from snnconvert.modelfile import load_model, save_model  # noqa: E402
from snnconvert.models import create_model  # noqa: E402
from snnconvert.quantization import finetune_layerwise, train_progressive  # noqa: E402
from snnconvert.report import accuracy_table, plot_accuracy_vs_T, powers_of_two  # noqa: E402
from snnconvert.training import TrainConfig, evaluate_accuracy, train  # noqa: E402


def steps_within(acc: list[float], ref: float, tol: float) -> int | None:
    """First t from which the accuracy stays >= ref - tol until the end of the run."""
    t_ok = None
    for t, a in enumerate(acc, start=1):
        t_ok = (t_ok or t) if a >= ref - tol else None
    return t_ok


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
    p.add_argument("--fast-T", type=int, default=64, help="largest T simulated for Fast-SNN")
    p.add_argument("--snm-T", type=int, default=256, help="largest T simulated for SNM")
    p.add_argument("--limit", type=int, default=None, help="only the first N test images (default: all)")
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
                              checkpoint_dir=work / "qann_ckpt", log=log)
    ft_x, ft_y = dataset_as_tensors(plain_train)
    ft_data = (ft_x[:args.finetune_images], ft_y[:args.finetune_images])

    runs: dict[str, dict] = {}

    def run(label: str, snn: sc.SpikingModel, T: int, ref: float, model: torch.nn.Module) -> None:
        t0 = time.perf_counter()
        res = sc.simulate(snn, (x_test, y_test), T, ann=model, progress=True)
        w1, w01 = steps_within(res.accuracy, ref, 0.01), steps_within(res.accuracy, ref, 0.001)
        runs[label] = {"method": res.method, "reference_accuracy": ref, "accuracy": res.accuracy,
                       "steps_within_1pct": w1, "steps_within_0.1pct": w01,
                       "at_within_1pct": res.summary(w1) if w1 else None, "at_T": res.summary(),
                       "seconds": time.perf_counter() - t0}
        print(f"{label}: acc@T={T} {100 * res.accuracy[-1]:.2f}% (ref {100 * ref:.2f}%), within 1% at {w1}, "
              f"within 0.1% at {w01} ({time.perf_counter() - t0:.0f} s)", flush=True)

    run("baseline IF, max", sc.convert(ann, calib, "baseline"), args.max_T, ann_acc, ann)
    run("baseline IF, p99.9", sc.convert(ann, calib, "baseline", percentile=99.9), args.max_T, ann_acc, ann)
    run("RMP, alpha=1", sc.convert(ann, calib[:256], "rmp"), args.max_T, ann_acc, ann)
    run("RMP, alpha=0.5", sc.convert(ann, calib[:256], "rmp", scale=0.5), args.max_T, ann_acc, ann)
    run("SNM, neuron-wise", sc.convert(ann, calib, "snm"), args.snm_T, ann_acc, ann)
    for bits in (3, 2):
        qann = qanns[bits].model.eval()
        q_acc = evaluate_accuracy(qann, TensorDataset(x_test, y_test))
        snn = sc.convert(qann, method="fastsnn")
        run(f"Fast-SNN {bits}-bit, unsigned IF", sc.convert(qann, method="fastsnn", neuron="if"), args.fast_T, q_acc, qann)
        run(f"Fast-SNN {bits}-bit", snn, args.fast_T, q_acc, qann)
        tuned, report = finetune_layerwise(snn, qann, ft_data, epochs=1, progress=True)
        run(f"Fast-SNN {bits}-bit + fine-tuning", tuned, args.fast_T, q_acc, qann)
        runs[f"Fast-SNN {bits}-bit + fine-tuning"]["finetune"] = [vars(la) for la in report.layers]

    hard, soft = runs["baseline IF, max"]["accuracy"], runs["RMP, alpha=1"]["accuracy"]
    t_rmp = min(32, len(soft))
    t_hard = next((t for t, a in enumerate(hard, 1) if a >= soft[t_rmp - 1]), None)
    rows = {k: v["accuracy"] for k, v in runs.items()}
    table = accuracy_table(rows, powers_of_two(args.max_T), {k: v["reference_accuracy"] for k, v in runs.items()})
    print(table)
    out = {"command": " ".join(["python"] + sys.argv), "machine": f"{platform.machine()} {platform.processor()}",
           "threads": args.threads, "torch": torch.__version__, "dataset": args.dataset, "model": args.model,
           "model_kwargs": kwargs, "test_images": len(y_test), "ann_accuracy": ann_acc, "runs": runs, "table": table,
           "hard_reset_steps_to_rmp_T32_accuracy": t_hard, "rmp_T": t_rmp,
           "wall_seconds": time.perf_counter() - start, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = Path(args.out or ROOT / "benchmarks" / "results" / f"accuracy_latency_{args.dataset}.json")
    path.write_text(json.dumps(out, indent=1))
    plot_accuracy_vs_T(rows, path.with_suffix(".png"), {"ANN": ann_acc}, f"{args.model} on {args.dataset}")
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
