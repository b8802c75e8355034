"""simulate(): one run gives every t; chunking, batching and encoders; activity, synops and energy."""
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import snnconvert
import snnconvert as sc
from snnconvert import Direct, Poisson, SimulationResult
from snnconvert.simulation.record import fanout_map


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 2 * 2, 3)).eval()


def labelled(model, n=50, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::4] = (y[::4] + 1) % 3  # some wrong labels: accuracy is not trivially 1
    return x, y


def records(res: SimulationResult):
    return res.accuracy, [(la.name, la.neurons, la.spikes_per_step) for la in res.layers], res.synops_per_step


@pytest.mark.parametrize("encoder", [Direct(), Poisson(seed=3)], ids=["direct", "poisson"])
def test_accuracy_after_t_equals_a_run_of_t_steps(encoder):
    model = small_cnn()
    x, y = labelled(model, 30)
    snn = snnconvert.convert(model, x, "rmp")
    full = snnconvert.simulate(snn, (x, y), 24, encoder=encoder, chunk_size=7)
    assert len(full.accuracy) == 24
    for t in (1, 5, 13, 24):
        short = snnconvert.simulate(snn, (x, y), t, encoder=encoder, chunk_size=7)
        assert short.accuracy == full.accuracy[:t]
        assert short.synops_per_step == full.synops_per_step[:t]
        # and it is the accuracy of snn(x, t)
        with torch.no_grad():
            direct = (snn(x, t, encoder=encoder).argmax(1) == y).double().mean().item()
        if isinstance(encoder, Direct):
            assert direct == pytest.approx(full.accuracy[t - 1])


@pytest.mark.parametrize("encoder", [Direct(), Poisson(seed=5)], ids=["direct", "poisson"])
@pytest.mark.parametrize("method", ["rmp", "snm"])
def test_chunk_size_does_not_change_anything(encoder, method):
    model = small_cnn()
    x, y = labelled(model, 20)
    snn = snnconvert.convert(model, x, method)
    runs = [snnconvert.simulate(snn, (x, y), 20, encoder=encoder, chunk_size=c) for c in (1, 3, 7, None)]
    first = records(runs[0])
    assert sum(first[2]) > 0 and all(sum(s) > 0 for _, _, s in first[1])
    for r in runs[1:]:
        assert records(r) == first
        assert r.static_macs_per_sample == runs[0].static_macs_per_sample


def test_poisson_seed_makes_runs_repeatable_and_different_seeds_differ():
    model = small_cnn()
    x, y = labelled(model, 10)
    snn = snnconvert.convert(model, x, "rmp")
    a = snnconvert.simulate(snn, (x, y), 8, encoder=Poisson(seed=1))
    b = snnconvert.simulate(snn, (x, y), 8, encoder=Poisson(seed=1))
    c = snnconvert.simulate(snn, (x, y), 8, encoder=Poisson(seed=2))
    assert records(a) == records(b)
    assert records(a)[2] != records(c)[2]
    with torch.no_grad():
        assert torch.equal(snn(x, 8, encoder=Poisson(seed=1)), snn(x, 8, encoder=Poisson(seed=1)))
        assert not torch.equal(snn(x, 8, encoder=Poisson(seed=1)), snn(x, 8, encoder=Poisson(seed=2)))


def test_poisson_rates_are_unbiased():
    x = torch.tensor([[0.9, -0.3, 0.0, 0.45]])
    s = Poisson().encode(x, 0, 4000, torch.Generator().manual_seed(0))
    assert s.shape == (4000, 1, 4)
    assert set(s.abs().unique().tolist()) <= {0.0, x[0, 0].item()}  # amplitude max |x| per sample
    torch.testing.assert_close(s.mean(0), x, atol=0.03, rtol=0)


def test_state_does_not_leak_between_batches():
    model = small_cnn()
    x, y = labelled(model, 50)
    snn = snnconvert.convert(model, x, "snm")
    small = snnconvert.simulate(snn, (x, y), 16, batch_size=5)
    large = snnconvert.simulate(snn, (x, y), 16, batch_size=50)
    assert small.samples == large.samples == 50
    assert small.accuracy == large.accuracy
    assert records(small)[1] == records(large)[1]
    assert small.synops_per_step == large.synops_per_step
    # and a sample's output does not depend on the batch it is in
    with torch.no_grad():
        torch.testing.assert_close(snn(x[:5], 16), snn(x, 16)[:5])


