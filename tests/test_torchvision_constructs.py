"""The constructs of torchvision's classification models, written out by hand (torchvision itself is
tested in test_torchvision_models.py where it is installed): clipped ReLUs (MobileNetV2's ReLU6),
non-ReLU activations refused by name, channel shuffle (ShuffleNetV2), dense concatenation with batch
norm after the concatenation (DenseNet), inception branches and transform_input (GoogLeNet,
Inception-v3), grouped and depthwise convolutions (ResNeXt, RegNet, MnasNet), fire modules
(SqueezeNet). The expectation is independent of the converter: the SNN's mean output at large T
approaches the ANN's output, with a relative error that is small and shrinks as T grows."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnconvert
from snnconvert.errors import UnsupportedOperationError
from snnconvert.graph import ClippedReLU, LAYER

# soft reset, V(0) = theta/2, max thresholds: the conversion whose error is only rate quantisation
EXACT = dict(method="baseline", neuron="if_soft", v_init=0.5)


def relative_error(snn: snnconvert.SpikingModel, ann: nn.Module, x: torch.Tensor, T: int) -> float:
    with torch.no_grad():
        y = ann.eval()(x)
        return float((snn(x, T) - y).norm() / y.norm())


def assert_converges(ann: nn.Module, x: torch.Tensor, small: float = 0.01, **method) -> snnconvert.SpikingModel:
    """Convert with thresholds from x; the error at T = 256 is below `small` and below the one at T = 16."""
    snn = snnconvert.convert(ann, x, **(method or EXACT))
    coarse, fine = relative_error(snn, ann, x, 16), relative_error(snn, ann, x, 256)
    assert fine < small, (coarse, fine)
    assert fine < coarse, (coarse, fine)
    return snn


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Eval-mode batch-norm statistics and affine parameters that are not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)
    return model.eval()


# ----------------------------------------------------------------- clipped ReLUs (ReLU6, Hardtanh(0, a), clamp)

class Clipped(nn.Module):
    """Linear -> one spelling of min(max(x, 0), a) -> Linear."""

    def __init__(self, kind: str, a: float = 1.5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.out, self.kind, self.a = nn.Linear(6, 16), nn.Linear(16, 3), kind, a
        self.act = {"ReLU6": nn.ReLU6(inplace=True), "Hardtanh": nn.Hardtanh(0.0, a)}.get(kind, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, a = self.fc(x), self.a
        if self.kind in ("ReLU6", "Hardtanh"):
            h = self.act(h)
        elif self.kind == "F.relu6":
            h = F.relu6(h)
        elif self.kind == "F.hardtanh":
            h = F.hardtanh(h, 0.0, a)
        elif self.kind == "torch.clamp":
            h = torch.clamp(h, 0, a)
        elif self.kind == ".clamp":
            h = h.clamp(min=0, max=a)
        elif self.kind == ".clip_":
            h = h.clip_(0.0, a)
        return self.out(h)


CLIPS = [("ReLU6", 6.0), ("F.relu6", 6.0), ("Hardtanh", 1.5), ("F.hardtanh", 1.5), ("torch.clamp", 1.5),
         (".clamp", 1.5), (".clip_", 1.5)]


@pytest.mark.parametrize("kind, cap", CLIPS)
def test_every_spelling_of_a_clipped_relu_traces_to_one_capped_activation(kind, cap):
    model = Clipped(kind).eval()
    program = snnconvert.trace(model)
    [node] = program.activation_nodes()
    assert isinstance(program.layers[node.target], ClippedReLU) and program.layers[node.target].cap == cap
    x = torch.randn(32, 6) * 4
    torch.testing.assert_close(program(x), model(x))


@pytest.mark.parametrize("kind, cap", CLIPS)
def test_a_clipped_relu_converts_with_its_threshold_capped(kind, cap):
    model = Clipped(kind).eval()
    x = torch.randn(64, 6) * 4  # many inputs beyond the clip
    snn = assert_converges(model, x)
    [neuron] = snn.neurons().values()
    assert neuron.threshold_cap == cap and float(neuron.threshold) <= cap


def test_the_neuron_saturates_exactly_at_the_clip_whatever_the_rule():
    """Pre-activations far above a: the ANN outputs W a + b; a threshold above a (here a fixed 100) is
    capped at a, so every step spikes and the SNN's mean output is exactly W a + b."""
    model = Clipped("Hardtanh", a=1.5).eval()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.fill_(10.0)
    x = torch.randn(4, 6)
    for overrides in (dict(threshold=100.0), dict(scale=3.0), {}):
        snn = snnconvert.convert(model, x, **{**EXACT, **overrides})
        torch.testing.assert_close(snn(x, 8), model(x))


