"""Which torchvision classification models convert, and how close the SNN's mean output comes to the ANN's.

For every architecture: build it from torchvision (random weights: the module's own initialisation,
eval-mode batch-norm statistics taken from a pass over 8 other random images, and every batch norm's
gamma set to 0.8: with gamma = 1 these random networks amplify a small perturbation strongly
(MobileNetV2 at 64 x 64: 29-fold) and any conversion error with it; with 0.8 at most 1.02-fold),
convert it with thresholds from N random inputs (default 4), simulate those inputs for T = 256 steps
with snn.run and record the relative error ||mean SNN output - ANN output|| / ||ANN output|| at T = 64
and T = 256 (and of the outputs' input-dependent parts), the ANN's perturbation gain, or the refusal
and its reason.
Also checks the state-dict path for the converted ones: the state_dict saved to a .pth file, loaded
with snnconvert.models.loads_torchvision_state_dict into a fresh torchvision module, converts to the
same SNN (identical output at 16 steps).

Conversion: method "baseline" with neuron="if_soft", v_init=0.5 (soft reset, V(0) = theta/2, layer-wise
max thresholds), the conversion whose only error is rate quantisation.

Needs torchvision with its matching torch (see the README's "torchvision models"):

    python benchmarks/torchvision_coverage.py --compile  # all, about 6 min on 2 idle CPU cores
    python benchmarks/torchvision_coverage.py --only resnet18 mobilenet_v2

Writes benchmarks/results/torchvision_coverage.json and .md (the table in the README).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import snnconvert as sc  # noqa: E402
from snnconvert.errors import SnnConvertError  # noqa: E402
from snnconvert.models import loads_torchvision_state_dict  # noqa: E402

# (torchvision name, constructor options, input side). 64 x 64 keeps every model's run short on 2 cores;
# Inception-v3 needs at least 75 x 75; transform_input is on as in torchvision's pretrained weights.
ARCHITECTURES: list[tuple[str, dict[str, Any], int]] = [
    ("alexnet", {}, 64),
    ("vgg11_bn", {}, 64), ("vgg13_bn", {}, 64), ("vgg16_bn", {}, 64), ("vgg19_bn", {}, 64),
    ("resnet18", {}, 64), ("resnet50", {}, 64), ("resnext50_32x4d", {}, 64), ("wide_resnet50_2", {}, 64),
    ("densenet121", {}, 64),
    ("squeezenet1_1", {}, 64),
    ("googlenet", {"transform_input": True}, 64),
    ("inception_v3", {"transform_input": True}, 96),
    ("shufflenet_v2_x1_0", {}, 64),
    ("mnasnet1_0", {}, 64),
    ("regnet_x_400mf", {}, 64),
    ("mobilenet_v2", {}, 64),
    ("efficientnet_b0", {}, 64), ("convnext_tiny", {}, 64), ("vit_b_16", {}, 224),
]
METHOD = dict(method="baseline", neuron="if_soft", v_init=0.5)


BN_GAMMA = 0.8  # every batch norm's scale after its statistics are taken (see the module docstring)


def build(name: str, options: dict[str, Any], side: int, seed: int = 0) -> torch.nn.Module:
    """torchvision's `name` with its own random initialisation, batch-norm statistics from 8 random
    images and every batch norm's scale gamma = BN_GAMMA."""
    import torchvision

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet / inception_v3 warn about their default initialisation
        model = getattr(torchvision.models, name)(**options)
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        for m in norms:  # only the batch norms train: no auxiliary heads, no dropout
            m.momentum = None  # cumulative average: the statistics of exactly these images
            m.train()
        with torch.no_grad():
            model(torch.randn(8, 3, side, side, generator=torch.Generator().manual_seed(seed + 1)))
            for m in norms:
                m.weight.fill_(BN_GAMMA)
    return model.eval()


def relative_error(estimate: torch.Tensor, y: torch.Tensor) -> float:
    return float((estimate - y).norm() / y.norm())


def centred(y: torch.Tensor) -> torch.Tensor:
    """The part of the outputs y [N, ...] that depends on the input: y minus its mean over the inputs."""
    return y - y.mean(0, keepdim=True)


def relative_errors(snn: sc.SpikingModel, y: torch.Tensor, x: torch.Tensor, T: int, at: tuple[int, ...],
                    compile: bool = False) -> dict[int, tuple[float, float]]:
    """At each t in `at`, from one run of T steps: (||mean SNN output over t steps - y|| / ||y||, the same
    for the outputs' input-dependent parts, centred())."""
    total, t, out = None, 0, {}
    with torch.no_grad(), snn.compiled_neurons(compile):
        for chunk in snn.run(x, T, chunk_size=16):
            for step in chunk:
                total = step.clone() if total is None else total + step
                t += 1
                if t in at:
                    mean = total / t
                    out[t] = (relative_error(mean, y), relative_error(centred(mean), centred(y)))
    return out


def perturbation_gain(model: torch.nn.Module, x: torch.Tensor) -> float:
    """How much the ANN amplifies a perturbation of its first activation: (||f(a + d) - f(a)|| / ||f(a)||)
    / (||d|| / ||a||) for Gaussian d of 1% of a's size. Above 1 the network amplifies the rate
    quantisation error of its first neuron layer, whatever the conversion."""
    program = sc.trace(model)
    first = program.activation_nodes()[0].name
    with torch.no_grad():
        y, captured = program.run(x, [first])
        a = captured[first]
        d = torch.randn(a.shape, generator=torch.Generator().manual_seed(3)) * (0.01 * a.norm() / a.numel() ** 0.5)
        moved, _ = program.run(x, given={first: a + d})
    return float(((moved - y).norm() / y.norm()) / (d.norm() / a.norm()))