def test_forward_is_the_mean_of_the_per_step_outputs():
    model = small_cnn()
    x, _ = labelled(model, 6)
    snn = snnconvert.convert(model, x, "rmp")
    with torch.no_grad():
        steps = torch.cat(list(snn.run(x, 20, chunk_size=6)))
        assert steps.shape == (20, 6, 3)
        torch.testing.assert_close(snn(x, 20), steps.mean(0))
        torch.testing.assert_close(snn(x, 20, chunk_size=1), steps.mean(0))


# --- a network small enough to follow by hand --------------------------------------------------------------

def mlp():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()


def hand_simulation(model, x, theta, T):
    """Soft-reset IF hidden layer, written out: hidden spikes [T, N, 3] and outputs [T, N, 2]."""
    w1, b1, w2, b2 = model[0].weight, model[0].bias, model[2].weight, model[2].bias
    z = x @ w1.t() + b1
    v = torch.zeros_like(z)
    spikes, outs = [], []
    for _ in range(T):
        v = v + z
        s = (v >= theta).float()
        v = v - theta * s
        spikes.append(s)
        outs.append((theta * s) @ w2.t() + b2)
    return torch.stack(spikes), torch.stack(outs)


def test_outputs_spikes_and_synops_of_a_one_hidden_layer_net_by_hand():
    model = mlp()
    x = torch.randn(7, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    T = 12
    snn = snnconvert.convert(model, x, "rmp", threshold="max")
    theta = next(iter(snn.neurons().values())).threshold
    with torch.no_grad():
        hand_spikes, hand_out = hand_simulation(model, x, theta, T)
        torch.testing.assert_close(torch.cat(list(snn.run(x, T, chunk_size=5))), hand_out)
    res = snnconvert.simulate(snn, (x, y), T, ann=model, chunk_size=5)
    per_step = hand_spikes.sum((1, 2))  # summed over the batch
    assert len(res.layers) == 1 and res.layers[0].neurons == 3
    assert res.layers[0].spikes_per_step == per_step.tolist()
    # each hidden spike reaches the 2 output units: fan-out 2; the first layer gets the analog input
    assert res.synops_per_step == (2 * per_step).tolist()
    assert res.static_macs_per_sample == 4 * 3
    assert res.ann_macs_per_sample == 4 * 3 + 3 * 2
    assert res.ann_accuracy == 1.0
    hand_acc = [(hand_out[:t].sum(0).argmax(1) == y).double().mean().item() for t in range(1, T + 1)]
    assert res.accuracy == pytest.approx(hand_acc)
    # energy: 0.9 pJ per synaptic accumulate + 4.6 pJ per MAC of the analog first layer at each step
    for t in (1, 6, T):
        synops = 2 * per_step[:t].sum().item() / 7
        assert res.synops_per_sample(t) == pytest.approx(synops)
        assert res.energy_per_sample_pj(t) == pytest.approx(0.9 * synops + 4.6 * 12 * t)
    assert res.energy_per_sample_pj() == pytest.approx(res.energy_per_sample_pj(T))
    assert res.ann_energy_per_sample_pj() == pytest.approx(4.6 * 18)
    rate = per_step.sum().item() / (3 * 7 * T)
    assert res.firing_rate() == pytest.approx(rate)
    assert res.layers[0].firing_rate(7) == pytest.approx(rate)
    summary = res.summary(6)
    assert summary["energy_ratio_snn_to_ann"] == pytest.approx(res.energy_per_sample_pj(6) / (4.6 * 18))


def brute_force_fanout(conv: nn.Conv2d, c_in: int, h: int, w: int) -> torch.Tensor:
    """Count, for every input element, the (output channel, output position, kernel tap) triples reading it."""
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    ph, pw = conv.padding
    dh, dw = conv.dilation
    g = conv.groups
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group_in, per_group_out = c_in // g, conv.out_channels // g
    fan = torch.zeros(c_in, h, w)
    for o, i, j, a, b in itertools.product(range(conv.out_channels), range(out_h), range(out_w), range(kh), range(kw)):
        r, c = i * sh - ph + a * dh, j * sw - pw + b * dw
        if 0 <= r < h and 0 <= c < w:
            grp = o // per_group_out
            fan[grp * per_group_in:(grp + 1) * per_group_in, r, c] += 1
    return fan


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(2, 0), dilation=(1, 2), groups=2),
])
def test_fanout_map_matches_a_brute_force_count(kwargs):
    conv = nn.Conv2d(4, 6, **kwargs)
    torch.testing.assert_close(fanout_map(conv, (4, 7, 6)), brute_force_fanout(conv, 4, 7, 6))
    lin = nn.Linear(5, 3)
    torch.testing.assert_close(fanout_map(lin, (5,)), torch.full((5,), 3.0))


