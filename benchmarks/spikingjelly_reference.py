"""SpikingJelly 2.0's own float conversion on OUR trained network, as the reference row for the
low-latency comparison (issue: near-lossless at T <= 8).

    pip install --no-deps spikingjelly==2.0.0 && pip install loguru requests   # not a dependency of snnconvert
    python benchmarks/spikingjelly_reference.py --model-dir DIR --dataset cifar10 --data-dir ../shared/data/cifar10

RateCodingRecipe(mode="99.9%", channel_wise=True, half_threshold=True): per channel, an
exponential moving average (momentum 0.1) of per-batch 99.9th percentiles of the clamped
activation, zeros included; soft-reset IF with V(0) = theta/2. Calibrated on the same images as
benchmarks/low_latency.py (calibration_subset of the training part, seed 0), run with SpikingJelly's
own single-step loop (the user sums the outputs); accuracy after every t on the test split.
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

from snnconvert.data import calibration_subset, dataset_as_tensors, get_dataset  # noqa: E402
from snnconvert.files import write_json_atomic  # noqa: E402
from snnconvert.modelfile import load_model, training_parts  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--max-T", type=int, default=32)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--calib", type=int, default=1000)
    p.add_argument("--calib-batch", type=int, default=100, help="SpikingJelly's EMA runs over these batches")
    p.add_argument("--mode", default="99.9%")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    try:
        from spikingjelly.activation_based import ann2snn, functional
    except ImportError as e:
        raise SystemExit(f"this benchmark needs SpikingJelly 2.0 (see the docstring): {e}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    ann, card = load_model(args.model_dir)
    train_set = get_dataset(args.dataset, root=args.data_dir, train=True)
    pool, _ = training_parts(card, train_set)
    calib = calibration_subset(pool, min(args.calib, len(pool)), seed=0)
    x, y = dataset_as_tensors(get_dataset(args.dataset, root=args.data_dir, train=False))
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    recipe = ann2snn.RateCodingRecipe(dataloader=list(calib.split(args.calib_batch)), mode=args.mode,
                                      channel_wise=True, half_threshold=True)
    t0 = time.perf_counter()
    snn = ann2snn.Converter(recipe=recipe, device="cpu").convert(ann).eval()
    calib_seconds = time.perf_counter() - t0
    correct = torch.zeros(args.max_T, dtype=torch.long)
    with torch.no_grad():
        for xb, yb in zip(x.split(250), y.split(250)):
            functional.reset_net(snn)
            total = None
            for t in range(args.max_T):
                out = snn(xb)
                total = out if total is None else total + out
                correct[t] += int((total.argmax(1) == yb).sum())
    acc = (correct.double() / len(y)).tolist()
    print("SpikingJelly " + " ".join(f"T={t}:{100 * acc[t - 1]:.2f}" for t in (1, 2, 4, 8, 16, 32, 64)
                                     if t <= args.max_T))
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"spikingjelly_reference_{args.dataset}.json")
    write_json_atomic(out, {"command": shlex.join(["python"] + sys.argv),
                            "machine": f"{platform.machine()} {platform.processor()}", "threads": args.threads,
                            "torch": torch.__version__, "spikingjelly": "2.0.0", "recipe": {
                                "mode": args.mode, "channel_wise": True, "half_threshold": True,
                                "calibration_images": len(calib), "calibration_batch": args.calib_batch},
                            "test_images": len(y), "accuracy": acc, "calibration_seconds": calib_seconds,
                            "wall_seconds": time.perf_counter() - start, "date": time.strftime("%Y-%m-%d %H:%M")})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
