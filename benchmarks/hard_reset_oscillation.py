"""Why the hard-reset baseline's accuracy is not monotonic in T (issue "The newcomer's path", item 7).

    snnconvert train --dataset mnist --data-dir ../shared/data/mnist --model digits_cnn \\
        --model-kwargs '{"input_size": 28}' --epochs 2 --out /tmp/mnist_hardreset/ann
    python benchmarks/hard_reset_oscillation.py --model-dir /tmp/mnist_hardreset/ann \\
        --data-dir ../shared/data/mnist --T 64 --limit 2000 \\
        --out benchmarks/results/hard_reset_oscillation_mnist.json

The ANN is converted with `convert(model, calib, "baseline")` on the calibration images
`snnconvert convert` uses (calibration_subset(train split, 1024, seed 0)), so the thresholds are
the CLI's. Variants that share those thresholds, made by changing only the neurons of copies of the
converted model: hard reset with V(0) = theta/2, soft reset, soft reset with V(0) = theta/2. The
percentile-99.9 and the channel-wise max baselines (their own thresholds, hard reset) are added,
and two swaps: the layer-wise baseline with the first layer's thresholds taken from the channel-wise
one, and the channel-wise baseline with the first layer's taken from the layer-wise one. Measured on the first --limit
test images, T steps:

- accuracy after every t (simulate()) and spikes per neuron per step of every layer (simulate()'s
  per-layer activity), for every variant; the periodicity of those per-step counts (autocorrelation
  and FFT after the first spike) and their swing (max / median);
- the output over t for the hard and soft baselines (own loop over SpikingModel.run, its accuracy
  checked against simulate()): share of images given the most frequent class, share whose
  prediction changes at t, the summed potential of the true class and of the best other class;
- the first neuron layer under constant (direct) input: the share of its active neurons whose input
  equals that of a blank image (the uniform background), the background's z / theta and period
  ceil(theta / z) per channel, and the layer-1 spike count per step predicted in closed form
  (a neuron with period p fires at t = p, 2p, ...) against the recorded one;
- "hybrid" accuracy after every t on the first --hybrid-limit images: layers up to l spike, the rest
  run as the ANN on their mean outputs up to t (diagnose() computes this at T only), and the same
  with layer 1 spiking but its background neurons given their ANN value;
- diagnose(snn, ann, data, T) for the hard and soft baselines (--diagnose-limit images);
- the SNN's prediction after every t for a blank (background-only) image;
- a bug check: every neuron of every layer on the first --check-images images against a
  hand-written loop of the neuron equation (V <- V + z; spike if V >= theta; V <- 0 or V - theta),
  fed with the input the engine gave that layer.

Writes the JSON (--out) and a PNG beside it (same name, .png).
"""
from __future__ import annotations

import argparse
import copy
import math
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
from snnconvert.files import write_json_atomic  # noqa: E402
from snnconvert.modelfile import load_model  # noqa: E402
from snnconvert.neurons import Reset  # noqa: E402


def variant(snn: sc.SpikingModel, v_init: float | None = None, reset: Reset | None = None) -> sc.SpikingModel:
    """A copy of `snn` with the same thresholds and weights, only the neurons' V(0) / reset changed."""
    out = copy.deepcopy(snn)
    for n in out.neurons().values():
        if v_init is not None:
            n.v_init = float(v_init)
        if reset is not None:
            n.reset_mode = reset
    if v_init is not None:
        out.method["v_init"] = float(v_init)
    if reset is not None:
        out.method["neuron"] = "if_soft" if reset is Reset.SOFT else "if_hard"
    return out


def with_thresholds_of(snn: sc.SpikingModel, donor: sc.SpikingModel, layers: list[str]) -> sc.SpikingModel:
    """A copy of `snn` whose named neuron layers take `donor`'s thresholds (everything else kept)."""
    out = copy.deepcopy(snn)
    for k in layers:
        out.neurons()[k].threshold = donor.neurons()[k].threshold.clone()
    out.method["thresholds_swapped"] = {"layers": list(layers), "from": dict(donor.method)}
    return out


