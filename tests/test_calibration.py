"""Threshold calibration against statistics computed directly with torch / numpy."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnconvert
from snnconvert import Granularity, LayerInputMax, Max, Percentile
from snnconvert.calibration.observers import HistogramObserver, MaxObserver, default_bins


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 4, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        a1 = F.relu(self.conv(x))
        a2 = F.relu(self.fc1(F.avg_pool2d(a1, 2).flatten(1)))
        return self.fc2(a2)

    def activations(self, x):
        """The two ANN activations, computed directly (no snnconvert)."""
        z1 = self.conv(x)
        a1 = F.relu(z1)
        z2 = self.fc1(F.avg_pool2d(a1, 2).flatten(1))
        return z1, a1, z2, F.relu(z2)


def make(seed=0):
    torch.manual_seed(seed)
    model = Net().eval()
    data = torch.randn(64, 2, 8, 8)
    return model, data


def expected_max(a: torch.Tensor, granularity: str) -> torch.Tensor:
    if granularity == "layer":
        return a.max()
    if granularity == "channel":
        m = a.transpose(0, 1).flatten(1).amax(1)
        return m.view(-1, *([1] * (a.dim() - 2)))
    return a.amax(0)


@pytest.mark.parametrize("granularity", ["layer", "channel", "neuron"])
def test_max_equals_the_torch_max_over_the_data(granularity):
    model, data = make()
    prog = snnconvert.trace(model)
    calib = snnconvert.calibrate(prog, data, Max(), granularity, batch_size=16)  # 4 batches, streamed
    with torch.no_grad():
        _, a1, _, a2 = model.activations(data)
    names = [n.name for n in prog.activation_nodes()]
    assert len(names) == 2 and calib.samples == 64
    for name, a in zip(names, (a1, a2)):
        exp = expected_max(a, granularity)
        thr = calib.thresholds[name]
        assert thr.shape == exp.shape
        alive = exp > 0
        torch.testing.assert_close(thr[alive], exp[alive], rtol=1e-6, atol=1e-6)
        assert (thr[~alive] == exp.max()).all()  # never active in calibration: the layer's largest


@pytest.mark.parametrize("q", [99.9, 50.0])
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_percentile_is_within_one_bin_of_numpy(q, granularity):
    model, data = make(1)
    data = torch.cat([data, torch.randn(192, 2, 8, 8)])
    prog = snnconvert.trace(model)
    calib = snnconvert.calibrate(prog, data, Percentile(q), granularity, batch_size=50)
    with torch.no_grad():
        _, a1, _, a2 = model.activations(data)
    for name, a in zip([n.name for n in prog.activation_nodes()], (a1, a2)):
        thr = calib.thresholds[name]
        if granularity == "layer":
            groups = [a.flatten()]
        else:
            groups = list(a.transpose(0, 1).flatten(1))
        bins = default_bins(len(groups))
        assert thr.numel() == len(groups)
        for g, t in zip(groups, thr.flatten()):
            pos = g[g > 0].numpy().astype(np.float64)
            width = g.max().item() / bins
            # the documented bound (one bin) holds for the empirical quantile itself (inverse CDF) ...
            assert abs(t.item() - np.percentile(pos, q, method="inverted_cdf")) <= width + 1e-6, (name, q)
            # ... and numpy's default (linear interpolation) differs from it by less than one gap
            # between neighbouring sorted values, which in a sparse tail can exceed a bin
            lo, hi = np.percentile(pos, q, method="lower"), np.percentile(pos, q, method="higher")
            assert lo - width - 1e-6 <= t.item() <= hi + width + 1e-6
            assert abs(t.item() - np.percentile(pos, q)) <= (hi - lo) + width + 1e-6


def test_observer_memory_does_not_grow_with_the_number_of_batches():
    for gran in Granularity:
        one, ten = MaxObserver(gran), MaxObserver(gran)
        one.update(torch.rand(8, 3, 5, 5), "a")
        for _ in range(10):
            ten.update(torch.rand(8, 3, 5, 5), "a")
        assert one.max.shape == ten.max.shape
        assert one.compute().shape == ten.compute().shape == gran.group_shape((3, 5, 5))
        h1 = HistogramObserver(gran, one.compute(), 64)
        h10 = HistogramObserver(gran, ten.compute(), 64)
        h1.update(torch.rand(8, 3, 5, 5))
        for _ in range(10):
            h10.update(torch.rand(8, 3, 5, 5))
        assert h1.counts.shape == h10.counts.shape
        assert h10.counts.sum() == 10 * h1.counts.sum()  # all positive values were counted


def test_calibration_over_more_batches_gives_the_same_threshold_shapes():
    model, data = make()
    prog = snnconvert.trace(model)
    few = snnconvert.calibrate(prog, data[:8], Percentile(99), "neuron", batch_size=8)
    many = snnconvert.calibrate(prog, data, Percentile(99), "neuron", batch_size=4)  # 16 batches
    assert {k: v.shape for k, v in few.thresholds.items()} == {k: v.shape for k, v in many.thresholds.items()}
    assert many.samples == 64 and few.samples == 8


@pytest.mark.parametrize("granularity", ["layer", "channel", "neuron"])
def test_scale_multiplies_thresholds(granularity):
    model, data = make()
    prog = snnconvert.trace(model)
    base = snnconvert.calibrate(prog, data, Max(), granularity)
    half = snnconvert.calibrate(prog, data, Max(), granularity, scale=0.5)
    assert half.scale == 0.5
    for k in base.thresholds:
        torch.testing.assert_close(half.thresholds[k], 0.5 * base.thresholds[k])
    snn = snnconvert.convert(model, data, "snm", scale=0.3)
    snn1 = snnconvert.convert(model, data, "snm")
    for a, b in zip(snn.neurons().values(), snn1.neurons().values()):
        torch.testing.assert_close(a.threshold, 0.3 * b.threshold)


def test_rmp_scale_multiplies_the_first_threshold():
    model, data = make()
    a = list(snnconvert.convert(model, data, "rmp").neurons().values())
    b = list(snnconvert.convert(model, data, "rmp", scale=0.5).neurons().values())
    torch.testing.assert_close(b[0].threshold, 0.5 * a[0].threshold)


def test_dead_neurons_and_dead_layers_get_a_positive_threshold():
    model, data = make()
    with torch.no_grad():
        model.conv.bias[1] = -100.0  # channel 1 never fires
        model.fc1.bias.fill_(-1000.0)  # the whole second layer is dead
    prog = snnconvert.trace(model)
    for gran in ("layer", "channel", "neuron"):
        for rule in (Max(), Percentile(99.9)):
            calib = snnconvert.calibrate(prog, data, rule, gran)
            for thr in calib.thresholds.values():
                assert torch.isfinite(thr).all() and (thr > 0).all()
    calib = snnconvert.calibrate(prog, data, Max(), "channel")
    first, second = calib.thresholds.values()
    assert first[1].item() == first.max().item()
    snn = snnconvert.convert(model, data, "snm")  # neuron-wise, the conversion itself works
    with torch.no_grad():
        assert torch.isfinite(snn(data[:4], 8)).all()
    snn = snnconvert.convert(model, data, "rmp")
    assert all((n.threshold > 0).all() for n in snn.neurons().values())


def test_rmp_thresholds_are_the_maximum_layer_input():
    model, data = make()
    snn = snnconvert.convert(model, data, "rmp", calibration_steps=16)
    (_, first), (_, second) = snn.neurons().items()
    with torch.no_grad():
        z1, _, _, a2 = model.activations(data)
    # direct input: the first layer's input is the same at every step, its ANN pre-activation
    torch.testing.assert_close(first.threshold, z1.max(), rtol=1e-6, atol=1e-6)
    # later layers see spike trains: their per-step input peaks at or above the ANN activation
    assert second.threshold.item() >= a2.max().item()
    assert snn.method["rule"].startswith("layer input max over 16")


def test_rmp_layer_input_max_per_channel():
    model, data = make()
    snn = snnconvert.convert(model, data, "rmp", granularity="channel")
    first = next(iter(snn.neurons().values()))
    with torch.no_grad():
        z1 = model.activations(data)[0]
    exp = z1.transpose(0, 1).flatten(1).amax(1).view(4, 1, 1)
    alive = exp > 0
    torch.testing.assert_close(first.threshold[alive], exp[alive], rtol=1e-6, atol=1e-6)
    assert isinstance(snnconvert.resolve_method("rmp").rule, LayerInputMax)
