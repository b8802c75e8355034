"""The demo over several seeds: mean and spread of every cell of its tables (for the README).

    python benchmarks/demo_seeds.py --seeds 0 1 2 --out benchmarks/results/demo_seeds.json

Runs `snnconvert.demo.run_demo` once per seed (each in its own output directory under --work-dir),
then writes, per method and T, the mean, the minimum and the maximum accuracy over the seeds, the
same for the steps to come within 1% of the ANN and for the Fast-SNN table, and the conclusions
each seed printed, with how many seeds agree.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from snnconvert.demo import run_demo
from snnconvert.report import powers_of_two


def spread(values: list[float | None]) -> dict[str, Any]:
    """mean / min / max of the values that exist, and how many are missing (None: not reached)."""
    have = [v for v in values if v is not None]
    if not have:
        return {"mean": None, "min": None, "max": None, "missing": len(values)}
    return {"mean": statistics.fmean(have), "min": min(have), "max": max(have), "missing": len(values) - len(have)}


def cell(s: dict[str, Any], scale: float = 100.0, digits: int = 1) -> str:
    """'mean (min-max)' of a spread, in percent by default."""
    if s["mean"] is None:
        return "-"
    f = lambda v: f"{scale * v:.{digits}f}"  # noqa: E731
    text = f(s["mean"]) if s["min"] == s["max"] else f"{f(s['mean'])} ({f(s['min'])}-{f(s['max'])})"
    return text + (f" [{s['missing']} not reached]" if s["missing"] else "")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    T = runs[0]["T"]
    steps = powers_of_two(T)
    methods = list(runs[0]["methods"])
    acc = {m: {t: spread([r["methods"][m]["accuracy"][t - 1] for r in runs]) for t in steps} for m in methods}
    for b in runs[0]["fastsnn"]:
        acc[f"Fast-SNN {b}-bit"] = {t: spread([r["fastsnn_accuracy"][b][t - 1] for r in runs]) for t in steps}
    within = {m: spread([r["methods"][m]["steps_within_1pct_of_ann"] for r in runs]) for m in methods}
    fast = {b: {k: spread([r["fastsnn"][b][k] for r in runs])
                for k in ("qann_accuracy", "unsigned_if", "signed_if", "signed_if_finetuned")}
            for b in runs[0]["fastsnn"]}
    conclusions: dict[str, int] = {}
    for r in runs:
        for line in r["conclusions"]:
            conclusions[line["claim"]] = conclusions.get(line["claim"], 0) + bool(line["holds"])
    return {"ann_accuracy": spread([r["ann_accuracy"] for r in runs]), "accuracy": acc,
            "steps_within_1pct_of_ann": within, "fastsnn": fast, "conclusions_holding": conclusions,
            "seeds": len(runs)}


def markdown(summary: dict[str, Any], T: int) -> str:
    steps = powers_of_two(T)
    lines = ["| method | " + " | ".join(f"T={t}" for t in steps) + " |", "|---|" + "---|" * len(steps)]
    for m, row in summary["accuracy"].items():
        lines.append(f"| {m} | " + " | ".join(cell(row[t]) for t in steps) + " |")
    lines += ["", "| method | T within 1% of the ANN |", "|---|---|"]
    for m, s in summary["steps_within_1pct_of_ann"].items():
        lines.append(f"| {m} | {cell(s, 1.0, 1)} |")
    lines += ["", "| Fast-SNN | QANN | unsigned IF | signed IF | signed + fine-tuned |", "|---|---|---|---|---|"]
    for b, f in summary["fastsnn"].items():
        lines.append(f"| {b}-bit | " + " | ".join(cell(f[k]) for k in
                                                  ("qann_accuracy", "unsigned_if", "signed_if", "signed_if_finetuned")) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--T", type=int, default=256)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--out", default="benchmarks/results/demo_seeds.json")
    args = p.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="demo-seeds-"))
    runs, start = [], time.perf_counter()
    for seed in args.seeds:
        r = run_demo(work / f"seed{seed}", epochs=args.epochs, T=args.T, seed=seed, echo=lambda s: None)
        runs.append(r)
        print(f"seed {seed}: ANN {100 * r['ann_accuracy']:.2f}% ({r['seconds']:.0f} s)", flush=True)
    summary = summarise(runs)
    table = markdown(summary, args.T)
    print(table)
    for claim, n in summary["conclusions_holding"].items():
        print(f"{n}/{len(runs)} seeds: {claim}")
    out = {"command": f"python benchmarks/demo_seeds.py --seeds {' '.join(map(str, args.seeds))} "
                      f"--epochs {args.epochs} --T {args.T}", "seeds": args.seeds, "summary": summary, "markdown": table,
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "seconds": time.perf_counter() - start,
           "runs": [{k: r[k] for k in ("ann_accuracy", "table", "fastsnn_table", "conclusions", "seconds")}
                    for r in runs]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
