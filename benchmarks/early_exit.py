"""Per-sample early exit against fixed-T runs.

    python benchmarks/early_exit.py                       # digits (trains digits_cnn, about a minute)
    python benchmarks/early_exit.py --model-dir DIR --dataset cifar10 --data-dir ../shared/data/cifar10

For each method: the fixed-T run to --max-T gives T*, the first T whose accuracy comes (and stays)
within 0.5% of the ANN; an oracle gives the bound (the mean step after which each image's running
prediction never changes again up to T*); early-exit runs (ExitWhenStable, several settings) capped at T* and at
--max-T report accuracy, mean and percentiles of the steps used, and synaptic operations against
the fixed run at T*. Target: the T* accuracy with at least 2x fewer mean steps.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import snnconvert as sc  # noqa: E402
from snnconvert.data import calibration_subset, dataset_as_tensors, get_dataset  # noqa: E402
from snnconvert.modelfile import load_model  # noqa: E402
from snnconvert.models import create_model  # noqa: E402
from snnconvert.files import write_json_atomic  # noqa: E402
from snnconvert.simulation.simulate import auto_chunk  # noqa: E402
from snnconvert.training import TrainConfig, train  # noqa: E402

RULES = [sc.ExitWhenStable(), sc.ExitWhenStable(confidence=0.9), sc.ExitWhenStable(confidence=0.999, patience=3),
         sc.ExitWhenStable(confidence=0.99, window=8, patience=4)]
METHODS = {"rmp": ("RMP, alpha=1", "rmp", {}), "rmp-0.5": ("RMP, alpha=0.5", "rmp", {"scale": 0.5}),
           "snm": ("SNM, neuron-wise", "snm", {})}


def percentile_steps(hist: list[int], q: float) -> int:
    total, acc = sum(hist), 0
    for t, c in enumerate(hist, start=1):
        acc += c
        if acc >= q * total:
            return t
    return len(hist)


def oracle_settle_steps(snn: sc.SpikingModel, x: torch.Tensor, T: int, batch_size: int = 256) -> torch.Tensor:
    """For each image, the step after which its running prediction (argmax of the summed output)
    never changes again up to T: what an exit rule that could see the future would use. [N] long."""
    settled = []
    with torch.no_grad():
        for xb in x.split(batch_size):
            total, prev = None, None
            settle = torch.ones(len(xb), dtype=torch.long)
            t = 0
            for chunk in snn.run(xb, T, chunk_size=auto_chunk(snn, xb, T, 512)):
                for out in chunk:
                    t += 1
                    total = out.clone() if total is None else total + out
                    pred = total.argmax(1)
                    if prev is not None:
                        settle[pred != prev] = t
                    prev = pred
            settled.append(settle)
    return torch.cat(settled)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model-dir", default=None)
    p.add_argument("--max-T", type=int, default=128)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                   help="any of " + ", ".join(f"{k} ({v[0]})" for k, v in METHODS.items()))
    p.add_argument("--only-T-star", action="store_true",
                   help="cap early-exit runs at T* only (default: also at --max-T)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    train_set = get_dataset(args.dataset, root=args.data_dir, train=True)
    x, y = dataset_as_tensors(get_dataset(args.dataset, root=args.data_dir, train=False))
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    if args.model_dir:
        ann, _ = load_model(args.model_dir)
    else:
        cfg = TrainConfig(epochs=40, lr=3e-3, batch_size=64, optimizer="adamw", weight_decay=1e-4, progress=False)
        ann = train(create_model("digits_cnn"), train_set, cfg).model.eval()
    calib = calibration_subset(train_set, min(512, len(train_set)), seed=0)
    results = {}
    path = Path(args.out or ROOT / "benchmarks" / "results" / f"early_exit_{args.dataset}.json")

    def save(complete: bool) -> None:  # after every method, so an interrupted run keeps what it measured
        write_json_atomic(path, {
            "command": " ".join(["python"] + sys.argv), "machine": f"{platform.machine()} {platform.processor()}",
            "threads": args.threads, "torch": torch.__version__, "dataset": args.dataset, "test_images": len(y),
            "complete": complete, "results": results, "wall_seconds": time.perf_counter() - start,
            "date": time.strftime("%Y-%m-%d %H:%M")})

    for key in args.methods:
        label, method, kw = METHODS[key]
        snn = sc.convert(ann, calib, method, **kw)
        fixed = sc.simulate(snn, (x, y), args.max_T, ann=ann)
        t_star = fixed.steps_to_reach(fixed.ann_accuracy - 0.005)
        entry = {"ann_accuracy": fixed.ann_accuracy, "T_star": t_star, "fixed_accuracy_at_T_star":
                 fixed.accuracy_at(t_star) if t_star else None, "fixed_accuracy": fixed.accuracy, "early_exit": []}
        print(f"{label}: ANN {100 * fixed.ann_accuracy:.2f}%, T* = {t_star}"
              + (f" ({100 * fixed.accuracy_at(t_star):.2f}%)" if t_star else " (not within 0.5%)"), flush=True)
        if t_star:  # the upper bound for any exit rule at T*'s accuracy
            oracle = oracle_settle_steps(snn, x, t_star).double()
            entry["oracle_mean_steps"] = oracle.mean().item()
            entry["oracle_steps_ratio_T_star_over_mean"] = t_star / oracle.mean().item()
            print(f"   oracle (exits at the step after which the prediction never changes up to T*): mean "
                  f"{oracle.mean().item():.2f} steps ({t_star / oracle.mean().item():.2f}x fewer than T*)", flush=True)
        for rule in RULES:
            for cap in sorted({t_star or args.max_T} | (set() if args.only_T_star else {args.max_T})):
                ee = sc.simulate(snn, (x, y), cap, exit_when=rule)
                ref_synops = fixed.synops_per_sample(t_star or args.max_T)
                row = {"rule": vars(rule), "T_max": cap, "accuracy": ee.accuracy[-1], "mean_steps": ee.mean_steps,
                       "median_steps": percentile_steps(ee.exit_steps_histogram, 0.5),
                       "p90_steps": percentile_steps(ee.exit_steps_histogram, 0.9),
                       "synops_per_sample": ee.synops_per_sample(), "synops_saved_vs_fixed_T_star":
                       1 - ee.synops_per_sample() / ref_synops if ref_synops else None,
                       "steps_ratio_T_star_over_mean": (t_star / ee.mean_steps) if t_star else None}
                entry["early_exit"].append(row)
                print(f"   {vars(rule)} T_max={cap}: {100 * row['accuracy']:.2f}%, mean {row['mean_steps']:.2f} "
                      f"steps (median {row['median_steps']}, p90 {row['p90_steps']}), synops saved "
                      f"{100 * (row['synops_saved_vs_fixed_T_star'] or 0):.1f}%", flush=True)
        results[label] = entry
        save(complete=False)
    save(complete=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
