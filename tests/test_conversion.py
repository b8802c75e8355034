"""Conversion: what becomes a neuron, what is removed or folded, what is refused, spike-gated max pooling."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnconvert
from snnconvert import UnsupportedOperationError
from snnconvert.neurons import SpikingMaxPool


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so folding is really exercised."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.3, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model


# --- which activations become neurons --------------------------------------------------------------

class Act(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)
        self.act = nn.ReLU(inplace=kind == "inplace")

    def forward(self, x):
        h = self.fc1(x)
        if self.kind in ("module", "inplace"):
            h = self.act(h)
        elif self.kind == "F.relu":
            h = F.relu(h)
        elif self.kind == "torch.relu":
            h = torch.relu(h)
        elif self.kind == "method":
            h = h.relu()
        elif self.kind == "clamp":
            h = h.clamp(min=0)
        return self.fc2(h)


@pytest.mark.parametrize("kind", ["module", "inplace", "F.relu", "torch.relu", "method", "clamp"])
def test_every_relu_spelling_becomes_one_neuron(kind):
    model = Act(kind)
    x = torch.randn(32, 4)
    snn = snnconvert.convert(model, x, "rmp", threshold="max")
    neurons = snn.neurons()
    assert len(neurons) == 1
    assert isinstance(next(iter(neurons.values())), snnconvert.IFNeuron)
    with torch.no_grad():
        assert rel_err(snn(x, 256), model(x)) < 0.02


def test_all_spellings_in_one_model_give_six_neurons():
    class Six(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.ModuleList(nn.Linear(6, 6) for _ in range(7))
            self.r, self.ri = nn.ReLU(), nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.r(self.fc[0](x))
            x = self.ri(self.fc[1](x))
            x = F.relu(self.fc[2](x))
            x = torch.relu(self.fc[3](x))
            x = self.fc[4](x).relu()
            x = self.fc[5](x).clamp(min=0)
            return self.fc[6](x)

    snn = snnconvert.convert(Six(), torch.randn(16, 6), "snm")
    assert len(snn.neurons()) == 6
    assert all(isinstance(n, snnconvert.SNMNeuron) for n in snn.neurons().values())


def test_clamp_with_a_max_converts_capped_and_a_negative_min_is_refused():
    class Clip(nn.Module):
        def __init__(self, lo: float):
            super().__init__()
            self.fc, self.out, self.lo = nn.Linear(4, 4), nn.Linear(4, 2), lo

        def forward(self, x):
            return self.out(self.fc(x).clamp(min=self.lo, max=1))

    snn = snnconvert.convert(Clip(0.0), torch.randn(8, 4), "snm")  # clamp(0, 1): a clipped ReLU
    assert [n.threshold_cap for n in snn.neurons().values()] == [1.0]
    with pytest.raises(UnsupportedOperationError, match=r"\.clamp\(x, min=-1.0, max=1\).*not ReLU-like"):
        snnconvert.convert(Clip(-1.0), torch.randn(8, 4), "snm")


class BasicBlock(nn.Module):
    """torchvision BasicBlock style: one self.relu module called twice."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class BlockNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.stem_relu = nn.ReLU()
        self.block = BasicBlock(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem_relu(self.stem(x)))), 1))


def test_a_reused_relu_module_gives_independent_neurons():
    torch.manual_seed(1)
    model = randomize_bn(BlockNet()).eval()
    cal, x = torch.randn(48, 2, 6, 6), torch.randn(8, 2, 6, 6)
    snn = snnconvert.convert(model, cal, "rmp")
    neurons = snn.neurons()
    assert len(neurons) == 3  # stem + the block's relu twice
    mods = list(neurons.values())
    assert len({id(m) for m in mods}) == 3
    # separately calibrated: the two uses of block.relu see different inputs and get different thresholds
    assert mods[1].threshold.item() != mods[2].threshold.item()
    with torch.no_grad():
        assert rel_err(snn(x, 512), model(x)) < 0.05


# --- the user's model is left alone -----------------------------------------------------------------

def test_the_input_model_is_not_modified():
    torch.manual_seed(2)
    model = randomize_bn(BlockNet())
    model.train()
    before = copy.deepcopy(model.state_dict())
    snn = snnconvert.convert(model, torch.randn(16, 2, 6, 6), "rmp")
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k  # running stats included: calibration ran in eval mode
    assert isinstance(model.block.bn1, nn.BatchNorm2d) and isinstance(model.block.bn2, nn.BatchNorm2d)
    assert model.block.relu.inplace
    # the SNN's weights are copies: changing them leaves the model alone
    for p in snn.parameters():
        p.data.add_(1.0)
    for k in before:
        assert torch.equal(before[k], model.state_dict()[k]), k


# --- removed, folded, refused ---------------------------------------------------------------------------