@pytest.mark.parametrize("method", ["baseline", "rmp", "snm", "calibrated"])
def test_the_cap_holds_for_every_preset_and_threshold_rule(method):
    torch.manual_seed(0)
    model = randomise_bn(nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU6(), nn.Linear(16, 3)))
    with torch.no_grad():
        model[1].weight.mul_(8.0)  # mean + 3 std of the batch norm's output (bn_stats) far above 6
    x = torch.randn(64, 6) * 8
    for overrides in ({}, dict(threshold="bn_stats"), dict(threshold=50.0), dict(scale=2.0, granularity="neuron")):
        snn = snnconvert.convert(model, x, method, **overrides)
        [neuron] = snn.neurons().values()
        assert float(neuron.threshold.max()) <= 6.0, (method, overrides)


def test_scale_multiplies_the_rule_then_the_cap_applies():
    model = Clipped("Hardtanh", a=1.5).eval()
    x = torch.randn(64, 6) * 4
    plain = snnconvert.convert(model, x, **EXACT, granularity="neuron")
    half = snnconvert.convert(model, x, **EXACT, granularity="neuron", scale=0.5)
    double = snnconvert.convert(model, x, **EXACT, granularity="neuron", scale=2.0)
    [theta], [theta_half], [theta_double] = ([n.threshold for n in s.neurons().values()] for s in (plain, half, double))
    torch.testing.assert_close(theta_half, theta * 0.5)
    torch.testing.assert_close(theta_double, (theta * 2.0).clamp(max=1.5))


def test_the_cap_survives_save_and_load_and_later_thresholds(tmp_path):
    model = Clipped("ReLU6").eval()
    x = torch.randn(32, 6) * 8
    snn = snnconvert.convert(model, x, **EXACT)
    loaded = snnconvert.load(snnconvert.save(snn, tmp_path / "snn"))
    [neuron] = loaded.neurons().values()
    assert neuron.threshold_cap == 6.0
    torch.testing.assert_close(loaded(x, 32), snn(x, 32))
    neuron.threshold = torch.tensor(9.0)  # threshold balancing assigns thresholds like this
    assert float(neuron.threshold) == 6.0


def test_quantize_starts_a_clipped_relus_alpha_inside_the_clip():
    model = Clipped("Hardtanh", a=1.5).eval()
    qann = snnconvert.quantize(model, 3)  # default alpha 6 would exceed the clip
    assert [float(m.alpha.detach()) for m in qann.modules() if hasattr(m, "alpha")] == [1.5]


# ----------------------------------------------------------------- non-ReLU activations: refused by name

class Activated(nn.Module):
    def __init__(self, act) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4))
        self.act = act if isinstance(act, nn.Module) else nn.Identity()
        self.fn = None if isinstance(act, nn.Module) else act
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(x)
        h = self.act(h) if self.fn is None else self.fn(h)
        return self.out(F.relu(h))


@pytest.mark.parametrize("act, name, where", [
    (nn.SiLU(), "SiLU", "at 'act'"), (nn.GELU(), "GELU", "at 'act'"), (nn.Hardswish(), "Hardswish", "at 'act'"),
    (nn.Sigmoid(), "Sigmoid", "at 'act'"), (nn.Tanh(), "Tanh", "at 'act'"), (nn.LeakyReLU(), "LeakyReLU", "at 'act'"),
    (nn.Hardtanh(), "Hardtanh(min_val=-1, max_val=1)", "at 'act'"), (nn.ELU(), "ELU", "at 'act'"),
    (F.silu, "F.silu", "model's own forward"), (F.gelu, "F.gelu", "model's own forward"),
    (torch.sigmoid, "torch.sigmoid", "model's own forward"), (lambda h: h.tanh(), ".tanh()", "model's own forward"),
    (lambda h: F.leaky_relu(h, 0.1), "F.leaky_relu", "model's own forward"),
    (lambda h: F.hardtanh(h, -2.0, 2.0), "hardtanh(x, min_val=-2.0, max_val=2.0)", "model's own forward"),
])
def test_non_relu_activations_are_refused_with_their_name_and_location(act, name, where):
    with pytest.raises(UnsupportedOperationError, match="not ReLU-like") as e:
        snnconvert.convert(Activated(act), torch.randn(8, 4))
    assert name in str(e.value) and where in str(e.value)


