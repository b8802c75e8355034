"""Neurons against closed forms (shared/papers.md)."""
import math

import pytest
import torch

from snnconvert import ConfigError, IFNeuron, SignedIFNeuron, SNMNeuron
from snnconvert.neurons import Negative, Reset, neuron_step


def run_constant(neuron, x: float, T: int) -> torch.Tensor:
    """Cumulative spike counts after t = 1..T for a constant input x (one neuron)."""
    out = neuron(torch.full((T, 1), x))
    return (out / neuron.threshold).cumsum(0)[:, 0]


@pytest.mark.parametrize("x", [0.0, 0.13, 0.3, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("v_init", [0.0, 0.5])
def test_soft_reset_count_is_floor_of_charge(x, v_init):
    theta = 1.0
    counts = run_constant(IFNeuron(theta, reset="soft", v_init=v_init), x, 40)
    expected = [min(t, math.floor((t * x + v_init * theta) / theta + 1e-9)) for t in range(1, 41)]
    assert counts.tolist() == expected


def test_soft_reset_with_threshold_scale():
    theta = 2.5
    counts = run_constant(IFNeuron(theta, reset="soft"), 0.7, 50)
    assert counts[-1].item() == math.floor(50 * 0.7 / theta)


def test_hard_reset_loses_the_residue():
    # theta=1, x=0.3: V = .3 .6 .9 1.2 -> spike, reset to 0 (0.2 lost): a spike every 4 steps.
    hard = run_constant(IFNeuron(1.0, reset="hard"), 0.3, 40)
    soft = run_constant(IFNeuron(1.0, reset="soft"), 0.3, 40)
    assert hard.tolist() == [t // 4 for t in range(1, 41)]
    assert soft[-1].item() == 12 and hard[-1].item() == 10


def test_spike_amplitude_is_threshold():
    out = IFNeuron(0.25, reset="soft")(torch.full((8, 3), 0.3))
    assert set(out.unique().tolist()) <= {0.0, 0.25}


def test_state_persists_across_chunks_and_reset_clears_it():
    x = torch.rand(20, 4, 3) * 2 - 0.5
    for make in (lambda: IFNeuron(0.7, reset="soft"), lambda: SNMNeuron(0.7), lambda: SignedIFNeuron(0.7)):
        whole = make()(x)
        n = make()
        chunks = torch.cat([n(x[:7]), n(x[7:13]), n(x[13:])])
        assert torch.equal(whole, chunks)
        n.reset()
        assert torch.equal(n(x), whole)


def test_signed_neurons_never_make_the_net_count_negative():
    torch.manual_seed(1)
    x = torch.randn(200, 64) * 0.8
    for neuron in (SNMNeuron(0.5), SignedIFNeuron(0.5)):
        counts = (neuron(x) / 0.5).cumsum(0)
        assert counts.min().item() >= 0
        assert (neuron(x) < 0).any(), "the test input must provoke negative spikes"


def test_snm_takes_back_an_early_spike():
    x = torch.tensor([[1.0], [-1.0], [0.0], [0.0]])
    snm = SNMNeuron(1.0)(x)
    soft = IFNeuron(1.0, reset="soft")(x)
    assert snm[:, 0].tolist() == [1.0, -1.0, 0.0, 0.0]  # net 0 = ReLU(total input 0)
    assert soft.sum().item() == 1.0  # the unsigned neuron keeps its excess spike


def test_snm_negative_spike_only_at_minus_threshold():
    # V reaches -0.5 only: no negative spike for SNM, one for signed IF (V < 0).
    x = torch.tensor([[1.0], [-0.5]])
    assert SNMNeuron(1.0)(x)[:, 0].tolist() == [1.0, 0.0]
    assert SignedIFNeuron(1.0, v_init=0.0)(x)[:, 0].tolist() == [1.0, -1.0]


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_signed_if_count_is_rounded_level_for_constant_input(bits):
    T = 2 ** bits - 1
    theta = 1.0
    z = torch.linspace(-0.3, 1.3, 97)  # per-step input; includes values beyond [0, theta]
    out = SignedIFNeuron(theta)(z.expand(T, -1).contiguous())
    count = (out / theta).sum(0)
    expected = torch.clamp(torch.round(T * z / theta), 0, T)
    # exact ties (T z / theta = k + 1/2) are excluded: torch.round goes to even there
    tie = ((T * z / theta) - 0.5).remainder(1.0).abs() < 1e-6
    assert torch.equal(count[~tie], expected[~tie])


def test_signed_if_takes_back_spikes_from_late_negative_input():
    # Early large input, then cancelling negative input: the total is 0.2 theta; one take-back per step.
    x = torch.tensor([[1.0], [0.5], [-1.3], [0.0]])
    signed = SignedIFNeuron(1.0)(x).sum().item()
    unsigned = IFNeuron(1.0, reset="soft", v_init=0.5)(x).sum().item()
    assert signed == 0.0  # round(0.2) = 0: the sequential error removed
    assert unsigned == 2.0


def test_per_channel_and_per_neuron_thresholds_broadcast():
    thr_c = torch.tensor([0.5, 1.0]).view(2, 1, 1)
    n = IFNeuron(thr_c, reset="soft")
    out = n(torch.full((4, 1, 2, 3, 3), 0.5))
    assert out[:, 0, 0].sum(0).unique().tolist() == [2.0]  # 4 spikes x 0.5
    assert out[:, 0, 1].sum(0).unique().tolist() == [2.0]  # 2 spikes x 1.0
    thr_n = torch.rand(2, 3, 3) + 0.5
    assert IFNeuron(thr_n)(torch.rand(3, 5, 2, 3, 3)).shape == (3, 5, 2, 3, 3)


def test_functional_step_matches_module():
    z = torch.randn(10, 6)
    n = SNMNeuron(0.4)
    out_m = n(z)
    v, c = torch.zeros(6), torch.zeros(6)
    outs = []
    for t in range(10):
        o, v, c = neuron_step(z[t], v, c, torch.tensor(0.4), Reset.SOFT, Negative.AT_MINUS_THRESHOLD)
        outs.append(o)
    assert torch.equal(out_m, torch.stack(outs))


def test_bad_neuron_arguments():
    with pytest.raises(ConfigError, match="threshold must be > 0"):
        IFNeuron(0.0)
    with pytest.raises(ConfigError, match="finite"):
        IFNeuron(float("nan"))
    with pytest.raises(ConfigError, match="reset must be"):
        IFNeuron(1.0, reset="medium")
    n = IFNeuron(1.0)
    n(torch.zeros(2, 4, 3))
    with pytest.raises(ConfigError, match="call reset"):
        n(torch.zeros(2, 5, 3))
    with pytest.raises(ConfigError, match="does not broadcast"):
        IFNeuron(torch.ones(7, 1, 1))(torch.zeros(2, 1, 3, 4, 4))


@pytest.mark.parametrize("reset,negative", [(Reset.HARD, Negative.NONE), (Reset.SOFT, Negative.NONE),
                                            (Reset.SOFT, Negative.AT_MINUS_THRESHOLD),
                                            (Reset.SOFT, Negative.BELOW_ZERO)])
@pytest.mark.parametrize("per_neuron", [False, True])
def test_in_place_simulation_step_equals_the_reference_step(reset, negative, per_neuron):
    from snnconvert.neurons.base import SpikingNeuron

    class Probe(SpikingNeuron):
        pass

    Probe.reset_mode, Probe.negative = reset, negative
    torch.manual_seed(3)
    thr = torch.rand(2, 3, 3) + 0.2 if per_neuron else torch.tensor(0.6)
    x = torch.randn(30, 4, 2, 3, 3)
    out_module = Probe(thr, v_init=0.5)(x)
    v = 0.5 * thr.expand(4, 2, 3, 3).clone()
    n = torch.zeros(4, 2, 3, 3)
    ref = []
    for t in range(30):
        o, v, n = neuron_step(x[t], v, n, thr, reset, negative)
        ref.append(o)
    assert torch.equal(out_module, torch.stack(ref))