def test_synops_of_a_padded_strided_conv_fed_by_spikes():
    torch.manual_seed(4)
    conv1, conv2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 3, 3, stride=2, padding=1)
    model = nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 2)).eval()
    x = torch.randn(5, 1, 6, 6)
    with torch.no_grad():
        y = model(x).argmax(1)
    T = 10
    snn = snnconvert.convert(model, x, "rmp", threshold="max")
    theta = next(iter(snn.neurons().values())).threshold
    res = snnconvert.simulate(snn, (x, y), T, chunk_size=4)
    with torch.no_grad():  # the first neuron layer by hand: constant input conv1(x), soft reset
        z, v, s1 = conv1(x), torch.zeros(5, 2, 6, 6), []
        for _ in range(T):
            v = v + z
            s = (v >= theta).float()
            v = v - theta * s
            s1.append(s)
        s1 = torch.stack(s1)  # [T, N, 2, 6, 6]
    fan = brute_force_fanout(conv2, 2, 6, 6)
    assert res.layers[0].spikes_per_step == s1.sum((1, 2, 3, 4)).tolist()
    synops_conv2 = (s1 * fan).sum((1, 2, 3, 4))
    synops_fc = torch.tensor(res.layers[1].spikes_per_step) * 2
    expected = (synops_conv2 + synops_fc).double()
    torch.testing.assert_close(torch.tensor(res.synops_per_step, dtype=torch.float64), expected)
    assert res.static_macs_per_sample == brute_force_fanout(conv1, 1, 6, 6).sum().item()


@pytest.mark.parametrize("method", ["baseline", "rmp", "snm"])
def test_firing_rates_are_between_0_and_1(method):
    model = small_cnn()
    x, y = labelled(model, 20)
    snn = snnconvert.convert(model, x, method, scale=0.2)  # low thresholds: many neurons saturate
    res = snnconvert.simulate(snn, (x * 3, y), 12)
    rates = [la.firing_rate(res.samples) for la in res.layers] + [res.firing_rate(), res.firing_rate(3)]
    assert all(0.0 <= r <= 1.0 for r in rates)
    assert max(rates) > 0.3
    for la in res.layers:
        assert all(0 <= s <= la.neurons * res.samples for s in la.spikes_per_step)


def test_steps_to_reach():
    res = SimulationResult(T=6, samples=10, accuracy=[0.1, 0.5, 0.9, 0.8, 0.95, 0.96])
    assert res.steps_to_reach(0.9) == 5  # reached at 3 but lost at 4: the first t after which it stays
    assert res.steps_to_reach(0.5) == 2
    assert res.steps_to_reach(0.05) == 1
    assert res.steps_to_reach(0.96) == 6
    assert res.steps_to_reach(0.97) is None
    assert res.accuracy_at(3) == 0.9


def test_steps_to_reach_on_a_real_run():
    model = small_cnn()
    x, y = labelled(model, 30)
    snn = snnconvert.convert(model, x, "snm")
    res = snnconvert.simulate(snn, (x, y), 32, ann=model)
    assert res.ann_accuracy == pytest.approx(0.733, abs=0.01)  # 8 of 30 labels were made wrong
    target = res.accuracy[-1]
    t = res.steps_to_reach(target)
    assert t is not None and all(a >= target for a in res.accuracy[t - 1:])
    assert t == 1 or res.accuracy[t - 2] < target


