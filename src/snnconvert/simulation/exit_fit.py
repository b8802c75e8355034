"""Fit an early-exit rule to a converted network on data the user holds out (never the test set).

The rule (ExitOnMargin) exits a sample at the first step t where its running prediction has been
stable for `stable_steps` steps and the margin of its mean output (so far, or over a recent window
of steps, which forgets the start-up of the deep layers) reaches a per-step threshold
theta_t = c / t + d: in summed-output terms, margin_t * t >= c + d * t. The c / t term
follows the converted network's error, which falls like 1/t (a soft-reset neuron's rate is within
theta / t of its input); d is the margin still asked for once that error is gone. Two parameters,
searched over a grid on the fitting data, so the rule transfers to new images (a threshold per step
fitted freely chases the few samples left at late steps and does not). The choice: the fewest mean
steps such that at most `tolerance` of the fitting samples exit with a prediction other than the
full T-step run's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..batches import count_samples, iter_batches
from ..errors import ConfigError
from .early_exit import ExitOnMargin, running_margin
from .encoding import Direct, Encoder
from .budget import RunClock, check_fits, estimate_run, probe
from .engine import DEFAULT_CHUNK, SpikingModel, check_count, check_steps


@dataclass
class ExitFit:
    """A fitted rule and what it did on the fitting data.

    predictions [T, N]: running prediction after each step of the fixed run; exit_step, exit_pred
    [N]: where the rule stops each sample and what it answers there; labels [N] or None."""

    rule: ExitOnMargin
    predictions: torch.Tensor
    exit_step: torch.Tensor
    exit_pred: torch.Tensor
    labels: torch.Tensor | None

    @property
    def mean_steps(self) -> float:
        return float(self.exit_step.double().mean())

    @property
    def disagreement(self) -> float:
        """Share of the fitting samples whose exit prediction differs from the full run's at T."""
        return float((self.exit_pred != self.predictions[-1]).double().mean())

    def fixed_accuracy(self) -> list[float] | None:
        """Accuracy of the fixed run after every t (needs labels)."""
        if self.labels is None:
            return None
        return (self.predictions == self.labels[None]).double().mean(1).tolist()

    def exit_accuracy(self) -> float | None:
        return None if self.labels is None else float((self.exit_pred == self.labels).double().mean())


def margins_and_predictions(snn: SpikingModel, data: Any, T: int, encoder: Encoder = Direct(),
                            batch_size: int = 256, windows: tuple[int, ...] = (0,)
                            ) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """One fixed run of T steps: for each window w in `windows`, the margin (top-1 - top-2) after
    every step of the mean output over steps 1..t (w = 0) or over the last min(w, t) steps, [T, N];
    the running prediction after every step, [T, N]; the labels [N] (None for unlabelled data).
    All on the CPU."""
    margins: dict[int, list[torch.Tensor]] = {w: [] for w in windows}
    preds, labels = [], []
    device = snn.device
    snn.eval()
    samples, seen, sizes = count_samples(data), 0, None
    clock = RunClock("fit_exit_rule()", T, samples)
    with torch.no_grad():
        for x, y in iter_batches(data, batch_size, "exit-rule fitting data"):
            x = x.to(device)
            seen += len(x)
            if sizes is None or samples is None:  # before the first batch runs (each batch if N is unknown)
                sizes = sizes or probe(snn, x, encoder)
                check_fits(estimate_run("fit_exit_rule()", sizes, T, len(x), DEFAULT_CHUNK, samples=samples or seen,
                                        windows=windows, device=device))
            cum, parts = None, []
            for out in snn.run(x, T, encoder):
                cs = out.flatten(2).cumsum(0) if cum is None else cum + out.flatten(2).cumsum(0)
                parts.append(cs.cpu())
                cum = cs[-1]
                clock.chunk_done(len(out), len(x))
            cs = torch.cat(parts)  # [T, B, classes]
            steps = torch.arange(1, T + 1, dtype=cs.dtype)[:, None]
            for w in windows:  # the margins ExitOnMargin.ok computes live (the same function)
                if w == 0:
                    margins[w].append(running_margin(cs, steps))
                else:
                    before = torch.cat([torch.zeros_like(cs[:w]), cs[:-w]]) if w < T else torch.zeros_like(cs)
                    margins[w].append(running_margin(cs - before, steps.clamp(max=w)))
            preds.append(cs.argmax(-1))
            labels.append(None if y is None else y.cpu())
    lab = None if any(v is None for v in labels) else torch.cat(labels)
    return {w: torch.cat(m, 1) for w, m in margins.items()}, torch.cat(preds, 1), lab


def unchanged_steps(predictions: torch.Tensor) -> torch.Tensor:
    """[T, N]: for how many steps in a row (the current one included) the prediction has not changed."""
    out = torch.ones_like(predictions)
    for t in range(1, len(predictions)):
        out[t] = torch.where(predictions[t] == predictions[t - 1], out[t - 1] + 1, 1)
    return out


