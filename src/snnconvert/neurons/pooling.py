"""Max pooling that is correct for spike trains.

An ANN max over spike trains would pass a spike whenever ANY input in the window spikes, so its
rate would approach the union of the inputs' spikes, not the maximum rate. Gating on the element
whose accumulated input is largest (Rueckauer et al. 2017) is biased too: with two inputs of
equal rate firing in alternation, the element that has just spiked is always the (tied) leader,
so every spike of both passes and the output rate is again the union.

Instead each window keeps the accumulated input of its elements, A_i(t) = sum_{tau<=t} x_i(tau),
and emits the increase of their maximum: out(t) = max_i A_i(t) - max_i A_i(t-1). The output summed
over steps 1..t is then exactly max_i A_i(t), so its time average IS the maximum of the inputs'
time averages (the ANN max of the averaged activations) at every t, with no bias. When the window's
inputs are spikes of one amplitude theta (layer- or channel-wise thresholds) the output is a spike
train of amplitude theta too (0 or theta per step; +-theta for signed neurons); with per-neuron
thresholds it is a graded value. With constant (static) input it is an ordinary max pool.
The sums are kept in float64: k * theta is then exact for any practical count k, so equal counts
compare equal and the increase of the maximum is exactly 0 or theta (no rounding residue that
would count as a spike).
"""
from __future__ import annotations

import torch
from torch import nn

from ..graph import StatefulModule


class SpikingMaxPool(StatefulModule):
    """Wraps an nn.MaxPool{1,2,3}d. forward(x: [T, N, C, ...]) -> [T, N, C, ...pooled]; stateful."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool
        self.register_buffer("acc", None, persistent=False)  # accumulated input, [N, C, ...]
        self.register_buffer("top", None, persistent=False)  # its pooled maximum, [N, C, ...pooled]

    def reset(self) -> None:
        self.acc = None
        self.top = None

    def keep(self, mask: torch.Tensor) -> None:
        """Keep only the batch entries where mask is True (early exit)."""
        if self.acc is not None:
            self.acc, self.top = self.acc[mask], self.top[mask]

    def static_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Constant input: the ordinary max pool (exact)."""
        return self.pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.acc is None:
            wide = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
            self.acc = torch.zeros_like(x[0], dtype=torch.promote_types(x.dtype, wide))
            self.top = self.pool(self.acc)
        acc, top = self.acc, self.top
        outs = []
        for t in range(x.shape[0]):  # step by step: the same sums whatever the chunking
            acc = acc + x[t]
            new_top = self.pool(acc)
            outs.append((new_top - top).to(x.dtype))
            top = new_top
        self.acc, self.top = acc, top
        return torch.stack(outs)