def test_dropout_is_removed():
    class Drop(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.drop, self.fc2 = nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)
            self.drop2d = nn.Dropout2d(0.3)

        def forward(self, x):
            h = self.drop(F.relu(self.fc1(x)))
            h = F.dropout(h, 0.5, training=self.training)
            return self.fc2(h)

    model = Drop().train()
    prog = snnconvert.trace(model)
    assert not any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in prog.modules())
    assert [n.kind for n in prog.nodes] == ["input", "layer", "activation", "layer", "output"]
    x = torch.randn(10, 4)
    torch.testing.assert_close(prog(x), model.eval()(x))
    snn = snnconvert.convert(Drop().train(), x, "snm")
    assert len(snn.neurons()) == 1


class Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.gelu = nn.Linear(4, 4), nn.GELU()

    def forward(self, x):
        return self.gelu(self.fc(x))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.fc = nn.LSTM(4, 4, batch_first=True), nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(F.relu(out))


@pytest.mark.parametrize("model, x, node", [
    (Sigmoid(), torch.randn(4, 4), "sigmoid"),
    (Gelu(), torch.randn(4, 4), "gelu"),
    (Recurrent(), torch.randn(4, 3, 4), "lstm"),
])
def test_unsupported_operations_are_named(model, x, node):
    with pytest.raises(UnsupportedOperationError, match=rf"'{node}'.*Supported:"):
        snnconvert.convert(model, x, "rmp")
    with pytest.raises(UnsupportedOperationError, match=rf"'{node}'"):
        snnconvert.trace(model)


def test_data_dependent_control_flow_is_refused():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            h = F.relu(self.fc(x))
            if h.sum() > 0:
                return h
            return -h

    with pytest.raises(UnsupportedOperationError, match="control flow"):
        snnconvert.convert(Branchy(), torch.randn(4, 4), "snm")


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 4, 3, stride=2, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))


class LinearBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(7, 9), nn.BatchNorm1d(9)
        self.fc2, self.bn2 = nn.Linear(9, 5, bias=False), nn.BatchNorm1d(5)
        self.fc3 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc3(F.relu(self.bn2(self.fc2(F.relu(self.bn1(self.fc1(x)))))))


@pytest.mark.parametrize("make, shape", [(ConvBN, (6, 3, 7, 7)), (LinearBN, (6, 7))])
def test_batch_norm_folding_is_exact(make, shape):
    torch.manual_seed(3)
    model = randomize_bn(make()).train()  # folding must use the running stats, not batch stats
    x = torch.randn(*shape)
    prog = snnconvert.trace(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in prog.modules())
    with torch.no_grad():
        expected = copy.deepcopy(model).eval()(x)
        torch.testing.assert_close(prog(x), expected, atol=1e-5, rtol=1e-5)


def test_batch_norm_that_cannot_be_folded_is_kept_and_correct():
    class BNFirst(nn.Module):  # BN on the input and after an add: nothing to fold into
        def __init__(self):
            super().__init__()
            self.bn0, self.conv, self.bn1 = nn.BatchNorm2d(2), nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)
            self.fc = nn.Linear(2 * 5 * 5, 3)

        def forward(self, x):
            x = self.bn0(x)
            x = self.bn1(self.conv(x) + x)
            return self.fc(F.relu(x).flatten(1))

    torch.manual_seed(4)
    model = randomize_bn(BNFirst()).eval()
    x = torch.randn(64, 2, 5, 5)
    prog = snnconvert.trace(model)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in prog.modules()) == 2
    with torch.no_grad():
        torch.testing.assert_close(prog(x), model(x), atol=1e-5, rtol=1e-5)
        snn = snnconvert.convert(model, x, "rmp", threshold="max")
        assert rel_err(snn(x[:8], 512), model(x[:8])) < 0.02