def first_sentence(message: str) -> str:
    """The reason of an error without the list of supported operations it ends with."""
    return message.split(" Supported:")[0].strip()


def cover(name: str, options: dict[str, Any], side: int, n_inputs: int, T: int, compile: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {"architecture": name, "options": options, "input": [n_inputs, 3, side, side]}
    start = time.perf_counter()
    model = build(name, options, side)
    row["parameters_M"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    x = torch.randn(n_inputs, 3, side, side, generator=torch.Generator().manual_seed(2))
    try:
        t0 = time.perf_counter()
        snn = sc.convert(model, x, **METHOD)
        row["convert_s"] = round(time.perf_counter() - t0, 1)
    except SnnConvertError as e:
        row.update(status="refused", reason=first_sentence(str(e)), error=type(e).__name__,
                   seconds=round(time.perf_counter() - start, 1))
        return row
    with torch.no_grad():
        y = model(x)
    neurons = snn.neurons()
    row.update(status="converted", neuron_layers=len(neurons),
               capped_layers=sum(n.threshold_cap is not None for n in neurons.values()),
               spiking_max_pools=sum(isinstance(m, sc.neurons.SpikingMaxPool) for m in snn.program.layers.values()),
               affine_batch_norms=sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                      for m in snn.program.layers.values()))
    row["output_variation"] = round(float(centred(y).norm() / y.norm()), 4)
    row["perturbation_gain"] = round(perturbation_gain(model, x), 3)
    t0 = time.perf_counter()
    errors = relative_errors(snn, y, x, T, (64, T), compile)
    row["simulate_s"] = round(time.perf_counter() - t0, 1)
    row["relative_error"] = {str(k): round(v[0], 5) for k, v in errors.items()}
    row["relative_error_centred"] = {str(k): round(v[1], 5) for k, v in errors.items()}
    row["state_dict_path"] = state_dict_path(name, options, model, snn, x)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def state_dict_path(name: str, options: dict[str, Any], model: torch.nn.Module, snn: sc.SpikingModel,
                    x: torch.Tensor) -> str:
    """Save the state_dict, load it into a fresh module through snnconvert, convert: the same SNN?"""
    import torchvision

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{name}.pth"
        torch.save(model.state_dict(), path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh = getattr(torchvision.models, name)(**options)
        loads_torchvision_state_dict(fresh, path)
    again = sc.convert(fresh.eval(), x, **METHOD)
    with torch.no_grad():
        same = torch.equal(again(x, 16), snn(x, 16))
    return "same SNN" if same else "DIFFERENT SNN"


def short_reason(reason: str) -> str:
    """A refusal in a few words: the first non-ReLU activation and the count of all of them."""
    first = re.search(r"the activation (.+?) is not ReLU-like", reason)
    every = re.search(r"the model has (\d+ non-ReLU activations? \(.+?\))", reason)
    if first and every:
        return f"{first.group(1)} is not ReLU-like; {every.group(1)}"
    return reason.split(". ")[0]


def table(rows: list[dict[str, Any]], T: int) -> str:
    lines = [f"| architecture | input | result | rel. error T=64 | rel. error T={T} | ANN gain | neuron layers (capped) "
             "| seconds |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        side = f"{r['input'][2]}x{r['input'][3]}"
        if r["status"] == "converted":
            extra = []
            pools, norms = r["spiking_max_pools"], r["affine_batch_norms"]
            if pools:
                extra.append(f"{pools} spike-gated max pool{'s' if pools > 1 else ''}")
            if norms:
                extra.append(f"{norms} BN kept as affine layer{'s' if norms > 1 else ''}")
            result = "converted" + (f" ({', '.join(extra)})" if extra else "")
            err = r["relative_error"]
            lines.append(f"| {r['architecture']} | {side} | {result} | {err['64']:.4f} | {err[str(T)]:.4f} | "
                         f"{r['perturbation_gain']:.2f} | {r['neuron_layers']} ({r['capped_layers']}) | {r['seconds']:.0f} |")
        else:
            lines.append(f"| {r['architecture']} | {side} | refused: {short_reason(r['reason'])} | - | - | - | - | "
                         f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", help="architectures to run (default: all)")
    p.add_argument("--inputs", type=int, default=4, help="random inputs (thresholds and evaluation)")
    p.add_argument("--T", type=int, default=256)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--compile", action="store_true", help="compiled neuron updates (SpikingModel.compiled_neurons)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "torchvision_coverage"))
    args = p.parse_args()
    import torchvision

    torch.set_num_threads(args.threads)
    rows = []
    start = time.perf_counter()
    for name, options, side in ARCHITECTURES:
        if args.only and name not in args.only:
            continue
        row = cover(name, options, side, args.inputs, args.T, args.compile)
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {
        "command": "python " + " ".join(["benchmarks/torchvision_coverage.py"] + sys.argv[1:]),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "snnconvert": sc.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {args.threads} threads, no GPU used",
        "method": METHOD, "T": args.T, "total_s": round(time.perf_counter() - start, 1), "rows": rows,
    }
    out = Path(args.out)
    if args.only and args.out == p.get_default("out"):
        out = out.with_name(out.name + "_only")  # a partial run never replaces the full table
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(table(rows, args.T))
    print(table(rows, args.T))
    print(f"total {record['total_s']:.0f} s")


if __name__ == "__main__":
    main()
