"""Cost of RMP threshold balancing (the layer_input_max rule) against one spiking run.

Converts vgg_small (random weights, BN, or a trained model directory) with method "rmp" on N
calibration images (CIFAR-10 training images with --data-dir, else random inputs), and times:
- convert() with the default balancing (each pass starts from the cached spikes of the layers
  already balanced), and, with --reference, with the cache turned off (every pass re-runs the
  network from the input, the algorithm before issue 14);
- one spiking run of the same images for `calibration_steps` steps (the unit of the target:
  balancing should cost at most about twice that).
Checks that both give identical thresholds.

    python benchmarks/threshold_balancing.py --data-dir ../shared/data/cifar10 --images 1000 --reference
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import snnconvert as sc  # noqa: E402
from snnconvert.models import create_model  # noqa: E402


def calibration_images(data_dir: str | None, n: int) -> torch.Tensor:
    if data_dir is None:
        return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    from snnconvert.data import calibration_subset, get_dataset

    return calibration_subset(get_dataset("cifar10", root=data_dir, train=True), n, seed=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model-dir", default=None, help="a trained model directory (default: random vgg_small)")
    p.add_argument("--width", type=int, default=32, help="vgg_small width (random model)")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--steps", type=int, default=32, help="calibration_steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reference", action="store_true", help="also time balancing without the spike cache")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threshold_balancing_cpu.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model_dir:
        from snnconvert.modelfile import load_model

        model, card = load_model(args.model_dir)
        name = card["arch"]
    else:
        model, name = create_model("vgg_small", num_classes=10, width=args.width).eval(), f"vgg_small width {args.width}"
    x = calibration_images(args.data_dir, args.images)
    rows = {}
    variants = [("cached", sc.LayerInputMax(args.steps))] + (
        [("reference (no cache)", sc.LayerInputMax(args.steps, cache_mb=0))] if args.reference else [])
    snns = {}
    for label, rule in variants:
        t0 = time.perf_counter()
        snns[label] = sc.convert(model, x, "rmp", threshold=rule, batch_size=args.batch_size)
        rows[label] = time.perf_counter() - t0
        print(f"convert rmp, {label}: {rows[label]:.1f} s", flush=True)
    snn = snns["cached"]
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), args.batch_size):
            for _ in snn.run(x[i:i + args.batch_size], args.steps):
                pass
    run_s = time.perf_counter() - t0
    print(f"one spiking run of the {len(x)} images for {args.steps} steps: {run_s:.1f} s", flush=True)
    same = None
    if args.reference:
        a, b = snns["cached"].neurons(), snns["reference (no cache)"].neurons()
        same = all(torch.equal(a[k].threshold, b[k].threshold) for k in a)
        print(f"thresholds identical: {same}")
    out = {"command": " ".join([Path(sys.executable).name] + sys.argv), "model": name, "images": len(x),
           "calibration_steps": args.steps, "batch_size": args.batch_size, "threads": args.threads,
           "machine": f"{platform.machine()} {platform.processor()}".strip(), "torch": torch.__version__,
           "convert_seconds": rows, "one_run_seconds": run_s,
           "ratio_to_one_run": {k: v / run_s for k, v in rows.items()}, "thresholds_identical": same,
           "thresholds": {k: n.threshold.tolist() for k, n in snn.neurons().items()},
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