def test_strided_padded_dilated_grouped_conv():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2)
            self.bn = nn.BatchNorm2d(6)
            self.conv2 = nn.Conv2d(6, 4, 3, stride=1, padding=1, groups=2)
            self.fc = nn.Linear(4 * 5 * 5, 3)

        def forward(self, x):
            x = F.relu(self.bn(self.conv1(x)))
            return self.fc(F.relu(self.conv2(x)).flatten(1))

    torch.manual_seed(5)
    model = randomize_bn(Odd()).eval()
    cal, x = torch.randn(48, 4, 9, 9), torch.randn(8, 4, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(snnconvert.trace(model)(x), model(x), atol=1e-5, rtol=1e-5)
        snn = snnconvert.convert(model, cal, "rmp", threshold="max")
        assert rel_err(snn(x, 512), model(x)) < 0.03


def test_upsampling_cat_and_adaptive_pooling_convert():
    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(2, 4, 3, stride=2, padding=1)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.side = nn.Conv2d(2, 3, 1)
            self.mix = nn.Conv2d(7 + 4, 5, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d((2, 2))
            self.fc = nn.Linear(5 * 4, 3)

        def forward(self, x):
            d = F.relu(self.down(x))
            u = self.up(d)
            b = F.interpolate(d, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = torch.cat([u, F.relu(self.side(x)), b], dim=1)
            return self.fc(torch.flatten(self.pool(F.relu(self.mix(y))), 1))

    torch.manual_seed(6)
    model = Seg().eval()
    cal, x = torch.randn(48, 2, 8, 8), torch.randn(8, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(snnconvert.trace(model)(x), model(x), atol=1e-6, rtol=1e-5)
        snn = snnconvert.convert(model, cal, "rmp", threshold="max")
        assert len(snn.neurons()) == 3
        assert rel_err(snn(x, 512), model(x)) < 0.03


# --- spike-gated max pooling ----------------------------------------------------------------------------

def spikes(*trains):
    """Spike trains [T] per input -> [T, N=1, C=1, 1, len(trains)] for a (1, k) max pool."""
    return torch.stack([torch.tensor(t, dtype=torch.float32) for t in trains], -1).view(len(trains[0]), 1, 1, 1, -1)


@pytest.mark.parametrize("a, b", [([1, 0] * 8, [0, 1] * 8), ([0, 1] * 8, [1, 0] * 8)])
def test_max_pool_of_alternating_equal_rates_is_that_rate(a, b):
    x = spikes(a, b)
    naive = F.max_pool2d(x.flatten(0, 1), (1, 2)).mean().item()
    gated = SpikingMaxPool(nn.MaxPool2d((1, 2)))(x)
    assert naive == 1.0  # an ANN max passes the union of the spikes
    assert gated.mean().item() == 0.5
    assert set(gated.unique().tolist()) <= {0.0, 1.0}  # still a spike train


def test_max_pool_follows_the_faster_input():
    a = [1, 0, 0, 0] * 6  # rate 0.25, spikes first
    b = [0, 1, 0, 1] * 6  # rate 0.5
    out = SpikingMaxPool(nn.MaxPool2d((1, 2)))(spikes(a, b)).view(-1)
    assert out.sum().item() == 12  # the max count, not the union (18)
    acc_a, acc_b = torch.tensor(a).cumsum(0), torch.tensor(b).cumsum(0)
    assert out.cumsum(0).tolist() == torch.maximum(acc_a, acc_b).float().tolist()


def test_max_pool_output_sums_to_the_max_of_summed_inputs_and_streams_in_chunks():
    torch.manual_seed(7)
    theta = torch.tensor(0.7).item()  # the float32 value
    x = torch.bernoulli(torch.rand(1, 2, 3, 7, 7).expand(40, 2, 3, 7, 7)) * theta  # [T, N, C, H, W]
    x[5:9] *= -1  # signed spikes too
    pool = nn.MaxPool2d(3, stride=2, padding=1)
    whole = SpikingMaxPool(pool)(x)
    ref = F.max_pool2d(x.cumsum(0).flatten(0, 1), 3, 2, 1).view(40, 2, 3, 4, 4)
    torch.testing.assert_close(whole.cumsum(0), ref, atol=1e-5, rtol=0)
    assert set(whole.unique().tolist()) <= {-theta, 0.0, theta}
    p = SpikingMaxPool(pool)
    chunked = torch.cat([p(x[:1]), p(x[1:8]), p(x[8:])])
    assert torch.equal(chunked, whole)
    p.reset()
    assert torch.equal(p(x[:3]), whole[:3])
    torch.testing.assert_close(SpikingMaxPool(pool).static_forward(x[0]), pool(x[0]))


class NaiveMaxPool(nn.Module):
    """What a plain ANN max pool over spike trains would do (for comparison only)."""

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def reset(self):
        pass

    def static_forward(self, x):
        return self.pool(x)

    def forward(self, x):
        y = self.pool(x.flatten(0, 1))
        return y.view(x.shape[0], x.shape[1], *y.shape[1:])


@pytest.mark.parametrize("method, overrides", [("rmp", {"threshold": "max"}), ("rmp", {}), ("snm", {})])
def test_spiking_max_pool_in_a_network_is_close_to_the_ann(method, overrides):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(6 * 2 * 2, 5)).eval()
    cal = torch.randn(64, 2, 8, 8)
    x = cal[:16] if method == "snm" else torch.randn(16, 2, 8, 8)  # neuron-wise max clips unseen inputs
    snn = snnconvert.convert(model, cal, method, **overrides)
    pools = [k for k, m in snn.program.layers.items() if isinstance(m, SpikingMaxPool)]
    assert len(pools) == 2
    with torch.no_grad():
        ann = model(x)
        err = rel_err(snn(x, 512), ann)
        for k in pools:
            snn.program.layers[k] = NaiveMaxPool(snn.program.layers[k].pool)
        naive = rel_err(snn(x, 512), ann)
    assert err < 0.03
    assert naive > 5 * err