def test_ann_macs_of_a_conv_net_without_padding():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 2, stride=2, groups=2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(6 * 2 * 2, 3)).eval()
    x = torch.randn(4, 2, 6, 6)
    with torch.no_grad():
        y = model(x).argmax(1)
    snn = snnconvert.convert(model, x, "rmp")
    res = snnconvert.simulate(snn, (x, y), 4, ann=model)
    conv1 = 4 * 4 * 4 * (2 * 3 * 3)  # out channels x out positions x inputs per output
    conv2 = 6 * 2 * 2 * (2 * 2 * 2)
    assert res.ann_macs_per_sample == conv1 + conv2 + 24 * 3
    assert res.static_macs_per_sample == conv1
    assert res.ann_accuracy == 1.0


def _trained_digits_snn(method="snm"):
    from snnconvert.data import dataset_as_tensors, get_dataset
    from snnconvert.models import create_model
    from snnconvert.training import TrainConfig, train

    torch.manual_seed(0)
    train_set = get_dataset("digits")
    model = train(create_model("digits_cnn"), train_set, TrainConfig(
        epochs=10, lr=3e-3, batch_size=64, optimizer="adamw", weight_decay=1e-4, progress=False)).model.eval()
    x_train, _ = dataset_as_tensors(train_set)
    test = dataset_as_tensors(get_dataset("digits", train=False))
    return sc.convert(model, x_train[:256], method), test


def test_early_exit_with_an_unreachable_rule_equals_the_fixed_run():
    snn, (x, y) = _trained_digits_snn()
    x, y = x[:120], y[:120]
    fixed = sc.simulate(snn, (x, y), 24, chunk_size=4)
    never = sc.simulate(snn, (x, y), 24, chunk_size=4,
                        exit_when=sc.ExitWhenStable(patience=100))
    assert never.accuracy == fixed.accuracy
    assert never.mean_steps == 24 and never.exit_steps_histogram[-1] == 120
    assert never.synops_per_step == fixed.synops_per_step


def test_early_exit_stops_settled_samples_and_saves_work():
    snn, (x, y) = _trained_digits_snn()
    fixed = sc.simulate(snn, (x, y), 32)
    early = sc.simulate(snn, (x, y), 32, exit_when=sc.ExitWhenStable())
    assert early.mean_steps < 32
    assert sum(early.exit_steps_histogram) == len(y)
    assert early.synops_per_sample() < fixed.synops_per_sample()
    # an exited sample keeps its prediction: the early-exit accuracy never falls far below the fixed run
    assert early.accuracy[-1] >= fixed.accuracy[-1] - 0.03
    with pytest.raises(sc.ConfigError, match="confidence"):
        sc.ExitWhenStable(confidence=1.5)
    with pytest.raises(sc.ConfigError, match="window"):
        sc.ExitWhenStable(window=0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 300), st.sampled_from(["layer", "channel", "neuron"]),
       st.floats(1e-3, 1e3), st.floats(0.0, 1.0))
def test_spike_counts_from_sums_equal_counts_of_nonzeros(steps, batch, granularity, scale, rate):
    """Unsigned neurons' spikes are counted as round(sum / theta) in one pass: exactly the number of
    nonzero entries, per step and per position (those feed the synops of the next layer)."""
    from snnconvert.simulation.record import Recorder

    gen = torch.Generator().manual_seed(batch * 7 + steps)
    shape = {"layer": (), "channel": (6, 1, 1), "neuron": (6, 3, 3)}[granularity]
    thr = (torch.rand(shape, generator=gen) + 0.01) * scale
    out = (torch.rand(steps, batch, 6, 3, 3, generator=gen) < rate).float() * thr
    by_marks, by_sums = Recorder(), Recorder()
    by_marks.count_spikes("l", out)
    by_sums.count_spikes("l", out, thr)
    assert torch.equal(by_marks.spikes["l"], by_sums.spikes["l"])
    assert torch.equal(by_marks._last[2], by_sums._last[2])
