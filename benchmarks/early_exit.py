"""Per-sample early exit against fixed-T runs.

    python benchmarks/early_exit.py                       # digits (trains digits_cnn, about a minute)
    python benchmarks/early_exit.py --model-dir DIR --dataset cifar10 --data-dir ../shared/data/cifar10

For each method: the fixed-T run to --max-T gives T*, the first T whose accuracy comes (and stays)
within 0.5% of the ANN; an oracle gives the bound (the mean step after which each image's running
prediction never changes again up to T*); early-exit runs capped at T* and at --max-T report
accuracy, mean and percentiles of the steps used, and synaptic operations against the fixed run at
T*. Target: the T* accuracy with at least 2x fewer mean steps.

Rules: the hand-set ExitWhenStable settings, and the fitted ExitOnMargin (fit_exit_rule's greedy
thresholds). The fitted rule is chosen on --fit-images held-out TRAINING images only (from the
split the model card records, `snnconvert train --holdout N`, which the ANN never trained on; the
calibration images come from the rest; the test set plays no part): one fixed run of them to --max-T, then for
every cap in {T*_train, 2 T*_train, --max-T}, tolerance, stable_steps and window, the thresholds; the
choice is the one with the fewest mean steps whose accuracy on those training images is at least
the fixed run's at T*_train (T*_train: the first T within 0.5% of the ANN on them). It then runs
once on the test set.
"""
from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import snnconvert as sc  # noqa: E402
from snnconvert.data import calibration_subset, dataset_as_tensors, get_dataset  # noqa: E402
from snnconvert.modelfile import load_model, training_parts  # noqa: E402
from snnconvert.models import create_model  # noqa: E402
from snnconvert.files import write_json_atomic  # noqa: E402
from snnconvert.evaluation import accuracy  # noqa: E402
from snnconvert.simulation.exit_fit import fit_thresholds, margins_and_predictions  # noqa: E402
from snnconvert.simulation.simulate import auto_chunk  # noqa: E402
from snnconvert.training import TrainConfig, train  # noqa: E402

RULES = [sc.ExitWhenStable(), sc.ExitWhenStable(confidence=0.9), sc.ExitWhenStable(confidence=0.999, patience=3),
         sc.ExitWhenStable(confidence=0.99, window=8, patience=4)]
METHODS = {"rmp": ("RMP, alpha=1", "rmp", {}), "rmp-0.5": ("RMP, alpha=0.5", "rmp", {"scale": 0.5}),
           "snm": ("SNM, neuron-wise", "snm", {}), "snm-v0.5": ("SNM, V(0)=theta/2", "snm", {"v_init": 0.5}),
           "calibrated-8": ("calibrated, target_T=8", "calibrated", {"target_T": 8})}
TOLERANCES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.04)
STABLE_STEPS = (1, 2, 4)
WINDOWS = (0, 4, 8)


def steps_to_reach(acc: list[float], target: float) -> int | None:
    """First t whose accuracy is >= target and stays so to the end (as SimulationResult.steps_to_reach)."""
    t_ok = None
    for t, a in enumerate(acc, start=1):
        t_ok = (t_ok or t) if a >= target else None
    return t_ok


