"""Data-free thresholds from batch-norm statistics: theta_c = mu_c + k sigma_c of the pre-activation.

A BN layer's output has per-channel mean beta and standard deviation |gamma| over the data its
running statistics were collected on, so the pre-activation of a ReLU right after it is known
without data. Through a residual addition the moments add (mean + mean, variance + variance,
branches taken as independent); a branch that is the output of an earlier ReLU contributes the
moments of a rectified Gaussian N(mu, sigma^2):
    E[relu] = mu Phi(a) + sigma phi(a),  E[relu^2] = (mu^2 + sigma^2) Phi(a) + mu sigma phi(a),  a = mu / sigma.
"""
from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..graph import ACTIVATION, LAYER, Node, Program, Ref, is_addition

Moments = tuple[torch.Tensor, torch.Tensor]  # per-channel mean and variance


def rectified_moments(mean: torch.Tensor, var: torch.Tensor) -> Moments:
    """Mean and variance of relu(X), X ~ N(mean, var) per channel."""
    sd = var.clamp_min(1e-12).sqrt()
    a = mean / sd
    cdf = 0.5 * (1 + torch.erf(a / math.sqrt(2)))
    pdf = torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    m1 = mean * cdf + sd * pdf
    m2 = (mean * mean + var) * cdf + mean * sd * pdf
    return m1, (m2 - m1 * m1).clamp_min(0)


def preactivation_moments(program: Program, node: Node) -> Moments | None:
    """Per-channel (mean, variance) of an activation's input from the BN statistics, None if unknown."""

    def of(ref: object) -> Moments | None:
        if not isinstance(ref, Ref):
            return None
        producer = program.node(ref.name)
        if producer.kind is LAYER and producer.name in program.preactivation_stats:
            beta, sd = program.preactivation_stats[producer.name]
            return beta.double(), sd.double() ** 2
        if producer.kind is ACTIVATION:
            inner = of(producer.args[0]) if producer.args else None
            return None if inner is None else rectified_moments(*inner)
        if is_addition(producer) and len(producer.args) == 2:
            a, b = of(producer.args[0]), of(producer.args[1])
            if a is None or b is None or a[0].shape != b[0].shape:
                return None
            return a[0] + b[0], a[1] + b[1]
        return None

    return of(node.args[0]) if node.args else None


def datafree_thresholds(program: Program, k: float) -> dict[str, torch.Tensor]:
    """theta = mean + k std per channel of every activation's input ([C, 1, 1] for conv feature
    maps, [C] for linear outputs). ConfigError naming the first activation whose input has no
    batch-norm statistics behind it."""
    out: dict[str, torch.Tensor] = {}
    for node in program.activation_nodes():
        moments = preactivation_moments(program, node)
        if moments is None:
            raise ConfigError(f"activation '{node.name}' has no batch norm before it (directly or through a residual "
                              "addition), so its threshold cannot be set without data: pass calibration data and "
                              "a data rule (max, percentile, error_min)")
        mean, var = moments
        theta = (mean + k * var.sqrt()).float()
        producer = _first_layer(program, node)
        dims = getattr(producer, "weight", torch.empty(0)).dim() if producer is not None else 2
        out[node.name] = theta.reshape(-1, *([1] * max(0, dims - 2)))
    return out


def _first_layer(program: Program, node: Node):
    ref = node.args[0]
    producer = program.node(ref.name)
    while producer.kind is not LAYER and producer.args and isinstance(producer.args[0], Ref):
        producer = program.node(producer.args[0].name)
    return program.layers[producer.target] if producer.kind is LAYER else None
