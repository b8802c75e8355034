"""Max pooling that is correct for spike trains.

An ANN max over spike trains would pass a spike whenever ANY input in the window spikes, so its
rate would approach the union of the inputs' spikes, not the maximum rate. Instead (Rueckauer et
al. 2017, "spike-gated" max pooling) each window forwards, at every step, the current input of the
element whose accumulated input so far is largest: the time average of the output then converges
to the maximum of the input rates (exactly the ANN max of the averaged activations once the
ordering of the accumulated inputs settles). With constant (static) input it is an ordinary max pool.
"""
from __future__ import annotations

import torch
from torch import nn


class SpikingMaxPool(nn.Module):
    """Wraps an nn.MaxPool{1,2,3}d. forward(x: [T, N, C, ...]) -> [T, N, C, ...pooled]; stateful."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool
        self.register_buffer("acc", None, persistent=False)

    def reset(self) -> None:
        self.acc = None

    def static_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Constant input: the ordinary max pool (exact)."""
        return self.pool(x)

    def _pool_indices(self, acc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.pool
        fn = {1: nn.functional.max_pool1d, 2: nn.functional.max_pool2d, 3: nn.functional.max_pool3d}[acc.dim() - 2]
        return fn(acc, p.kernel_size, p.stride, p.padding, p.dilation, ceil_mode=p.ceil_mode, return_indices=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.acc is None:
            self.acc = torch.zeros_like(x[0])
        outs = []
        acc = self.acc
        for t in range(x.shape[0]):
            xt = x[t]
            acc = acc + xt
            _, idx = self._pool_indices(acc)
            flat = xt.flatten(2)
            outs.append(flat.gather(2, idx.flatten(2)).view_as(idx).to(xt.dtype))
        self.acc = acc
        return torch.stack(outs)
