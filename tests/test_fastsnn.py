"""Fast-SNN: quantized ANN -> signed IF SNN at T = 2^b - 1, and layer-wise fine-tuning."""
import pytest
import torch
from torch import nn

import snnconvert as sc
from snnconvert.data import dataset_as_tensors, get_dataset
from snnconvert.models import create_model
from snnconvert.finetune import finetune_layerwise
from snnconvert.quantization import QuantReLU, quantize, quantized_bits, set_bits, train_progressive
from snnconvert.training import TrainConfig, train


def _mlp(*widths: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_spike_count_equals_qann_level_for_a_single_layer(bits):
    torch.manual_seed(bits)
    model = _mlp(8, 32, 3)
    x = torch.randn(64, 8)
    qann = quantize(model, bits, x).eval()
    snn = sc.convert(qann, method="fastsnn")
    T = 2 ** bits - 1
    assert snn.default_T == T
    name = snn.program.activation_nodes()[0].name
    quant = [m for m in qann.modules() if isinstance(m, QuantReLU)][0]
    alpha, L = quant.alpha.item(), quant.levels
    with torch.no_grad():
        z = qann[0](x) if isinstance(qann, nn.Sequential) else qann.get_submodule("0")(x)
        level = torch.round(torch.clamp(z / alpha, 0, 1) * L)
        count = snn.mean_values(x, T, [name])[name] * T / alpha
    tie = ((z / alpha * L) - 0.5).remainder(1.0).abs() < 1e-4
    assert torch.equal(torch.round(count)[~tie], level[~tie])
    assert torch.allclose(count, torch.round(count), atol=1e-4)


def test_quantize_keeps_the_model_and_its_names():
    model = create_model("digits_cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(32, 1, 8, 8)
    q = quantize(model, 3, x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, QuantReLU) for m in model.modules())
    quants = [m for m in q.modules() if isinstance(m, QuantReLU)]
    assert len(quants) == 3 and all(m.bits == 3 for m in quants)
    assert set(before) <= set(q.state_dict())  # original parameter names kept
    assert quantized_bits(q) == 3 and quantized_bits(model) is None
    set_bits(q, 2)
    assert quantized_bits(q) == 2
    # alpha from the 99.9th percentile of the positive activations
    program = sc.trace(model)
    acts = program.run(x, [n.name for n in program.activation_nodes()])[1]
    first = acts[program.activation_nodes()[0].name]
    expected = torch.quantile(first[first > 0], 0.999).item()
    assert abs(quants[0].alpha.item() - expected) / expected < 0.02
    # the output layer stays float: logits are not multiples of alpha/L
    assert q(x).unique().numel() > 100


def test_quantize_rejects_bad_input():
    with pytest.raises(sc.ConfigError, match="bits must be"):
        quantize(_mlp(4, 4, 2), 0)
    with pytest.raises(sc.ConfigError, match="no ReLU"):
        quantize(nn.Linear(4, 2), 2)
    with pytest.raises(sc.CalibrationError, match="QuantReLU"):
        sc.convert(_mlp(4, 8, 2), method="fastsnn")


def _digits_qann(bits: int):
    train_set, test_set = get_dataset("digits"), get_dataset("digits", train=False)
    cfg = TrainConfig(epochs=15, lr=3e-3, batch_size=64, optimizer="adamw", weight_decay=1e-4, progress=False)
    model = train(create_model("digits_cnn"), train_set, cfg).model
    x_train, y_train = dataset_as_tensors(train_set)
    qann = quantize(model, bits, x_train[:512])
    qann = train(qann, train_set, TrainConfig(epochs=8, lr=1e-3, batch_size=64, optimizer="adamw",
                                              weight_decay=1e-4, progress=False)).model.eval()
    return qann, (x_train, y_train), dataset_as_tensors(test_set)


@pytest.mark.parametrize("bits", [2, 3])
def test_signed_if_snn_agrees_with_the_qann(bits):
    qann, train_data, (x_test, _) = _digits_qann(bits)
    T = 2 ** bits - 1
    signed = sc.convert(qann, method="fastsnn")
    unsigned = sc.convert(qann, method="fastsnn", neuron="if")
    with torch.no_grad():
        q_pred = qann(x_test).argmax(-1)
        agree_signed = (signed(x_test, T).argmax(-1) == q_pred).double().mean().item()
        agree_unsigned = (unsigned(x_test, T).argmax(-1) == q_pred).double().mean().item()
        # the sequential error: per-layer rate error against the QANN, summed over hidden layers
        program = sc.trace(qann)
        names = [n.name for n in program.activation_nodes()]
        target = program.run(x_test, names)[1]
        err = {k: sum(((s.mean_values(x_test, T, names)[n] - target[n]) ** 2).mean().item() for n in names)
               for k, s in (("signed", signed), ("unsigned", unsigned))}
    assert agree_signed >= 0.99
    assert err["signed"] < err["unsigned"]
    assert agree_signed >= agree_unsigned


def test_signed_if_beats_unsigned_on_a_deeper_random_net():
    torch.manual_seed(0)
    model = _mlp(20, 64, 64, 64, 64, 10)
    x = torch.randn(512, 20)
    qann = quantize(model, 2, x).eval()
    with torch.no_grad():
        q_pred = qann(x).argmax(-1)
        agree = {k: (sc.convert(qann, method="fastsnn", neuron=k)(x, 3).argmax(-1) == q_pred).double().mean().item()
                 for k in ("signed_if", "if")}
    assert agree["signed_if"] > agree["if"]


def test_finetuning_lowers_the_layer_mse_it_optimises():
    torch.manual_seed(0)
    model = _mlp(20, 64, 64, 64, 5)
    x = torch.randn(512, 20)
    qann = quantize(model, 3, x).eval()
    y = qann(x).argmax(-1)
    snn = sc.convert(qann, method="fastsnn")
    second = [n for n in snn.program.nodes if n.kind == "layer"][1]
    with torch.no_grad():  # a systematic error in layer 2 that the weights can correct
        snn.program.layers[second.target].weight.mul_(0.7)
    tuned, report = finetune_layerwise(snn, qann, (x, y), epochs=2, lr=0.1, weight_decay=0.0, force=True)
    first_tuned = report.layers[0]
    assert first_tuned.mse_trial < 0.8 * first_tuned.mse_before
    assert len(report.layers) == 2  # layers 2 .. L-1; the first layer is not tuned
    # the input SNN is untouched
    assert not torch.equal(tuned.program.layers[second.target].weight, snn.program.layers[second.target].weight)


def test_finetuning_keeps_only_improvements():
    torch.manual_seed(1)
    model = _mlp(20, 32, 32, 32, 5)
    x = torch.randn(256, 20)
    qann = quantize(model, 2, x).eval()
    y = qann(x).argmax(-1)
    snn = sc.convert(qann, method="fastsnn")
    tuned, report = finetune_layerwise(snn, qann, (x, y), epochs=1, lr=0.5)
    assert report.accuracy_after >= report.accuracy_before
    for layer in report.layers:
        if not layer.accepted:
            assert layer.mse_after == layer.mse_before
    with torch.no_grad():
        acc = (tuned(x, 3).argmax(-1) == y).double().mean().item()
    assert acc == pytest.approx(report.accuracy_after)


def test_progressive_training_goes_down_in_bits(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(128, 6)
    y = (x[:, 0] > 0).long()
    ds = torch.utils.data.TensorDataset(x, y)
    cfg = TrainConfig(epochs=1, lr=1e-2, batch_size=32, optimizer="adamw", progress=False)
    res = train_progressive(_mlp(6, 16, 2), ds, cfg, (4, 3, 2), calibration_data=x, checkpoint_dir=tmp_path)
    assert list(res) == [4, 3, 2]
    assert [quantized_bits(r.model) for r in res.values()] == [4, 3, 2]
    assert (tmp_path / "bits3" / "last.safetensors").is_file()
    with pytest.raises(sc.ConfigError, match="decreasing"):
        train_progressive(_mlp(6, 16, 2), ds, cfg, (2, 3))


def test_upsampling_concat_dilation_and_feature_map_output():
    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=2, dilation=2, stride=2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.head = nn.Conv2d(16, 4, 1)

        def forward(self, x):
            a = torch.relu(self.a(x))
            b = torch.relu(self.b(a))
            u = nn.functional.interpolate(self.up(b), size=a.shape[-2:], mode="bilinear", align_corners=False)
            return self.head(torch.cat([a, u], dim=1))

    x = torch.randn(16, 3, 8, 8)
    qann = quantize(Seg(), 3, x).eval()
    snn = sc.convert(qann, method="fastsnn")
    with torch.no_grad():
        out, ref = snn(x), qann(x)
    assert out.shape == ref.shape == (16, 4, 8, 8)
    assert ((out - ref).norm() / ref.norm()).item() < 0.15
