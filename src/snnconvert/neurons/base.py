"""SpikingNeuron: a module that owns its membrane state and runs the shared step over time."""
from __future__ import annotations

import math
from typing import Any, ClassVar, Union

import torch

from ..errors import ConfigError
from ..graph import StatefulModule
from .functional import FusedStep, Negative, Reset, StepWorkspace, neuron_step_

ThresholdLike = Union[float, torch.Tensor]


def _as_threshold(threshold: ThresholdLike) -> torch.Tensor:
    t = torch.as_tensor(threshold, dtype=torch.float32).detach().clone()
    if not torch.isfinite(t).all():
        raise ConfigError(f"threshold must be finite, got {threshold!r}")
    if (t <= 0).any():
        raise ConfigError(f"threshold must be > 0 everywhere, got min {t.min().item():g}")
    return t


class SpikingNeuron(StatefulModule):
    """Integrate-and-fire neuron family; subclasses fix `reset` and `negative`.

    Calling it with x: [T, N, ...] (time first) runs T steps and returns theta * s(t), same shape.
    State (v, and for signed neurons the net spike count n) persists across calls so a long run can be streamed in chunks; `reset()` starts
    a new sample. `threshold` is a float (layer-wise) or a tensor that broadcasts against one
    sample's shape: [C, 1, 1] per channel, [C, H, W] per neuron, [F] for linear layers.
    `v_init` is the initial membrane potential as a fraction of the threshold; `v_offset` (None
    unless set_initial_offset() gave one, e.g. by potential calibration) is added to it, in the
    units of the input: V(0) = v_init * theta + v_offset.
    `threshold_cap` (None unless set_threshold_cap() gave one: a clipped ReLU such as ReLU6 was
    converted) bounds the threshold: every threshold given to the neuron, now or later (threshold
    balancing assigns it), is min(threshold, cap), so the rate output theta * s saturates at or below
    the ANN's clip a. Thresholds below the cap are kept: they clip the ANN activation where it never
    exceeded them on the calibration data.
    `kind` is the neuron's name in the registry (neurons.registry.NEURONS); config() describes the
    neuron for saving (the threshold is a tensor and goes with the weights).
    """

    kind: ClassVar[str] = ""
    reset_mode: Reset = Reset.SOFT
    negative: Negative = Negative.NONE

    def __init__(self, threshold: ThresholdLike, v_init: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("threshold", _as_threshold(threshold))
        if not (-1.0 <= float(v_init) <= 1.0):
            raise ConfigError(f"v_init is a fraction of the threshold in [-1, 1], got {v_init}")
        self.v_init = float(v_init)
        self.register_buffer("v_offset", None)
        self.threshold_cap: float | None = None
        self.register_buffer("v", None, persistent=False)
        self.register_buffer("n", None, persistent=False)
        self._ws: StepWorkspace | None = None
        # a FusedStep to use instead of the eager step; set only for the duration of a run by
        # SpikingModel.compiled_neurons()
        self.fused_step: FusedStep | None = None

    def config(self) -> dict[str, Any]:
        """{"kind": registry name, "v_init": ..., ("threshold_cap": a, if set)}: with the threshold, enough
        to rebuild the neuron."""
        out: dict[str, Any] = {"kind": self.kind, "v_init": self.v_init}
        if self.threshold_cap is not None:
            out["threshold_cap"] = self.threshold_cap
        return out

    def set_threshold_cap(self, cap: float | None) -> None:
        """Keep the threshold <= `cap` (a finite number > 0) from now on, the current one included;
        None removes the cap (the threshold stays as it is)."""
        if cap is None:
            self.threshold_cap = None
            return
        cap = float(cap)
        if not (math.isfinite(cap) and cap > 0):
            raise ConfigError(f"a threshold cap must be finite and > 0, got {cap!r}")
        self.threshold_cap = cap
        self.threshold = self.threshold  # re-assigned through __setattr__: capped

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "threshold" and isinstance(value, torch.Tensor) and getattr(self, "threshold_cap", None) is not None:
            value = value.clamp(max=self.threshold_cap)
        super().__setattr__(name, value)

    def set_initial_offset(self, offset: torch.Tensor | None) -> None:
        """Add `offset` (broadcastable like the threshold, finite) to the initial potential; None removes it."""
        if offset is None:
            self.v_offset = None
            return
        o = torch.as_tensor(offset, dtype=torch.float32).detach().clone()
        if not torch.isfinite(o).all():
            raise ConfigError("the initial potential offset must be finite")
        try:
            torch.broadcast_shapes(o.shape, self.threshold.shape)
        except RuntimeError:
            raise ConfigError(f"an initial potential offset of shape {tuple(o.shape)} does not broadcast against "
                              f"the threshold's {tuple(self.threshold.shape)}") from None
        self.v_offset = o.to(self.threshold.device)

    def reset(self) -> None:
        """Forget the membrane potential and spike memory (start of a new sample)."""
        self.v = None
        self.n = None
        self._ws = None

    def keep(self, mask: torch.Tensor) -> None:
        """Keep only the batch entries where mask [N] is True (samples that exit early are dropped)."""
        if self.v is not None:
            self.v = self.v[mask]
            self.n = None if self.n is None else self.n[mask]
            self._ws = None

    def _init_state(self, z: torch.Tensor) -> None:
        try:
            thr = torch.broadcast_to(self.threshold, z.shape)
        except RuntimeError as e:
            raise ConfigError(
                f"{type(self).__name__}: threshold of shape {tuple(self.threshold.shape)} does not "
                f"broadcast to the input of shape {tuple(z.shape)} (batch first)"
            ) from e
        v = self.v_init * thr if self.v_offset is None else self.v_init * thr + self.v_offset
        self.v = torch.broadcast_to(v, z.shape).to(z.dtype).clone().contiguous()
        # n, the net spike count, matters only to signed neurons (their negative-spike condition)
        self.n = None if self.negative is Negative.NONE else torch.zeros_like(self.v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ConfigError(f"{type(self).__name__} expects x of shape [T, N, ...], got {tuple(x.shape)}")
        if self.v is None:
            self._init_state(x[0])
        elif self.v.shape != x.shape[1:]:
            raise ConfigError(
                f"{type(self).__name__}: state has shape {tuple(self.v.shape)} but the input step has "
                f"shape {tuple(x.shape[1:])}; call reset() before a new batch"
            )
        out = torch.empty_like(x)
        if self.fused_step is not None and self.fused_step.available is not False and self._fused(x, out):
            return out
        thr: torch.Tensor | float = self.threshold.to(x.dtype)
        if thr.numel() == 1:
            thr = float(thr)  # scalar comparisons are cheaper than 0-dim tensor broadcasts
        if self._ws is None or not self._ws.fits(x[0]):
            self._ws = StepWorkspace(x[0])
        for t in range(x.shape[0]):
            neuron_step_(x[t], self.v, self.n, thr, self.reset_mode, self.negative, out[t], self._ws)
        return out

    def _fused(self, x: torch.Tensor, out: torch.Tensor) -> bool:
        """Run the steps of x with the fused step on [N, F] views; False (nothing done) if unavailable."""
        if self.n is None:
            self.n = torch.zeros_like(self.v)
        K, N = x.shape[0], x.shape[1]
        v, n = self.v.view(N, -1), self.n.view(N, -1)
        thr = torch.broadcast_to(self.threshold.to(x.dtype), x.shape[2:]).reshape(-1)
        # a constant input (time expanded, stride 0) is flattened once, not once per step
        steps = [x[0].reshape(N, -1)] * K if x.stride(0) == 0 else list(x.reshape(K, N, -1))
        target = out if out.is_contiguous() else torch.empty(out.shape, dtype=out.dtype, device=out.device)
        outs = target.view(K, N, -1)
        for t in range(K):
            if not self.fused_step(v, n, steps[t], outs[t], thr):
                return False  # only possible at the first call, before anything changed
        if target is not out:
            out.copy_(target)
        return True

    def extra_repr(self) -> str:
        thr = self.threshold
        shown = f"{thr.item():.4g}" if thr.numel() == 1 else f"tensor{tuple(thr.shape)}"
        cap = "" if self.threshold_cap is None else f", threshold_cap={self.threshold_cap:g}"
        return f"threshold={shown}, v_init={self.v_init}{cap}" + ("" if self.v_offset is None else ", v_offset=set")
