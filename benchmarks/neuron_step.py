"""Cost of one neuron update: the eager in-place step against the torch.compile'd fused step.

    python benchmarks/neuron_step.py            # writes benchmarks/results/neuron_step_cpu.json
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from snnconvert.neurons.functional import (FusedStep, Negative, Reset, StepWorkspace,  # noqa: E402
                                           neuron_step_)


def bench(fn, n: int = 20) -> float:
    fn()
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    torch.set_num_threads(2)
    rows = []
    for shape in ((256, 16, 32, 32), (256, 64, 32, 32)):
        z = torch.randn(shape)
        conv = torch.nn.Conv2d(shape[1], shape[1], 3, padding=1).eval()
        with torch.no_grad():
            conv_ms = bench(lambda: conv(z), 5)
        for name, reset, negative, per_neuron in (("IF soft reset", Reset.SOFT, Negative.NONE, False),
                                                   ("SNM, neuron-wise", Reset.SOFT, Negative.AT_MINUS_THRESHOLD, True)):
            thr = torch.rand(shape[1:]) + 0.5 if per_neuron else torch.tensor(1.0)
            v, n, out, ws = torch.zeros(shape), torch.zeros(shape), torch.empty(shape), StepWorkspace(z)
            eager_thr = thr if per_neuron else 1.0
            eager = bench(lambda: neuron_step_(z, v, n, eager_thr, reset, negative, out, ws))
            step = FusedStep(reset, negative)
            t0 = time.perf_counter()
            step(v, n, z, out, thr)
            compile_s = time.perf_counter() - t0
            fused = bench(lambda: step(v, n, z, out, thr))
            rows.append({"shape": list(shape), "neuron": name, "eager_ms": eager, "compiled_ms": fused,
                         "first_call_s": compile_s, "conv3x3_same_channels_ms": conv_ms})
            print(f"{str(shape):20s} {name:18s} eager {eager:7.2f} ms  compiled {fused:6.2f} ms  "
                  f"(first call {compile_s:.1f} s)  conv3x3 {conv_ms:.1f} ms", flush=True)
    out = {"command": "python benchmarks/neuron_step.py", "machine": f"{platform.machine()} {platform.processor()}",
           "threads": 2, "torch": torch.__version__, "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")}
    path = ROOT / "benchmarks" / "results" / "neuron_step_cpu.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
