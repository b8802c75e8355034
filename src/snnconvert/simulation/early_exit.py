"""Per-sample early exit: stop simulating a sample once its prediction has settled."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class ExitWhenStable:
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


class ExitTracker:
    """Follows one batch through a run: which samples have settled, when, and with what prediction."""

    def __init__(self, rule: ExitWhenStable, labels: torch.Tensor, T: int) -> None:
        self.rule = rule
        self.T = T
        n, dev = len(labels), labels.device
        self.labels = labels
        self.index = torch.arange(n, device=dev)  # original positions of the samples still running
        self.exit_step = torch.full((n,), T, dtype=torch.long, device=dev)
        self.final_pred = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.stable = torch.zeros(n, dtype=torch.long, device=dev)
        self.recent: torch.Tensor | None = None  # [window, n_active, classes] last per-step outputs

    def update(self, outs: torch.Tensor, cs: torch.Tensor, t0: int) -> tuple[torch.Tensor, torch.Tensor]:
        """outs, cs: [K, n_active, classes] per-step outputs and running sums after steps t0+1..t0+K.

        Returns (keep mask [n_active], counted [K, n_active]: True where step t is at or before the
        sample's exit, i.e. where its live prediction is the one that counts)."""
        K, n = cs.shape[0], cs.shape[1]
        done = torch.zeros(n, dtype=torch.bool, device=cs.device)
        hist = outs if self.recent is None else torch.cat([self.recent, outs])
        start = hist.shape[0] - K  # position of this chunk's first step inside hist
        pred = cs.argmax(-1)
        stable = self.stable[self.index]
        for k in range(K):
            t = t0 + k + 1
            lo = max(0, start + k + 1 - self.rule.window)
            recent = hist[lo:start + k + 1].mean(0)
            prob, cls = torch.softmax(recent.double(), -1).max(-1)
            ok = (prob >= self.rule.confidence) & (cls == pred[k])
            stable = torch.where(ok, stable + 1, torch.zeros_like(stable))
            now = ~done & (stable >= self.rule.patience) & (t >= self.rule.min_steps)
            idx = self.index[now]
            self.exit_step[idx] = t
            self.final_pred[idx] = pred[k][now]
            done |= now
        self.stable[self.index] = stable
        steps = torch.arange(t0 + 1, t0 + K + 1, device=cs.device)[:, None]
        counted = steps <= self.exit_step[self.index][None, :]
        self.final_pred[self.index[~done]] = pred[-1][~done]
        self.recent = hist[-self.rule.window:][:, ~done]
        self.index = self.index[~done]
        return ~done, counted

    def frozen_correct(self) -> torch.Tensor:
        """[T]: at each step t, how many samples that exited before t were right (an exited sample
        keeps its exit-time prediction for every later step)."""
        hit = (self.final_pred == self.labels).long()
        out = torch.zeros(self.T + 1, dtype=torch.long, device=hit.device)
        out.index_add_(0, self.exit_step, hit)
        return out.cumsum(0)[: self.T]
