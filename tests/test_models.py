"""snnconvert.models: every model builds, runs, traces with torch.fx; torchvision name compatibility."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from snnconvert.errors import CheckpointError, ConfigError, ModelError
from snnconvert.models import create_model, list_models, loads_torchvision_state_dict, register_model

INPUTS = {"digits_cnn": (2, 1, 8, 8)}  # every other model takes 32x32 RGB


@pytest.mark.parametrize("name", list_models())
def test_model_builds_runs_and_traces(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    x = torch.randn(*INPUTS.get(name, (2, 3, 32, 32)))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        assert torch.allclose(traced(x), y, atol=1e-5)
    # every ReLU is its own module, called once (a converter gives each its own threshold)
    relu_calls = [n.target for n in traced.graph.nodes if n.op == "call_module" and isinstance(traced.get_submodule(n.target), nn.ReLU)]
    assert len(relu_calls) == len(set(relu_calls)) > 0


def test_registry_errors_and_registration():
    assert set(list_models()) == {"digits_cnn", "vgg11", "vgg16", "vgg_small", "resnet20", "resnet18", "resnet34"}
    with pytest.raises(ConfigError, match="did you mean 'resnet18'") as err:
        create_model("resnet81")
    assert "known models" in str(err.value) and "vgg16" in str(err.value)
    with pytest.raises(ConfigError, match="unknown option"):
        create_model("vgg11", batchnorm=False)
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("vgg11", num_classes=0)
    assert create_model("VGG-Small").__class__.__name__ == "VGG"  # case and '-' vs '_' are forgiven
    with pytest.raises(ConfigError, match="already registered"):
        register_model(lambda num_classes=10: nn.Linear(1, num_classes), name="vgg11")


def test_digits_cnn_layout():
    model = create_model("digits_cnn")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 16), (16, 32), (32, 64)]
    assert model.fc.in_features == 256
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in create_model("digits_cnn", batch_norm=False).modules())
    assert create_model("digits_cnn", input_size=28)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_vgg_options_and_constrained():
    vgg16 = create_model("vgg16")
    assert sum(isinstance(m, nn.Conv2d) for m in vgg16.modules()) == 13
    assert sum(isinstance(m, nn.Linear) for m in vgg16.modules()) == 2
    assert sum(isinstance(m, nn.Conv2d) for m in create_model("vgg11").modules()) == 8
    maxed = create_model("vgg11", pool="max", batch_norm=False, bias=False, dropout=0.0)
    assert sum(isinstance(m, nn.MaxPool2d) for m in maxed.modules()) == 5
    assert not any(isinstance(m, nn.Dropout) for m in maxed.modules())
    for name in ("vgg11", "vgg16", "vgg_small"):
        model = create_model(name, constrained=True)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert all(getattr(m, "bias", None) is None for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
        assert any(isinstance(m, nn.Dropout) for m in model.modules())
    with pytest.raises(ConfigError, match="constrained=True"):
        create_model("vgg16", constrained=True, batch_norm=True)
    with pytest.raises(ConfigError, match="pool"):
        create_model("vgg11", pool="min")
    small = create_model("vgg_small")
    assert sum(p.numel() for p in small.parameters()) <= 1_200_000
    assert sum(p.numel() for p in create_model("vgg_small", width=32).parameters()) < 300_000


def _torchvision_resnet18_keys() -> list[tuple[str, tuple[int, ...]]]:
    """torchvision.models.resnet18() state_dict (names and shapes, in order), written out by hand."""
    bn = lambda p, c: [(f"{p}.weight", (c,)), (f"{p}.bias", (c,)), (f"{p}.running_mean", (c,)),  # noqa: E731
                       (f"{p}.running_var", (c,)), (f"{p}.num_batches_tracked", ())]
    keys = [("conv1.weight", (64, 3, 7, 7))] + bn("bn1", 64)
    inplanes = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            cin = inplanes if block == 0 else planes
            keys += [(f"{p}.conv1.weight", (planes, cin, 3, 3))] + bn(f"{p}.bn1", planes)
            keys += [(f"{p}.conv2.weight", (planes, planes, 3, 3))] + bn(f"{p}.bn2", planes)
            if block == 0 and layer > 1:
                keys += [(f"{p}.downsample.0.weight", (planes, cin, 1, 1))] + bn(f"{p}.downsample.1", planes)
        inplanes = planes
    return keys + [("fc.weight", (1000, 512)), ("fc.bias", (1000,))]


def test_resnet18_state_dict_matches_torchvision_names():
    expected = _torchvision_resnet18_keys()
    assert len(expected) == 122
    sd = create_model("resnet18", num_classes=1000).state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == expected
    assert "layer2.0.downsample.0.weight" in sd and "layer1.0.downsample.0.weight" not in sd
    cifar = create_model("resnet18", cifar_stem=True).state_dict()
    assert cifar["conv1.weight"].shape == (64, 3, 3, 3) and len(cifar) == 122
    assert len(create_model("resnet34", num_classes=1000).state_dict()) == 6 + 16 * 12 + 3 * 6 + 2


def test_resnet_cifar_stem_and_resnet20_layout():
    model = create_model("resnet18", cifar_stem=True)
    assert isinstance(model.maxpool, nn.Identity)
    assert isinstance(create_model("resnet18", stem_pool="avg").maxpool, nn.AvgPool2d)
    r20 = create_model("resnet20")
    convs = [m for m in r20.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # + fc = 20 weighted layers
    assert [m.out_channels for m in r20.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)] == [32, 64]
    assert 250_000 < sum(p.numel() for p in r20.parameters()) < 300_000


def test_loads_torchvision_state_dict(tmp_path):
    src = create_model("resnet18", num_classes=1000)
    torch.save(src.state_dict(), tmp_path / "r18.pth")
    dst = loads_torchvision_state_dict(create_model("resnet18", num_classes=1000), tmp_path / "r18.pth")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))

    from safetensors.torch import save_file

    small = create_model("resnet20")
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(tmp_path / "r20.safetensors"))
    loads_torchvision_state_dict(create_model("resnet20"), tmp_path / "r20.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in small.state_dict().items()}}, tmp_path / "wrapped.pth")
    loads_torchvision_state_dict(create_model("resnet20"), tmp_path / "wrapped.pth")

    with pytest.raises(ModelError, match="shape mismatches") as err:
        loads_torchvision_state_dict(create_model("resnet18"), tmp_path / "r18.pth")  # 10 classes vs 1000
    assert "fc.weight" in str(err.value) and "num_classes=1000" in str(err.value)
    with pytest.raises(ModelError, match="missing keys") as err:
        loads_torchvision_state_dict(create_model("resnet34", num_classes=1000), tmp_path / "r18.pth")
    assert "layer1.2.conv1.weight" in str(err.value)
    with pytest.raises(ModelError, match="unexpected keys"):
        loads_torchvision_state_dict(create_model("digits_cnn"), tmp_path / "r20.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        loads_torchvision_state_dict(small, tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        loads_torchvision_state_dict(small, tmp_path / "junk.pth")
    bad = dict(small.state_dict())
    bad["fc.weight"] = torch.full_like(bad["fc.weight"], float("nan"))
    torch.save(bad, tmp_path / "nan.pth")
    with pytest.raises(ModelError, match="NaN"):
        loads_torchvision_state_dict(create_model("resnet20"), tmp_path / "nan.pth")