def choose_fitted_rule(snn: sc.SpikingModel, ann: torch.nn.Module, xf: torch.Tensor, yf: torch.Tensor,
                       max_T: int) -> tuple[sc.ExitOnMargin, int, dict]:
    """The fitted rule and its cap, chosen on held-out training images only (module docstring)."""
    margins, preds, _ = margins_and_predictions(snn, (xf, yf), max_T, windows=WINDOWS)
    fixed = (preds == yf[None]).double().mean(1).tolist()
    ann_acc = accuracy(ann, (xf, yf), 256, "fit images")
    t_star = steps_to_reach(fixed, ann_acc - 0.005)
    target = fixed[(t_star or max_T) - 1]
    caps = sorted({c for c in (t_star, 2 * t_star if t_star else None, max_T) if c and c <= max_T})
    best = None
    for cap in caps:
        for tol in TOLERANCES:
            for s in STABLE_STEPS:
                for w in WINDOWS:
                    thr, es, ep = fit_thresholds(margins[w][:cap], preds[:cap], tol, s)
                    acc, mean = float((ep == yf).double().mean()), float(es.double().mean())
                    if acc >= target and (best is None or mean < best[0]):
                        best = (mean, acc, cap, tol, s, w, thr)
    info = {"fit_images": len(yf), "ann_accuracy_fit": ann_acc, "T_star_fit": t_star, "target_accuracy_fit": target}
    if best is None:  # nothing reached the target on the fitting images: the most careful rule at max_T
        thr, es, ep = fit_thresholds(margins[0], preds, 0.0, 1)
        best = (float(es.double().mean()), float((ep == yf).double().mean()), max_T, 0.0, 1, 0, thr)
    mean, acc, cap, tol, s, w, thr = best
    info.update({"chosen_cap": cap, "chosen_tolerance": tol, "chosen_stable_steps": s, "chosen_window": w,
                 "fit_accuracy": acc, "fit_mean_steps": mean})
    rule = sc.ExitOnMargin(tuple(thr), stable_steps=s, window=w,
                           fitted=(("tolerance", tol), ("T", cap), ("samples", len(yf))))
    return rule, cap, info


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
    p.add_argument("--fit-images", type=int, default=None,
                   help="held-out training images the fitted rule is chosen on (default: all, at most 2000; "
                        "0: no fitted rule)")
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
    card = {}
    if args.model_dir:
        ann, card = load_model(args.model_dir)
    else:  # digits: train with the same held-out split as `snnconvert train --holdout`
        card = {"holdout": {"split": "train", "images": len(train_set) // 3, "seed": 0}}
    calib_pool, fit_pool = training_parts(card, train_set)  # held out: images the ANN never trained on
    if not args.model_dir:
        cfg = TrainConfig(epochs=40, lr=3e-3, batch_size=64, optimizer="adamw", weight_decay=1e-4, progress=False)
        ann = train(create_model("digits_cnn"), calib_pool, cfg).model.eval()
    n_calib = min(512, len(calib_pool))
    calib = calibration_subset(calib_pool, n_calib, seed=0)
    if fit_pool is None:  # no held-out split recorded: training images outside the calibration set
        print("note: the model card records no held-out split (train --holdout N); the exit rule is fitted on "
              "images the ANN was trained on, which makes it optimistic", flush=True)
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))  # as calibration_subset
        fit_pool = torch.utils.data.Subset(train_set, order[n_calib:].tolist())
    n_fit = min(2000, len(fit_pool)) if args.fit_images is None else args.fit_images
    if n_fit > len(fit_pool):
        raise SystemExit(f"--fit-images {n_fit}: only {len(fit_pool)} held-out images")
    xf, yf = dataset_as_tensors(torch.utils.data.Subset(fit_pool, list(range(n_fit)))) if n_fit else (None, None)
    results = {}
    path = Path(args.out or ROOT / "benchmarks" / "results" / f"early_exit_{args.dataset}.json")

    def save(complete: bool) -> None:  # after every method, so an interrupted run keeps what it measured
        write_json_atomic(path, {
            "command": shlex.join(["python"] + sys.argv), "machine": f"{platform.machine()} {platform.processor()}",
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
        runs = [(rule, cap) for rule in RULES
                for cap in sorted({t_star or args.max_T} | (set() if args.only_T_star else {args.max_T}))]
        if xf is not None:
            fitted, cap, info = choose_fitted_rule(snn, ann, xf, yf, args.max_T)
            entry["fitted_rule"] = info
            print(f"   fitted on {len(yf)} training images: {info}", flush=True)
            runs.append((fitted, cap))
        for rule, cap in runs:
            ee = sc.simulate(snn, (x, y), cap, exit_when=rule)
            ref_synops = fixed.synops_per_sample(t_star or args.max_T)
            row = {"rule": rule.to_dict(), "T_max": cap, "accuracy": ee.accuracy[-1], "mean_steps": ee.mean_steps,
                   "reaches_T_star_accuracy": (ee.accuracy[-1] >= fixed.accuracy_at(t_star)) if t_star else None,
                   "median_steps": percentile_steps(ee.exit_steps_histogram, 0.5),
                   "p90_steps": percentile_steps(ee.exit_steps_histogram, 0.9),
                   "synops_per_sample": ee.synops_per_sample(), "synops_saved_vs_fixed_T_star":
                   1 - ee.synops_per_sample() / ref_synops if ref_synops else None,
                   "steps_ratio_T_star_over_mean": (t_star / ee.mean_steps) if t_star else None}
            entry["early_exit"].append(row)
            name = (f"ExitOnMargin(fitted: {dict(rule.fitted)}, stable_steps={rule.stable_steps}, window={rule.window})"
                    if isinstance(rule, sc.ExitOnMargin) else str(vars(rule)))
            print(f"   {name} T_max={cap}: {100 * row['accuracy']:.2f}%, mean {row['mean_steps']:.2f} "
                  f"steps (median {row['median_steps']}, p90 {row['p90_steps']}), synops saved "
                  f"{100 * (row['synops_saved_vs_fixed_T_star'] or 0):.1f}%", flush=True)
        results[label] = entry
        save(complete=False)
    save(complete=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