def periodicity(series: list[float], first: int | None) -> dict:
    """Periodicity of a per-step count series after its first nonzero step: the lag (2 .. n/2) of the
    largest autocorrelation of the mean-removed series, the FFT's dominant period and its share of
    the (non-DC) power, and the swing max / median."""
    if first is None:
        return {"first_step": None}
    s = torch.tensor(series[first - 1:], dtype=torch.float64)
    n = len(s)
    out = {"first_step": first, "steps_used": n}
    if n < 8:
        return out
    d = s - s.mean()
    var = float((d * d).sum())
    if var == 0:
        return out
    ac = [float((d[:-k] * d[k:]).sum()) / var for k in range(1, n // 2 + 1)]
    best = max(range(2, n // 2 + 1), key=lambda k: ac[k - 1])
    power = torch.fft.rfft(d).abs().pow(2)[1:]
    j = int(power.argmax())
    med = float(s.median())
    out.update({"autocorr_lag1": ac[0], "autocorr_best_lag": best, "autocorr_at_best_lag": ac[best - 1],
                "fft_dominant_period": n / (j + 1), "fft_dominant_power_share": float(power[j] / power.sum()),
                "max_over_median": float(s.max()) / med if med > 0 else None,
                "coefficient_of_variation": float(s.std() / s.mean())})
    return out


def reference_check(snn: sc.SpikingModel, x: torch.Tensor, T: int) -> dict:
    """Each neuron layer's spikes from the engine against a hand-written loop of the IF equation fed
    with the input the engine gave that layer (all neurons, all steps, images x)."""
    neurons = snn.neurons()
    srcs = {name: snn.program.node(name).args[0].name for name in neurons}
    capture = {k: [] for k in list(neurons) + list(srcs.values())}
    seq = {k: [] for k in capture}
    B = len(x)
    with torch.no_grad():
        for out in snn.run(x, T, chunk_size=8, capture=capture):
            K = len(out)
            for k in capture:
                v = torch.cat(capture[k])
                capture[k].clear()
                seq[k].append(v.view(K, B, *v.shape[1:]))
    report = {}
    for name, neuron in neurons.items():
        z = torch.cat(seq[srcs[name]])
        spikes = torch.cat(seq[name]) != 0
        theta = neuron.threshold.to(z.dtype)
        V = torch.broadcast_to(neuron.v_init * theta, z.shape[1:]).clone()
        mismatches = 0
        for t in range(T):
            V = V + z[t]
            fire = V >= theta
            if neuron.reset_mode is Reset.HARD:
                V = torch.where(fire, torch.zeros_like(V), V)
            else:
                V = V - theta * fire
            mismatches += int((fire != spikes[t]).sum())
        report[name] = {"neuron_steps_compared": int(spikes.numel()), "mismatches": mismatches,
                        "spikes": int(spikes.sum())}
    return report


def output_and_hybrid(snn: sc.SpikingModel, prog: sc.Program, x: torch.Tensor, y: torch.Tensor, T: int,
                      hybrid_n: int, background: torch.Tensor | None, batch: int = 128, chunk: int = 8) -> dict:
    """Own loop over SpikingModel.run: the output over t, per-layer rates in the second half of the
    run against the ANN, and hybrid accuracies after every t on the first hybrid_n images."""
    names = list(snn.neurons())
    first = names[0]
    C = None
    correct = torch.zeros(T, dtype=torch.long)
    flips = torch.zeros(T, dtype=torch.long)
    class_counts = None
    true_pot = torch.zeros(T, dtype=torch.float64)
    other_pot = torch.zeros(T, dtype=torch.float64)
    hyb = torch.zeros(len(names), T, dtype=torch.long)
    hyb_bg = torch.zeros(T, dtype=torch.long)
    late_spikes = torch.zeros(len(names), dtype=torch.float64)  # spikes x theta summed over t > T/2
    ann_sum = torch.zeros(len(names), dtype=torch.float64)  # ANN activation (clipped at theta) summed
    theta = {k: n.threshold for k, n in snn.neurons().items()}
    with torch.no_grad():
        for s0 in range(0, len(x), batch):
            xb, yb = x[s0:s0 + batch], y[s0:s0 + batch]
            B = len(xb)
            nh = max(0, min(B, hybrid_n - s0))
            _, acts = prog.run(xb, capture=names)
            for i, k in enumerate(names):
                ann_sum[i] += float(torch.minimum(acts[k], theta[k].to(acts[k])).sum())
            capture = {k: [] for k in names}
            sums = {k: None for k in names}
            cum, prev, t = None, None, 0
            for out in snn.run(xb, T, chunk_size=chunk, capture=capture):
                K = len(out)
                logits = out.flatten(2)
                cs = logits.cumsum(0) if cum is None else cum + logits.cumsum(0)
                C = cs.shape[-1]
                if class_counts is None:
                    class_counts = torch.zeros(T, C, dtype=torch.long)
                pred = cs.argmax(-1)
                correct[t:t + K] += (pred == yb).sum(1)
                p_prev = torch.cat([(pred[:1] if prev is None else prev[None]), pred[:-1]])
                flips[t:t + K] += (pred != p_prev).sum(1)
                for k in range(K):
                    class_counts[t + k] += torch.bincount(pred[k], minlength=C)
                tp = cs.gather(-1, yb.view(1, -1, 1).expand(K, -1, 1)).squeeze(-1)
                true_pot[t:t + K] += tp.double().sum(1)
                masked = cs.scatter(-1, yb.view(1, -1, 1).expand(K, -1, 1), float("-inf"))
                other_pot[t:t + K] += masked.max(-1).values.double().sum(1)
                running = {}
                for i, k in enumerate(names):
                    v = torch.cat(capture[k])
                    capture[k].clear()
                    v = v.view(K, B, *v.shape[1:])
                    late = [j for j in range(K) if t + j + 1 > T // 2]
                    if late:
                        late_spikes[i] += float(v[late].double().sum())
                    r = v[:, :nh].cumsum(0)
                    running[k] = r if sums[k] is None else sums[k] + r
                    sums[k] = running[k][-1]
                if nh:
                    for j in range(K):
                        tt = t + j + 1
                        for i in range(len(names)):
                            given = {k: running[k][j] / tt for k in names[:i + 1]}
                            hyb[i, tt - 1] += int((prog.run(xb[:nh], given=given)[0].flatten(1).argmax(1)
                                                   == yb[:nh]).sum())
                        if background is not None:
                            m = running[first][j] / tt
                            m = torch.where(background[s0:s0 + nh], acts[first][:nh], m)
                            hyb_bg[tt - 1] += int((prog.run(xb[:nh], given={first: m})[0].flatten(1).argmax(1)
                                                   == yb[:nh]).sum())
                cum, prev = cs[-1], pred[-1]
                t += K
    n = len(x)
    hn = min(hybrid_n, n)
    late_steps = T - T // 2
    return {
        "accuracy": (correct.double() / n).tolist(),
        "top_class_share": (class_counts.max(1).values.double() / n).tolist(),
        "top_class": class_counts.argmax(1).tolist(),
        "prediction_changed_share": (flips.double() / n).tolist(),
        "mean_summed_potential_true_class": (true_pot / n).tolist(),
        "mean_summed_potential_best_other_class": (other_pot / n).tolist(),
        "late_rate_over_ann": {k: float(late_spikes[i] / late_steps / ann_sum[i]) if ann_sum[i] > 0 else None
                               for i, k in enumerate(names)},
        "hybrid_images": hn,
        "hybrid_accuracy_layers_up_to": {k: (hyb[i].double() / max(1, hn)).tolist() for i, k in enumerate(names)},
        "hybrid_accuracy_first_layer_background_at_ann": (hyb_bg.double() / max(1, hn)).tolist()
        if background is not None else None,
    }


def first_layer_analysis(snn: sc.SpikingModel, prog: sc.Program, x: torch.Tensor, recorded: list[float]) -> dict:
    """The first neuron layer under constant input: background share, per-channel periods and the
    closed-form spikes per step (hard reset, V(0) = 0) against the recorded ones."""
    name = next(iter(snn.neurons()))
    src = snn.program.node(name).args[0].name
    theta = snn.neurons()[name].threshold
    mode = float(x.flatten().mode().values)  # the most common input value: MNIST's background pixel
    blank = torch.full((1, *x.shape[1:]), mode)
    with torch.no_grad():
        z = prog.run(x, capture=[src])[1][src]
        zb = prog.run(blank, capture=[src])[1][src]
    th = theta.to(z)
    bg = ((z - zb).abs() <= 1e-6 * th) & (z > 0)
    active = z > 0
    period = torch.where(active, torch.ceil(th / z.clamp(min=1e-30)), torch.full_like(z, float("inf")))
    T = len(recorded)
    pred = [float((period == p).sum()) for p in range(1, T + 1)]
    closed = [sum(pred[d - 1] for d in range(1, t + 1) if t % d == 0) for t in range(1, T + 1)]
    per_channel = []
    if zb.dim() == 4:
        c_h, c_w = zb.shape[2] // 2, zb.shape[3] // 2
        for c in range(zb.shape[1]):
            r = float(zb[0, c, c_h, c_w] / th.flatten()[0] if th.numel() == 1 else zb[0, c, c_h, c_w] / th[c].flatten()[0])
            share = float(bg[:, c].sum()) / max(1.0, float(active.sum()))
            per_channel.append({"channel": c, "background_z_over_theta": r,
                                "period": math.ceil(1 / r) if r > 0 else None, "share_of_active_neurons": share})
    ratio = (z / th).clamp(min=0)
    act = ratio > 0
    steady_hard = torch.where(act, 1 / period, torch.zeros_like(z)).clamp(max=1)
    return {
        "layer": name, "background_value": mode,
        "active_share": float(active.double().mean()),
        "background_share_of_active": float(bg.sum()) / max(1.0, float(active.sum())),
        "z_over_theta_quantiles_active": {q: float(ratio[act].quantile(q)) for q in (0.1, 0.5, 0.9, 0.99)}
        if int(act.sum()) < 2**24 else None,
        "share_silent_until": {t: float(((period > t) & act).sum()) / max(1.0, float(act.sum())) for t in (1, 2, 4, 8, 16, 32)},
        "hard_reset_steady_rate_deficit": float((ratio.clamp(max=1) - steady_hard)[act].sum() / ratio.clamp(max=1)[act].sum()),
        "background_channels": per_channel,
        "closed_form_spikes_per_step": closed,
        "recorded_spikes_per_step": recorded,
        "closed_form_max_abs_difference": max(abs(a - b) for a, b in zip(closed, recorded)),
        "background_mask": bg,
    }


def plot(path: Path, res: dict, ann_acc: float, T: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.titlesize": 9})
    ts = list(range(1, T + 1))
    same = ["hard reset (baseline)", "hard reset, V(0)=theta/2", "soft reset, same thresholds", "soft reset, V(0)=theta/2"]
    fig, ax = plt.subplots(2, 3, figsize=(19, 10))
    for a, labels, title in ((ax[0, 0], same, "accuracy vs t: the baseline's thresholds, neuron changed"),
                             (ax[0, 1], [k for k in res["variants"] if k not in same[1:]],
                              "accuracy vs t: hard reset, thresholds changed")):
        for label in labels:
            a.plot(ts, [100 * v for v in res["variants"][label]["accuracy"]], label=label, lw=1.6)
        a.axhline(100 * ann_acc, color="k", ls=":", lw=1, label=f"ANN {100 * ann_acc:.2f}%")
        a.set(xlabel="t (steps)", ylabel="accuracy after t steps (%)", title=title, ylim=(0, 101))
        a.legend(fontsize=7, loc="lower right")
        a.grid(alpha=0.3)
    periods = sorted({c["period"] for c in res["first_layer"]["background_channels"]
                      if c["period"] and c["share_of_active_neurons"] > 0.02})
    for a, label in ((ax[0, 2], "hard reset (baseline)"), (ax[1, 0], "soft reset, same thresholds")):
        for k, sp in res["variants"][label]["spikes_per_neuron_per_step"].items():
            a.plot(ts, sp, label=k, lw=1.2)
        for p in periods:
            for m in range(p, T + 1, p):
                a.axvline(m, color="grey", ls=":", lw=0.7)
        a.set(xlabel="t (steps)", ylabel="spikes per neuron per step",
              title=f"{label}: per-layer activity\n(dotted: multiples of layer 1's background periods {periods})")
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    a = ax[1, 1]
    o = res["output_hard"]
    for k, h in o["hybrid_accuracy_layers_up_to"].items():
        a.plot(ts, [100 * v for v in h], label=f"layers up to {k} spike, rest ANN on their means")
    if o["hybrid_accuracy_first_layer_background_at_ann"] is not None:
        a.plot(ts, [100 * v for v in o["hybrid_accuracy_first_layer_background_at_ann"]], ls="--",
               label="first layer spikes, its background neurons at their ANN value")
    a.plot(ts, [100 * v for v in o["top_class_share"]], color="k", lw=1, ls=":",
           label="SNN: share of images given the most frequent class")
    a.set(xlabel="t (steps)", ylabel="%", ylim=(0, 101),
          title=f"hard reset baseline: where it goes wrong ({o['hybrid_images']} images)")
    a.legend(fontsize=7, loc="lower right")
    a.grid(alpha=0.3)
    a = ax[1, 2]
    for key, name in (("output_hard", "hard reset"), ("output_soft", "soft reset")):
        line, = a.plot(ts, res[key]["mean_summed_potential_true_class"], label=f"{name}: true class")
        a.plot(ts, res[key]["mean_summed_potential_best_other_class"], ls="--", color=line.get_color(),
               label=f"{name}: best other class")
    a.set(xlabel="t (steps)", ylabel="summed output potential (mean over images)", yscale="symlog",
          title="output layer: summed potential of the true class vs the best other class")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    fig.tight_layout()
    import io

    from PIL import Image  # matplotlib's own dependency; a 64-colour palette keeps the file small
    buf = io.BytesIO()
    fig.savefig(buf, dpi=90, format="png")
    plt.close(fig)
    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(colors=64).save(path, optimize=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="ANN directory written by `snnconvert train`")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--T", type=int, default=64)
    p.add_argument("--limit", type=int, default=2000, help="first N test images")
    p.add_argument("--calib-samples", type=int, default=1024, help="as `snnconvert convert`")
    p.add_argument("--hybrid-limit", type=int, default=500)
    p.add_argument("--diagnose-limit", type=int, default=500)
    p.add_argument("--check-images", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/hard_reset_oscillation_mnist.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(key: str, t0: float) -> None:
        timings[key] = round(time.perf_counter() - t0, 2)
        print(f"[{key}: {timings[key]:.1f} s]", flush=True)

    ann, card = load_model(args.model_dir)
    ann.eval()
    train_split = get_dataset(args.dataset, root=args.data_dir, train=True)
    calib = calibration_subset(train_split, min(args.calib_samples, len(train_split)), seed=0)
    x, y = dataset_as_tensors(get_dataset(args.dataset, root=args.data_dir, train=False))
    x, y = x[:args.limit], y[:args.limit]
    T = args.T
    t0 = time.perf_counter()
    base = sc.convert(ann, calib, "baseline", progress=False)
    p999 = sc.convert(ann, calib, "baseline", percentile=99.9, progress=False)
    channel = sc.convert(ann, calib, "baseline", granularity="channel", progress=False)
    lap("convert", t0)
    first = next(iter(base.neurons()))
    models = {  # every copy made before any run (nothing compiled is deep-copied)
        "hard reset (baseline)": base,
        "hard reset, V(0)=theta/2": variant(base, v_init=0.5),
        "soft reset, same thresholds": variant(base, reset=Reset.SOFT),
        "soft reset, V(0)=theta/2": variant(base, v_init=0.5, reset=Reset.SOFT),
        "hard reset, percentile 99.9": p999,
        "hard reset, channel-wise max": channel,
        "hard reset, layer-wise max but layer 1 channel-wise": with_thresholds_of(base, channel, [first]),
        "hard reset, channel-wise max but layer 1 layer-wise": with_thresholds_of(channel, base, [first]),
    }
    soft = models["soft reset, same thresholds"]
    prog = sc.trace(ann)
    thresholds = {k: n.threshold.flatten().tolist() for k, n in base.neurons().items()}
    with torch.no_grad():
        ann_logits, acts = prog.run(x, capture=list(base.neurons()))
    ann_acc = float((ann_logits.argmax(1) == y).double().mean())
    clipped = {k: float((acts[k] > base.neurons()[k].threshold).double().mean()) for k in acts}
    clipped_p999 = {k: float((acts[k] > p999.neurons()[k].threshold).double().mean()) for k in acts}
    del acts

    res: dict = {"variants": {}}
    for label, m in models.items():
        t0 = time.perf_counter()
        r = sc.simulate(m, (x, y), T, progress=False)
        spikes = {la.name: [s / (la.neurons * r.samples) for s in la.spikes_per_step] for la in r.layers}
        first = {k: next((t for t, s in enumerate(v, 1) if s > 0), None) for k, v in spikes.items()}
        acc = r.accuracy
        res["variants"][label] = {
            "method": r.method, "accuracy": acc,
            "max_drop_below_running_best": max(max(acc[:i + 1]) - acc[i] for i in range(T)),
            "monotonic_within_0.5pct": all(max(acc[:i + 1]) - acc[i] <= 0.005 for i in range(T)),
            "spikes_per_neuron_per_step": spikes,
            "spikes_per_step_raw": {la.name: la.spikes_per_step for la in r.layers},
            "periodicity": {k: periodicity(v, first[k]) for k, v in spikes.items()},
            "firing_rate": r.firing_rate(), "seconds": r.seconds,
        }
        lap(f"simulate {label}", t0)

    t0 = time.perf_counter()
    fl = first_layer_analysis(base, prog, x, res["variants"]["hard reset (baseline)"]["spikes_per_step_raw"][
        next(iter(base.neurons()))])
    bg_mask = fl.pop("background_mask")
    res["first_layer"] = fl
    fl_c = first_layer_analysis(channel, prog, x, res["variants"]["hard reset, channel-wise max"]["spikes_per_step_raw"][
        next(iter(channel.neurons()))])
    fl_c.pop("background_mask")
    res["first_layer_channel_wise"] = {k: fl_c[k] for k in ("background_channels", "share_silent_until",
                                                            "closed_form_max_abs_difference")}
    lap("first-layer analysis", t0)

    for key, m in (("output_hard", base), ("output_soft", soft)):
        t0 = time.perf_counter()
        o = output_and_hybrid(m, prog, x, y, T, args.hybrid_limit, bg_mask[:args.hybrid_limit])
        label = "hard reset (baseline)" if key == "output_hard" else "soft reset, same thresholds"
        o["accuracy_max_abs_difference_to_simulate"] = max(
            abs(a - b) for a, b in zip(o["accuracy"], res["variants"][label]["accuracy"]))
        res[key] = o
        lap(f"own loop + hybrids ({key})", t0)

    t0 = time.perf_counter()
    blank = torch.full((1, *x.shape[1:]), fl["background_value"])
    res["blank_image"] = {"ann_prediction": int(prog.run(blank)[0].argmax())}
    with torch.no_grad():
        for label, m in models.items():
            out = torch.cat(list(m.run(blank, T, chunk_size=T)))
            res["blank_image"][label] = out.flatten(2).cumsum(0)[:, 0].argmax(-1).tolist()
    lap("blank image", t0)

    t0 = time.perf_counter()
    res["reference_loop"] = {label: reference_check(models[label], x[:args.check_images], T)
                             for label in ("hard reset (baseline)", "hard reset, V(0)=theta/2",
                                           "soft reset, same thresholds")}
    lap("reference loop", t0)

    res["diagnose"] = {}
    for label in ("hard reset (baseline)", "soft reset, same thresholds"):
        t0 = time.perf_counter()
        d = sc.diagnose(models[label], ann, (x[:args.diagnose_limit], y[:args.diagnose_limit]), T)
        print(f"diagnose, {label}:\n{d.table()}")
        res["diagnose"][label] = {**d.to_dict(), "table": d.table()}
        lap(f"diagnose {label}", t0)

    res.update({
        "ann_accuracy": ann_acc, "T": T, "images": len(x), "thresholds": thresholds,
        "share_of_ann_activations_above_threshold": clipped,
        "share_of_ann_activations_above_threshold_p99.9": clipped_p999,
        "model": {"dir": str(args.model_dir), "arch": card.get("arch"), "model_kwargs": card.get("model_kwargs"),
                  "test_accuracy": card.get("test_accuracy"), "history": card.get("history")},
        "calibration": {"images": len(calib), "how": "calibration_subset(train split, n, seed=0), as `snnconvert convert`"},
        "timings_s": timings, "seconds": round(time.perf_counter() - start, 1),
        "command": shlex.join(["python"] + sys.argv), "machine": f"{platform.machine()} {platform.processor()}",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    })
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for v in res["variants"].values():
        v.pop("spikes_per_step_raw")
    write_json_atomic(out, res)
    plot(out.with_suffix(".png"), res, ann_acc, T)
    print(f"ANN {100 * ann_acc:.2f}% on {len(x)} images")
    for label, v in res["variants"].items():
        a = v["accuracy"]
        print(f"{label:32s} " + " ".join(f"{t}:{100 * a[t - 1]:.1f}" for t in (1, 2, 4, 5, 6, 8, 10, 11, 12, 16, 20, 24, 32, 48, 64)
                                         if t <= T) + f"  max drop {100 * v['max_drop_below_running_best']:.1f}")
    print(f"wrote {out} and {out.with_suffix('.png')} in {res['seconds']} s")


if __name__ == "__main__":
    main()
