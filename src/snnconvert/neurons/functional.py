"""The one neuron step shared by every preset (shared/papers.md; papers-digest section 8).

    V <- V + z
    s+ = [V >= theta]                       positive spike
    V <- V - theta s+   (soft reset)    or  V <- V (1 - s+)   (hard reset, residue lost)
    s- = [V <= th_neg] & [n > 0] & ~s+      negative spike (signed neurons only)
    V <- V + theta s-
    n <- n + s+ - s-                        net spikes transmitted so far (the SNM "memory" / theta)
    out = theta (s+ - s-)                   spikes carry amplitude theta

th_neg is -theta for SNM and "just below 0" for Fast-SNN's signed IF neuron.
"""
from __future__ import annotations

import warnings
from enum import Enum

import torch


class Reset(str, Enum):
    """What happens to the membrane potential after a positive spike."""

    HARD = "hard"  # V <- 0: the residue above threshold is lost (Diehl 2015)
    SOFT = "soft"  # V <- V - theta: residual membrane potential kept (RMP-SNN)


class Negative(str, Enum):
    """When a neuron may fire a negative spike (only while its net count n is > 0)."""

    NONE = "none"  # unsigned IF neuron
    AT_MINUS_THRESHOLD = "at_minus_threshold"  # SNM: V <= -theta
    BELOW_ZERO = "below_zero"  # Fast-SNN signed IF: V < 0


# Relative tolerance for "V < 0": float sums of inputs that are exactly zero in real arithmetic
# must not trigger a negative spike (the official Fast-SNN code uses V <= -1e-3 for the same reason).
BELOW_ZERO_TOLERANCE = 1e-6


