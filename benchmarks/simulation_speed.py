"""Simulation speed and memory: SNN time against T dense ANN passes, peak memory against T.

For each model (random weights: dense simulation cost does not depend on the weights) and each T:
ANN images/s, SNN images/s, ratio = SNN time / (T x ANN time), and peak memory of a run at small and
large T (each in a fresh subprocess, CPU: peak RSS; GPU: torch.cuda.max_memory_allocated).
ANN and SNN are timed in alternation (--repeats times) and the ratio uses the fastest of each, so a
burst of load from elsewhere on a shared machine cannot land on one side only. glibc's allocator
settings change CPU timings by up to 30% (large tensors from fresh mmap'd pages or from the heap);
MALLOC_* environment variables are recorded with the results, e.g.
    MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 python benchmarks/simulation_speed.py

    python benchmarks/simulation_speed.py                          # CPU, 2 threads, batch 256
    python benchmarks/simulation_speed.py --variants simulate simulate-record-off run-eager
    python benchmarks/simulation_speed.py --device cuda --threads 8
Writes benchmarks/results/simulation_speed_<device>.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import snnconvert as sc  # noqa: E402
from snnconvert.models import create_model  # noqa: E402
from snnconvert.simulation.simulate import auto_chunk  # noqa: E402


def build(model_name: str, method: str, device: str) -> tuple[torch.nn.Module, sc.SpikingModel]:
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10).eval()
    calib = torch.randn(64, 3, 32, 32)
    overrides = {"calibration_steps": 4} if method == "rmp" else {}
    snn = sc.convert(model, calib, method, **overrides)
    return model.to(device), snn.to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def run_snn(snn: sc.SpikingModel, x: torch.Tensor, T: int, chunk: int | None) -> None:
    with torch.no_grad():
        for _ in snn.run(x, T, chunk_size=chunk):
            pass


def run_ann(model: torch.nn.Module, x: torch.Tensor, passes: int) -> None:
    with torch.no_grad():
        for _ in range(passes):
            model(x)


VARIANTS = {
    # name: what is timed for one SNN run of T steps over the batch
    "simulate": "snnconvert.simulate() with its defaults: recording on, compiled neurons (compile='auto')",
    "simulate-record-off": "simulate(record=False)",
    "simulate-eager": "simulate(compile=False): recording on, eager neuron step",
    "run-eager": "SpikingModel.run() alone (no recording, no read-out), eager neuron step",
    "run-compiled": "SpikingModel.run() alone inside compiled_neurons()",
}


def snn_runner(variant: str, snn: sc.SpikingModel, x: torch.Tensor, y: torch.Tensor, T: int):
    if variant.startswith("simulate"):
        kw = {"record": False} if variant == "simulate-record-off" else (
            {"compile": False} if variant == "simulate-eager" else {})
        return lambda: sc.simulate(snn, (x, y), T, progress=False, **kw)
    chunk = auto_chunk(snn, x, T, 512)
    if variant == "run-compiled":
        def run() -> None:
            with snn.compiled_neurons():
                run_snn(snn, x, T, chunk)
        return run
    return lambda: run_snn(snn, x, T, chunk)


def compile_seconds(snn: sc.SpikingModel, x: torch.Tensor, y: torch.Tensor) -> dict:
    """First and second simulate(T=2) on this model: their difference is the compilation paid here
    (0 when this process already compiled the same neuron types)."""
    first = timed(lambda: sc.simulate(snn, (x, y), 2, progress=False), str(x.device))
    second = timed(lambda: sc.simulate(snn, (x, y), 2, progress=False), str(x.device))
    return {"first_simulate_T2_seconds": first, "second_simulate_T2_seconds": second,
            "compile_seconds": max(0.0, first - second)}


def speed(model_name: str, method: str, T: int, batch: int, device: str, repeats: int, variant: str,
          channels_last: bool = False, ann_passes: int = 32) -> dict:
    """ANN and SNN timed in alternation, `repeats` times each, after a warm-up of both.

    Each repeat times `ann_passes` ANN forward passes, then one SNN run of T steps as `variant` says
    (VARIANTS). The ratio uses the fastest repeat of each (on a shared machine other load only ever
    adds time, so the minimum is the least disturbed estimate); the median of the per-repeat ratios
    is recorded beside it.
    """
    model, snn = build(model_name, method, device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if channels_last:  # same layout for the ANN and the SNN, so the ratio stays like for like
        model, snn = model.to(memory_format=torch.channels_last), snn.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    compiling = compile_seconds(snn, x[:8], y[:8]) if variant == "simulate" else {}
    run = snn_runner(variant, snn, x, y, T)
    run_ann(model, x, 2)
    snn_runner(variant, snn, x, y, min(T, 4))()  # warm-up
    ann, snn_t = [], []
    for _ in range(repeats):
        ann.append(timed(lambda: run_ann(model, x, ann_passes), device) / ann_passes)
        snn_t.append(timed(run, device))
    t_ann, t_snn = min(ann), min(snn_t)
    return {"model": model_name, "method": method, "T": T, "batch": batch, "variant": variant,
            "what": VARIANTS[variant], "chunk": auto_chunk(snn, x, T, 512), "channels_last": channels_last,
            "repeats": repeats, "ann_passes_per_repeat": ann_passes, **compiling,
            "ann_images_per_s": batch / t_ann, "snn_images_per_s": batch / t_snn,
            "ann_seconds": t_ann, "snn_seconds": t_snn, "ratio_snn_over_T_ann": t_snn / (T * t_ann),
            "ratio_median_of_repeats": statistics.median(s / (T * a) for s, a in zip(snn_t, ann)),
            "ann_seconds_per_repeat": ann, "snn_seconds_per_repeat": snn_t}


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_child(model_name: str, method: str, T: int, batch: int, device: str) -> None:
    """Peak resident memory of this fresh process (VmHWM: ru_maxrss would include the parent's peak,
    which Linux carries over exec) after the run, and before it; the conversion before the run uses
    only 8 calibration images so that the run sets the peak."""
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10).eval()
    overrides = {"calibration_steps": 2} if method == "rmp" else {}
    snn = sc.convert(model, torch.randn(8, 3, 32, 32), method, **overrides).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    before = _vm_hwm_mb()
    run_snn(snn, x, T, auto_chunk(snn, x, T, 512))
    if device.startswith("cuda"):
        print(json.dumps({"peak_mb": torch.cuda.max_memory_allocated() / 2**20, "measure": "cuda max allocated"}))
    else:
        print(json.dumps({"peak_mb": _vm_hwm_mb(), "peak_before_run_mb": before,
                          "measure": "process peak RSS (VmHWM)"}))


def peak_memory(model_name: str, method: str, T: int, batch: int, device: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", model_name, method, str(T), str(batch), device, str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return {"model": model_name, "method": method, "T": T, "batch": batch, **json.loads(out)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["vgg_small", "resnet20"])
    p.add_argument("--methods", nargs="+", default=["rmp", "snm"])
    p.add_argument("--T", nargs="+", type=int, default=[32, 128])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--memory-T", nargs=2, type=int, default=[32, 1024])
    p.add_argument("--memory-batch", type=int, default=32)
    p.add_argument("--skip-memory", action="store_true", help="time only; no peak-memory subprocesses")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="alternating ANN / SNN timings per configuration")
    p.add_argument("--ann-passes", type=int, default=32, help="ANN forward passes per ANN timing")
    p.add_argument("--channels-last", action="store_true", help="time ANN and SNN in channels-last layout")
    p.add_argument("--variants", nargs="+", default=["simulate", "simulate-record-off"], choices=list(VARIANTS),
                   help="what is timed as the SNN (default: simulate() with its defaults, and with record=False)")
    p.add_argument("--out", default=None)
    p.add_argument("--child", nargs=6, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        m, meth, T, b, dev, th = args.child
        torch.set_num_threads(int(th))
        peak_memory_child(m, meth, int(T), int(b), dev)
        return
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows, mem = [], []
    for m in args.models:
        for meth in args.methods:
            for T in args.T:
                for variant in args.variants:
                    r = speed(m, meth, T, args.batch, args.device, args.repeats, variant, args.channels_last,
                              args.ann_passes)
                    rows.append(r)
                    extra = f", compile {r['compile_seconds']:.1f} s" if "compile_seconds" in r else ""
                    print(f"{m:10s} {meth:5s} T={T:4d} {variant:20s} ANN {r['ann_images_per_s']:8.1f} img/s  "
                          f"SNN {r['snn_images_per_s']:7.2f} img/s  ratio {r['ratio_snn_over_T_ann']:.3f} "
                          f"(median of repeats {r['ratio_median_of_repeats']:.3f}) (chunk {r['chunk']}{extra})",
                          flush=True)
            if args.skip_memory:
                continue
            lo, hi = (peak_memory(m, meth, T, args.memory_batch, args.device, args.threads) for T in args.memory_T)
            mem.append({"model": m, "method": meth, "small": lo, "large": hi,
                        "ratio_large_over_small": hi["peak_mb"] / lo["peak_mb"]})
            print(f"{m:10s} {meth:5s} peak memory T={args.memory_T[0]}: {lo['peak_mb']:.0f} MB, "
                  f"T={args.memory_T[1]}: {hi['peak_mb']:.0f} MB (x{mem[-1]['ratio_large_over_small']:.3f})", flush=True)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    out = {"command": " ".join([Path(sys.executable).name] + sys.argv), "device": args.device, "device_name": device_name,
           "threads": args.threads, "torch": torch.__version__, "cpu_count": os.cpu_count(),
           "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
           "speed": rows, "memory": mem, "wall_seconds": time.perf_counter() - start,
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = Path(args.out or ROOT / "benchmarks" / "results" / f"simulation_speed_{args.device.split(':')[0]}.json")
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
