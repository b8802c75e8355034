"""Neuron invariants for random inputs, thresholds and initial potentials (hypothesis), in float64.

- Soft reset and the signed neurons conserve charge: theta x (net spikes) + V(T) = V(0) + summed input.
- The signed neurons' net spike count never goes negative, at any step.
- Hard reset: V(t) < theta after every step (a neuron at or above it spikes and restarts from 0).
- Any split of the run into chunks gives the same output as one call.
"""
from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnconvert import IFNeuron, SignedIFNeuron, SNMNeuron

KINDS = {"if_soft": lambda th, v0: IFNeuron(th, reset="soft", v_init=v0),
         "if_hard": lambda th, v0: IFNeuron(th, reset="hard", v_init=v0),
         "snm": lambda th, v0: SNMNeuron(th, v_init=v0),
         "signed_if": lambda th, v0: SignedIFNeuron(th, v_init=v0)}
CONSERVING = ("if_soft", "snm", "signed_if")
SIGNED = ("snm", "signed_if")


@st.composite
def runs(draw, kinds=tuple(KINDS)):
    """(kind, inputs [T, n] float64, per-neuron thresholds [n], v_init)."""
    kind = draw(st.sampled_from(kinds))
    T, n = draw(st.integers(1, 40)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.floats(0.05, 3.0))
    x = (torch.rand(T, n, generator=g, dtype=torch.float64) * 2 - draw(st.floats(0.0, 1.0))) * scale
    theta = torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.05
    v0 = draw(st.sampled_from([0.0, 0.5, draw(st.floats(0.0, 1.0))]))
    return kind, x, theta, v0


SETTINGS = settings(max_examples=80, deadline=None)


@SETTINGS
@given(runs(CONSERVING))
def test_charge_is_conserved(run):
    kind, x, theta, v0 = run
    neuron = KINDS[kind](theta, v0)
    out = neuron(x)
    theta = neuron.threshold.double()  # as the neuron holds it (float32)
    torch.testing.assert_close(out.sum(0) + neuron.v, v0 * theta + x.sum(0), rtol=0, atol=1e-6)  # V(0) is set in float32
    spikes = out / theta
    torch.testing.assert_close(spikes, spikes.round(), rtol=0, atol=1e-12)  # amplitudes are +-theta or 0


@SETTINGS
@given(runs(SIGNED))
def test_signed_net_count_never_goes_negative(run):
    kind, x, theta, v0 = run
    neuron = KINDS[kind](theta, v0)
    counts = (neuron(x) / neuron.threshold).round().cumsum(0)
    assert counts.min().item() >= 0


@SETTINGS
@given(runs(("if_hard",)))
def test_hard_reset_potential_stays_below_threshold(run):
    _, x, theta, v0 = run
    neuron = KINDS["if_hard"](theta, v0)
    for t in range(len(x)):
        neuron(x[t:t + 1])
        assert (neuron.v < neuron.threshold).all()


@SETTINGS
@given(runs(), st.lists(st.integers(1, 40), min_size=1, max_size=5))
def test_any_chunking_gives_the_same_output(run, cuts):
    kind, x, theta, v0 = run
    whole = KINDS[kind](theta, v0)(x)
    neuron, parts, t = KINDS[kind](theta, v0), [], 0
    for c in cuts + [len(x)]:
        if t >= len(x):
            break
        parts.append(neuron(x[t:t + c]))
        t += c
    assert torch.equal(torch.cat(parts), whole)


@SETTINGS
@given(st.floats(0.01, 1.0), st.floats(0.1, 3.0), st.integers(1, 120))
def test_hard_reset_with_constant_input_fires_in_lock_step_every_ceil_theta_over_z(z_frac, theta, T):
    """The mechanism of the hard-reset baseline's dips (README, benchmarks/hard_reset_oscillation.py):
    every neuron with the same constant input z fires at t = p, 2p, ... with p = ceil(theta / z)."""
    z = z_frac * theta
    neuron = IFNeuron(theta, reset="hard")
    fired = (neuron(torch.full((T, 3), z, dtype=torch.float64)) > 0).tolist()
    theta32 = float(neuron.threshold)
    expected, v = [], 0.0
    for _ in range(T):  # the hard-reset equation in float64, with the threshold as the neuron holds it
        v += z
        expected.append(v >= theta32)
        v = 0.0 if v >= theta32 else v
    assert all(row == [e] * 3 for row, e in zip(fired, expected))
    p = next((t for t, e in enumerate(expected, 1) if e), None)
    if p is not None and abs(theta32 / z - round(theta32 / z)) > 1e-6:  # away from ties, p = ceil(theta/z)
        assert p == math.ceil(theta32 / z) and all(e == (t % p == 0) for t, e in enumerate(expected, 1))