def neuron_step(
    z: torch.Tensor,
    v: torch.Tensor,
    n: torch.Tensor,
    threshold: torch.Tensor,
    reset: Reset,
    negative: Negative,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advance one time step. Returns (out, v, n); `out` is theta * s with s in {-1, 0, +1}.

    Shapes: z, v, n: [N, ...]; threshold broadcasts against them (scalar, [C, 1, 1], [C, H, W]).
    """
    v = v + z
    pos = v >= threshold
    if reset is Reset.SOFT:
        v = v - threshold * pos
    else:
        v = torch.where(pos, torch.zeros_like(v), v)
    if negative is Negative.NONE:
        s = pos.to(z.dtype)
    else:
        if negative is Negative.AT_MINUS_THRESHOLD:
            neg = v <= -threshold
        else:
            neg = v < -BELOW_ZERO_TOLERANCE * threshold
        neg = neg & (n > 0) & ~pos
        v = v + threshold * neg
        s = pos.to(z.dtype) - neg.to(z.dtype)
    n = n + s
    return threshold * s, v, n


class StepWorkspace:
    """Preallocated boolean/float buffers for `neuron_step_` (fresh CPU allocations of large
    tensors cost more than the arithmetic itself)."""

    def __init__(self, like: torch.Tensor) -> None:
        self.pos = torch.empty(like.shape, dtype=torch.bool, device=like.device)
        self.neg = torch.empty_like(self.pos)
        self.tmp = torch.empty_like(self.pos)
        self.amp = torch.empty_like(like)

    def fits(self, like: torch.Tensor) -> bool:
        return self.amp.shape == like.shape and self.amp.dtype == like.dtype and self.amp.device == like.device


def neuron_step_(
    z: torch.Tensor,
    v: torch.Tensor,
    n: torch.Tensor | None,
    threshold: torch.Tensor | float,
    reset: Reset,
    negative: Negative,
    out: torch.Tensor,
    ws: StepWorkspace,
) -> None:
    """In-place twin of `neuron_step` for the simulation loop (same equation, no allocations):
    updates v (and n, signed neurons only) and writes theta * s into `out`.

    A positive spike leaves V >= 0 > th_neg, so the negative test needs no `~pos` term here.
    """
    v.add_(z)
    torch.ge(v, threshold, out=ws.pos)
    out.copy_(ws.pos)  # s+ (0/1)
    if negative is Negative.NONE:
        out.mul_(threshold)  # theta * s+
        if reset is Reset.SOFT:
            v.sub_(out)
        else:
            v.masked_fill_(ws.pos, 0.0)
        return
    # A neuron that fires a positive spike ends with V >= 0 > th_neg, so the negative test can be
    # made on V before the reset: s- = [V <= -theta] (SNM) or [V < 0] (signed IF), and n > 0.
    assert n is not None and reset is Reset.SOFT
    if negative is Negative.AT_MINUS_THRESHOLD:
        torch.le(v, -threshold, out=ws.neg)
    else:
        torch.lt(v, -BELOW_ZERO_TOLERANCE * threshold, out=ws.neg)
    torch.gt(n, 0, out=ws.tmp)
    ws.neg.logical_and_(ws.tmp)
    ws.amp.copy_(ws.neg)
    out.sub_(ws.amp)  # s = s+ - s-
    n.add_(out)
    out.mul_(threshold)  # theta * s
    v.sub_(out)  # V - theta s+ + theta s-


def _fused_if_soft(v: torch.Tensor, n: torch.Tensor, z: torch.Tensor, out: torch.Tensor, thr: torch.Tensor) -> None:
    v.add_(z)
    out.copy_((v >= thr).to(v.dtype) * thr)
    v.sub_(out)


def _fused_if_hard(v: torch.Tensor, n: torch.Tensor, z: torch.Tensor, out: torch.Tensor, thr: torch.Tensor) -> None:
    v.add_(z)
    pos = v >= thr
    out.copy_(pos.to(v.dtype) * thr)
    v.masked_fill_(pos, 0.0)


def _fused_signed(level: float):
    """level: -1 -> SNM (V <= -theta); else signed IF (V < -level * theta), level = tolerance."""

    def step(v: torch.Tensor, n: torch.Tensor, z: torch.Tensor, out: torch.Tensor, thr: torch.Tensor) -> None:
        v.add_(z)
        pos = v >= thr
        neg = ((v <= -thr) if level < 0 else (v < -level * thr)) & (n > 0)
        s = pos.to(v.dtype) - neg.to(v.dtype)
        n.add_(s)
        out.copy_(s * thr)
        v.sub_(out)

    return step


class FusedStep:
    """The same step as `neuron_step_`, written as one expression per state and compiled with
    torch.compile into a single fused loop (one memory pass instead of five to eleven), called as
    step(v, n, z, out, threshold) on tensors flattened to [N, F] with the threshold expanded to [F],
    so one compiled kernel serves every batch size, layer shape and threshold granularity.

    Compiled on the first call (seconds). Where compiling is impossible (no working C++ compiler,
    no Inductor for the device), that first call warns once, returns False and leaves its arguments
    untouched; the caller then runs the eager step, and `available` is False from then on. Each
    FusedStep is its own object: the SpikingModel that uses it keeps it, no module-level cache."""

    def __init__(self, reset: Reset, negative: Negative) -> None:
        if negative is Negative.NONE:
            fn = _fused_if_soft if reset is Reset.SOFT else _fused_if_hard
        else:
            fn = _fused_signed(-1.0 if negative is Negative.AT_MINUS_THRESHOLD else BELOW_ZERO_TOLERANCE)
        self.kind = (reset, negative)
        self._fn = torch.compile(fn, dynamic=True)
        self.available: bool | None = None  # None: not tried yet

    def __call__(self, v: torch.Tensor, n: torch.Tensor, z: torch.Tensor, out: torch.Tensor,
                 thr: torch.Tensor) -> bool:
        if self.available:
            self._fn(v, n, z, out, thr)
            return True
        if self.available is False:
            return False
        try:
            self._fn(v, n, z, out, thr)
        except Exception as e:  # Inductor raises many types: missing compiler, unsupported device, ...
            self.available = False
            warnings.warn(f"compiled neuron updates are unavailable ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                          "running the eager neuron step instead (same results, slower). Pass compile=False "
                          "(CLI: --no-compile) to skip the attempt.", RuntimeWarning, stacklevel=3)
            return False
        self.available = True
        return True