def test_squeeze_excite_with_silu_and_sigmoid_is_refused_counting_every_activation():
    """EfficientNet's block: SiLU activations, and a squeeze-excite gate with a Sigmoid, inside submodules."""
    class SqueezeExcite(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.act, self.gate = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1), nn.SiLU(), nn.Sigmoid()

        def forward(self, x):
            return x * self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.SiLU(), SqueezeExcite(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 2))
    with pytest.raises(UnsupportedOperationError, match=r"SiLU at '1'.*3 non-ReLU activations \(SiLU x 2, Sigmoid x 1\)"):
        snnconvert.trace(model)


# ----------------------------------------------------------------- torchvision structures

class ChannelShuffle(nn.Module):
    """ShuffleNetV2's unit (stride 1): chunk, branch, cat, channel_shuffle via size/floordiv/view/transpose."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        half = c // 2
        self.stem = nn.Sequential(*conv_bn(3, c), nn.ReLU(inplace=True))
        self.branch = nn.Sequential(*conv_bn(half, half, 1), nn.ReLU(inplace=True), *conv_bn(half, half, 3, groups=half),
                                    *conv_bn(half, half, 1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(c, 5)

    @staticmethod
    def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
        batch, channels, height, width = x.size()
        x = x.view(batch, groups, channels // groups, height, width)
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(batch, channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x1, x2 = x.chunk(2, dim=1)
        x = self.shuffle(torch.cat((x1, self.branch(x2)), dim=1), 2)
        return self.fc(x.mean([2, 3]))


class DenseBlock(nn.Module):
    """DenseNet: BN-ReLU-conv layers reading the concatenation of every earlier output; the BN after a
    concatenation has no conv to fold into and stays an affine layer; transition BN-ReLU-conv-avgpool."""

    def __init__(self, growth: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(*conv_bn(3, 8), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        c = 8
        self.layers = nn.ModuleList()
        for _ in range(layers):
            self.layers.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, growth, 3, padding=1)))
            c += growth
        self.transition = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c // 2, 1), nn.AvgPool2d(2))
        self.norm = nn.BatchNorm2d(c // 2)
        self.fc = nn.Linear(c // 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.conv0(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        out = F.relu(self.norm(self.transition(torch.cat(features, 1))), inplace=True)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1))


class Inception(nn.Module):
    """GoogLeNet / Inception-v3: transform_input (per-channel affine via x[:, i], unsqueeze, cat), then
    branches of 1x1, 3x3, 5x5 convs, a max-pool branch and an avg-pool branch, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8), nn.ReLU(inplace=True))
        self.b1 = nn.Sequential(*conv_bn(8, 4, 1), nn.ReLU(inplace=True))
        self.b3 = nn.Sequential(*conv_bn(8, 4, 1), nn.ReLU(inplace=True), *conv_bn(4, 4, 3), nn.ReLU(inplace=True))
        self.b5 = nn.Sequential(*conv_bn(8, 2, 1), nn.ReLU(inplace=True), *conv_bn(2, 4, 5), nn.ReLU(inplace=True))
        self.bpool = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), *conv_bn(8, 4, 1), nn.ReLU(inplace=True))
        self.bavg = nn.Sequential(*conv_bn(8, 4, 1), nn.ReLU(inplace=True))
        self.dropout, self.fc = nn.Dropout(0.5), nn.Linear(20, 5)

    @staticmethod
    def transform_input(x: torch.Tensor) -> torch.Tensor:
        x0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat((x0, x1, x2), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.transform_input(x))
        pooled = self.bavg(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        x = torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bpool(x), pooled], 1)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        return self.fc(self.dropout(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)))


