"""Real torchvision models convert, from the module and from its state dict (skipped without torchvision:
it needs its matching torch, see the README's "torchvision models"; test_torchvision_constructs.py
covers each construct by hand). The rest of the architectures are in benchmarks/torchvision_coverage.py.

Random weights: torchvision's own initialisation, every batch norm's eval-mode statistics taken from 8
random images and its scale gamma set to 0.8 (with gamma = 1 these random networks amplify small
perturbations strongly, MobileNetV2 at 32 x 32 45-fold, and every conversion error with them; see
benchmarks/torchvision_coverage.py). The expectation is independent of
the converter: the SNN's mean output over T = 256 steps is within a few per cent of the ANN's output, and
the error falls like 1/T (a misconverted operation would leave an error that does not fall with T)."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import snnconvert
from snnconvert.models import loads_torchvision_state_dict

try:
    import torchvision
except Exception as e:  # missing, or built for another torch ("operator torchvision::nms does not exist")
    pytest.skip(f"torchvision is not importable here: {type(e).__name__}: {e}", allow_module_level=True)

METHOD = dict(method="baseline", neuron="if_soft", v_init=0.5)
# (name, input side): the smallest inputs the models take comfortably
MODELS = [("resnet18", 32), ("vgg11_bn", 32), ("mobilenet_v2", 32), ("densenet121", 32)]


def build(name: str, side: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(torchvision.models, name)()
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = None  # the statistics of exactly these images
        m.train()
    with torch.no_grad():
        model(torch.randn(8, 3, side, side, generator=torch.Generator().manual_seed(seed + 1)))
        for m in norms:
            m.weight.fill_(0.8)
    return model.eval()


def errors(snn: snnconvert.SpikingModel, y: torch.Tensor, x: torch.Tensor, at: tuple[int, ...]) -> dict[int, float]:
    total, t, out = None, 0, {}
    with torch.no_grad():
        for chunk in snn.run(x, max(at)):
            for step in chunk:
                total = step.clone() if total is None else total + step
                t += 1
                if t in at:
                    out[t] = float((total / t - y).norm() / y.norm())
    return out


@pytest.mark.parametrize("name, side", MODELS)
def test_a_torchvision_model_converts_from_the_module_and_from_its_state_dict(name, side, tmp_path):
    model = build(name, side)
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert (y - y.mean(0)).norm() > 1e-3 * y.norm()  # the output depends on the input: not just a bias
    snn = snnconvert.convert(model, x, **METHOD)
    err = errors(snn, y, x, (32, 256))
    assert err[256] < 0.05 and err[32] > 4 * err[256], err  # 1/T would give 8

    torch.save(model.state_dict(), tmp_path / f"{name}.pth")
    fresh = loads_torchvision_state_dict(build(name, side, seed=1), tmp_path / f"{name}.pth")
    again = snnconvert.convert(fresh, x, **METHOD)
    with torch.no_grad():
        torch.testing.assert_close(again(x, 8), snn(x, 8))


def test_mobilenet_v2s_relu6_converts_as_capped_neurons():
    snn = snnconvert.convert(build("mobilenet_v2", 32), torch.randn(2, 3, 32, 32), **METHOD)
    caps = {n.threshold_cap for n in snn.neurons().values()}
    assert caps == {6.0} and all(float(n.threshold.max()) <= 6.0 for n in snn.neurons().values())


@pytest.mark.parametrize("name, activation", [("efficientnet_b0", "SiLU"), ("convnext_tiny", "GELU"),
                                              ("vit_b_16", "GELU")])
def test_torchvision_models_with_other_activations_are_refused_by_name(name, activation):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(torchvision.models, name)()
    with pytest.raises(snnconvert.UnsupportedOperationError, match=rf"the activation {activation} at '[\w.]+' is not ReLU-like"):
        snnconvert.trace(model)
