"""Per-sample early exit: stop simulating a sample once its prediction has settled.

A rule looks at each step's output of the samples still running and marks those that may stop;
ExitTracker follows a batch through the run and applies it (the same code runs online in
simulate() and offline in `replay`, so a rule fitted on recorded outputs behaves the same live).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError


class ExitRule(ABC):
    """When a running sample may stop. After step t, `ok(...)` marks the samples whose state satisfies
    the rule; a sample exits after `patience` consecutive ok steps and never before `min_steps`."""

    window: int = 1  # how many recent per-step outputs `ok` receives (as their mean)
    patience: int = 1
    min_steps: int = 1

    @abstractmethod
    def ok(self, t: int, recent: torch.Tensor, running: torch.Tensor, pred: torch.Tensor,
           unchanged: torch.Tensor) -> torch.Tensor:
        """recent: [n, classes] mean output of the last `window` steps; running: [n, classes] output
        summed over steps 1..t; pred: [n] its argmax; unchanged: [n] for how many steps in a row
        (this one included) pred has been what it is now. Returns a bool mask [n]."""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": type(self).__name__, **{k: (list(v) if isinstance(v, tuple) else v)
                                                 for k, v in vars(self).items()}}


@dataclass(frozen=True)
class ExitWhenStable(ExitRule):
    """Exit a sample after step t when, for `patience` consecutive steps, the mean output of the last
    `window` steps gives its top class a softmax probability >= `confidence` AND that class is also
    the running prediction (argmax of the output summed over steps 1..t); never before `min_steps`.

    Why this rule: the running sum is what is reported, but it carries the start-up transient (deep
    layers fire late, so early steps hold little more than the bias); the mean over a short recent
    window is a fresher estimate of the converged output. Requiring both to agree, with a confident
    softmax of the recent output, for a few steps in a row, exits samples once the network has
    settled on them. Before any spike reaches the output the window holds only the bias, whose
    softmax is rarely confident, so silence does not trigger an exit. Larger `patience`, `window` or
    `confidence` trade steps for accuracy (see benchmarks/results for measured trade-offs).
    Hand-set; `fit_exit_rule` gives a rule fitted to the network instead.
    """

    confidence: float = 0.99
    window: int = 4
    patience: int = 2
    min_steps: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ConfigError(f"confidence must be in [0, 1], got {self.confidence}")
        if self.window < 1 or self.patience < 1 or self.min_steps < 1:
            raise ConfigError(f"window, patience and min_steps must be >= 1, got "
                              f"{self.window}, {self.patience}, {self.min_steps}")

    def ok(self, t: int, recent: torch.Tensor, running: torch.Tensor, pred: torch.Tensor,
           unchanged: torch.Tensor) -> torch.Tensor:
        prob, cls = torch.softmax(recent.double(), -1).max(-1)
        return (prob >= self.confidence) & (cls == pred)


def running_margin(running: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """(top-1 - top-2) over the last dimension of running / t (the mean output over t steps); inf for
    a single class."""
    top = running.topk(2, dim=-1).values if running.shape[-1] > 1 else torch.cat(
        [running, torch.full_like(running, float("-inf"))], -1)
    return (top[..., 0] - top[..., 1]) / t


@dataclass(frozen=True)
class ExitOnMargin(ExitRule):
    """Exit a sample after step t when its running prediction has been the same for `stable_steps`
    steps and the margin (top-1 - top-2) of its mean output, over steps 1..t (`window` 0) or over
    the last min(window, t) steps, is >= thresholds[t-1] (thresholds[-1] for t beyond the list; inf: nobody exits at that step,
    written as null by to_dict()).
    Usually made by `fit_exit_rule`, which records how it was fitted in `fitted`."""

    thresholds: tuple[float, ...]
    stable_steps: int = 1
    min_steps: int = 1
    window: int = 0
    fitted: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", tuple(float(v) for v in self.thresholds))
        if not self.thresholds or any(v != v for v in self.thresholds):
            raise ConfigError("ExitOnMargin needs a non-empty list of thresholds (numbers or inf, not NaN)")
        if self.stable_steps < 1 or self.min_steps < 1 or self.window < 0:
            raise ConfigError(f"stable_steps and min_steps must be >= 1 and window >= 0, got {self.stable_steps}, "
                              f"{self.min_steps}, {self.window}")

    def threshold_at(self, t: int) -> float:
        return self.thresholds[min(t, len(self.thresholds)) - 1]

    def ok(self, t: int, recent: torch.Tensor, running: torch.Tensor, pred: torch.Tensor,
           unchanged: torch.Tensor) -> torch.Tensor:
        margin = running_margin(recent, 1) if self.window else running_margin(running, t)
        return (margin >= self.threshold_at(t)) & (unchanged >= self.stable_steps)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "ExitOnMargin", "thresholds": [v if v != float("inf") else None for v in self.thresholds],
                "stable_steps": self.stable_steps, "min_steps": self.min_steps, "window": self.window,
                "fitted": dict(self.fitted)}


class ExitTracker:
    """Follows one batch through a run: which samples have settled, when, and with what prediction."""

    def __init__(self, rule: ExitRule, labels: torch.Tensor, T: int) -> None:
        if not isinstance(rule, ExitRule):
            raise ConfigError(f"exit_when must be an exit rule (ExitWhenStable, ExitOnMargin, fit_exit_rule()), "
                              f"got {type(rule).__name__}")
        self.rule = rule
        self.T = T
        n, dev = len(labels), labels.device
        self.labels = labels
        self.index = torch.arange(n, device=dev)  # original positions of the samples still running
        self.exit_step = torch.full((n,), T, dtype=torch.long, device=dev)
        self.final_pred = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.stable = torch.zeros(n, dtype=torch.long, device=dev)
        self.unchanged = torch.zeros(n, dtype=torch.long, device=dev)
        self.last_pred = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.recent: torch.Tensor | None = None  # [window, n_active, classes] last per-step outputs

    def update(self, outs: torch.Tensor, cs: torch.Tensor, t0: int) -> tuple[torch.Tensor, torch.Tensor]:
        """outs, cs: [K, n_active, classes] per-step outputs and running sums after steps t0+1..t0+K.

        Returns (keep mask [n_active], counted [K, n_active]: True where step t is at or before the
        sample's exit, i.e. where its live prediction is the one that counts)."""
        K, n = cs.shape[0], cs.shape[1]
        rule = self.rule
        done = torch.zeros(n, dtype=torch.bool, device=cs.device)
        hist = outs if self.recent is None else torch.cat([self.recent, outs])
        start = hist.shape[0] - K  # position of this chunk's first step inside hist
        pred = cs.argmax(-1)
        stable = self.stable[self.index]
        unchanged, last = self.unchanged[self.index], self.last_pred[self.index]
        for k in range(K):
            t = t0 + k + 1
            unchanged = torch.where(pred[k] == last, unchanged + 1, torch.ones_like(unchanged))
            last = pred[k]
            lo = max(0, start + k + 1 - max(1, rule.window))
            ok = rule.ok(t, hist[lo:start + k + 1].mean(0), cs[k], pred[k], unchanged)
            stable = torch.where(ok, stable + 1, torch.zeros_like(stable))
            now = ~done & (stable >= rule.patience) & (t >= rule.min_steps)
            idx = self.index[now]
            self.exit_step[idx] = t
            self.final_pred[idx] = pred[k][now]
            done |= now
        self.stable[self.index] = stable
        self.unchanged[self.index], self.last_pred[self.index] = unchanged, last
        steps = torch.arange(t0 + 1, t0 + K + 1, device=cs.device)[:, None]
        counted = steps <= self.exit_step[self.index][None, :]
        self.final_pred[self.index[~done]] = pred[-1][~done]
        self.recent = hist[-max(1, rule.window):][:, ~done]
        self.index = self.index[~done]
        return ~done, counted

    def frozen_correct(self) -> torch.Tensor:
        """[T]: at each step t, how many samples that exited before t were right (an exited sample
        keeps its exit-time prediction for every later step)."""
        hit = (self.final_pred == self.labels).long()
        out = torch.zeros(self.T + 1, dtype=torch.long, device=hit.device)
        out.index_add_(0, self.exit_step, hit)
        return out.cumsum(0)[: self.T]


def replay(rule: ExitRule, outs: torch.Tensor, T: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply `rule` to recorded per-step outputs `outs` [T, N, classes] as simulate() would live.
    Returns (exit_step [N] in 1..T, prediction at exit [N])."""
    T = outs.shape[0] if T is None else T
    tracker = ExitTracker(rule, torch.zeros(outs.shape[1], dtype=torch.long, device=outs.device), T)
    tracker.update(outs[:T], outs[:T].cumsum(0), 0)
    return tracker.exit_step, tracker.final_pred