class GroupedResidual(nn.Module):
    """ResNeXt / RegNetX bottleneck (grouped 3x3 conv, projection shortcut, `out += identity`) and a
    MobileNetV2 / MnasNet inverted residual (ReLU6, depthwise conv, linear bottleneck, `x + block(x)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16, stride=2), nn.ReLU6(inplace=True))
        self.f = nn.Sequential(*conv_bn(16, 16, 1), nn.ReLU(inplace=True), *conv_bn(16, 16, 3, groups=4),
                               nn.ReLU(inplace=True), *conv_bn(16, 32, 1))
        self.proj = nn.Sequential(*conv_bn(16, 32, 1))
        self.relu = nn.ReLU(inplace=True)
        self.inverted = nn.Sequential(*conv_bn(32, 64, 1), nn.ReLU6(inplace=True), *conv_bn(64, 64, 3, groups=64),
                                      nn.ReLU6(inplace=True), *conv_bn(64, 32, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = self.f(x)
        out += self.proj(x)
        x = self.relu(out)
        x = x + self.inverted(x)
        return self.classifier(nn.functional.adaptive_avg_pool2d(x, (1, 1)).flatten(start_dim=1))


class Fire(nn.Module):
    """SqueezeNet: fire modules (squeeze, two expands concatenated), ceil-mode max pooling, and a
    classifier of dropout, conv, ReLU and adaptive average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, ceil_mode=True))
        self.squeeze, self.squeeze_act = nn.Conv2d(16, 4, 1), nn.ReLU(inplace=True)
        self.e1, self.e1_act = nn.Conv2d(4, 8, 1), nn.ReLU(inplace=True)
        self.e3, self.e3_act = nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(inplace=True)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(16, 5, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_act(self.squeeze(self.features(x)))
        x = torch.cat([self.e1_act(self.e1(x)), self.e3_act(self.e3(x))], 1)
        return torch.flatten(self.classifier(x), 1)


@pytest.mark.parametrize("model_type", [ChannelShuffle, DenseBlock, Inception, GroupedResidual, Fire])
def test_torchvision_structures_convert_and_converge(model_type):
    torch.manual_seed(0)
    model = randomise_bn(model_type())
    x = torch.randn(4, 3, 16, 16)
    program = snnconvert.trace(model)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x), rtol=1e-4, atol=1e-5)
    assert_converges(model, x)


def test_batch_norm_after_a_concatenation_stays_an_affine_layer():
    program = snnconvert.trace(randomise_bn(DenseBlock()))
    kept = [n.target for n in program.nodes if n.kind is LAYER and isinstance(program.layers[n.target], nn.BatchNorm2d)]
    assert len(kept) == 3 + 1 + 1  # every dense layer's and the transition's BN follow a cat; norm follows avgpool
    assert "conv0_1" not in program.layers  # the BN after conv0's conv is folded into it


def test_max_pooling_becomes_spike_gated_pooling():
    snn = snnconvert.convert(randomise_bn(Inception()), torch.randn(4, 3, 16, 16), **EXACT)
    assert sum(isinstance(m, snnconvert.neurons.SpikingMaxPool) for m in snn.program.layers.values()) == 2


@pytest.mark.parametrize("call", [lambda x: x.transpose(0, 1), lambda x: torch.transpose(x, 1, 0),
                                  lambda x: x.chunk(2), lambda x: torch.unsqueeze(x, 0)])
def test_rearranging_the_batch_dimension_is_refused(call):
    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            out = call(F.relu(self.fc(x)))
            return out[0] if isinstance(out, tuple) else out

    with pytest.raises(UnsupportedOperationError, match="dimension 0"):
        snnconvert.trace(Mixer())


def test_the_top_level_names_are_the_documented_functions():
    from snnconvert.diagnosis import diagnose
    from snnconvert.finetune import finetune_layerwise
    from snnconvert.quantization import quantize
    assert (snnconvert.quantize, snnconvert.finetune_layerwise, snnconvert.diagnose) == (quantize, finetune_layerwise,
                                                                                          diagnose)
    assert {"quantize", "finetune_layerwise", "diagnose"} <= set(snnconvert.__all__)


def test_a_state_dict_loads_into_a_module_that_checks_its_format_version(tmp_path):
    """torchvision's MNASNet refuses a state_dict without its version metadata, which a weights file
    read as plain tensors does not carry: loads_torchvision_state_dict gives it the module's own."""
    from snnconvert.models import loads_torchvision_state_dict

    class Versioned(nn.Module):
        _version = 2

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args):
            if local_metadata.get("version") not in (1, 2):
                raise ValueError(f"version should be set to 1 or 2 instead of {local_metadata.get('version')}")
            super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    source = Versioned()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    loaded = loads_torchvision_state_dict(Versioned(), tmp_path / "w.pth")
    torch.testing.assert_close(loaded.fc.weight, source.fc.weight)