def exit_steps(margins: torch.Tensor, predictions: torch.Tensor, thresholds: torch.Tensor, stable_steps: int,
               min_steps: int = 1, unchanged: torch.Tensor | None = None) -> torch.Tensor:
    """[N] the step (1..T) at which ExitOnMargin(thresholds, stable_steps, min_steps) stops each sample
    of a fixed run with these margins and predictions [T, N] (T when it never fires)."""
    unchanged = unchanged_steps(predictions) if unchanged is None else unchanged
    fire = (margins >= thresholds[:, None]) & (unchanged >= stable_steps)
    fire[: min_steps - 1] = False
    fire[-1] = True
    return fire.double().argmax(0) + 1  # the first step that fires


def fit_thresholds(margins: torch.Tensor, predictions: torch.Tensor, tolerance: float, stable_steps: int = 1,
                   min_steps: int = 1) -> tuple[list[float], torch.Tensor, torch.Tensor]:
    """Thresholds theta_t = c / t + d (module docstring) from a fixed run's margins and predictions
    [T, N], searched over a grid of (c, d); the reference is predictions[-1].
    Returns (thresholds [T], exit_step [N], exit_pred [N])."""
    T, N = predictions.shape
    reference = predictions[-1]
    unchanged = unchanged_steps(predictions)
    steps = torch.arange(1, T + 1, dtype=torch.float64)
    m = margins.double()
    summed = (m * steps[:, None]).flatten()
    qs = torch.tensor([0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99], dtype=torch.float64)
    scale = torch.tensor([0.5, 0.75, 1.0, 1.5, 2.0], dtype=torch.float64)
    # grid values nudged off the data, so that a fixed run and a live run (summing in other chunks) agree;
    # a strided sample keeps torch.quantile within its input limit
    sample = summed[:: max(1, len(summed) // 2_000_000)]
    c_grid = torch.quantile(sample, qs)[:, None].mul(scale).flatten() * (1 + 1e-4) + 1e-6
    c_grid = torch.cat([torch.zeros(1, dtype=torch.float64), torch.unique(c_grid),
                        torch.tensor([float("inf")], dtype=torch.float64)])
    d_grid = torch.cat([torch.zeros(1, dtype=torch.float64), torch.unique(torch.quantile(m[-1], qs[1:9])) * (1 + 1e-4)])
    best = None
    agree = predictions == reference[None]
    for c in c_grid.tolist():
        for d in d_grid.tolist():
            theta = c / steps + d
            es = exit_steps(m, predictions, theta, stable_steps, min_steps, unchanged)
            bad = float((~agree[es - 1, torch.arange(N)]).double().mean())
            mean = float(es.double().mean())
            if bad <= tolerance + 1e-12 and (best is None or mean < best[0]):
                best = (mean, theta, es)
    assert best is not None  # c = inf never exits before T: no disagreement
    _, theta, es = best
    return theta.tolist(), es, predictions[es - 1, torch.arange(N)]


def fit_exit_rule(snn: SpikingModel, data: Any, T: int, *, tolerance: float = 0.005,
                  stable_steps: tuple[int, ...] = (1, 2, 4), windows: tuple[int, ...] = (0, 4, 8), min_steps: int = 1,
                  encoder: Encoder = Direct(), batch_size: int = 256) -> ExitFit:
    """Fit ExitOnMargin for runs of at most T steps on `data` (held-out training images, labelled or
    not): one fixed run, then the thresholds for each `stable_steps` and `windows` candidate,
    keeping the one with the fewest mean steps. On `data`, at most `tolerance` of the samples exit
    with a prediction other than the full T-step run's. Use it as simulate(..., T, exit_when=fit.rule).
    The fixed run's records are [T, N] (about (4 windows + 44) T N bytes at the peak): a run that
    does not fit in the memory available is refused with a ConfigError before it starts."""
    T = check_steps(T)
    batch_size = check_count(batch_size, "batch_size", "batch_size=256")
    if not 0.0 <= tolerance < 1.0:
        raise ConfigError(f"tolerance must be in [0, 1), got {tolerance}")
    if not stable_steps or any(not isinstance(s, int) or s < 1 for s in stable_steps):
        raise ConfigError(f"stable_steps must be integers >= 1, got {stable_steps!r}")
    if not windows or any(not isinstance(w, int) or w < 0 for w in windows):
        raise ConfigError(f"windows must be integers >= 0 (0: the mean over all steps so far), got {windows!r}")
    margins, predictions, labels = margins_and_predictions(snn, data, T, encoder, batch_size, tuple(windows))
    best: ExitFit | None = None
    for w in windows:
        for s in stable_steps:
            thresholds, exit_step, exit_pred = fit_thresholds(margins[w], predictions, tolerance, s, min_steps)
            rule = ExitOnMargin(tuple(thresholds), stable_steps=s, min_steps=min_steps, window=w,
                                fitted=(("tolerance", tolerance), ("T", T), ("samples", predictions.shape[1])))
            fit = ExitFit(rule, predictions, exit_step, exit_pred, labels)
            if best is None or fit.mean_steps < best.mean_steps:
                best = fit
    assert best is not None
    return best
