"""Weight calibration for a target T (calibration.weights): the rate surrogate, the segment between
spiking layers, and the layer-wise tuning through convert()."""
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import snnconvert as sc
from snnconvert.calibration.layerwise import feeding_layer
from snnconvert.calibration.weights import (WeightCalibration, cache_layer, calibrate_weights, rate_surrogate,
                                            run_segment, segment)
from snnconvert.cli import main
from snnconvert.graph import trace
from snnconvert.modelfile import save_model
from snnconvert.models import create_model


@settings(max_examples=40, deadline=None)
@given(st.floats(-0.5, 1.7), st.integers(1, 32), st.floats(0.0, 1.0), st.floats(-0.4, 0.4))
def test_the_surrogate_is_the_mean_output_of_a_soft_reset_neuron_with_constant_input(z, T, v_init, offset):
    theta = 1.7
    v0 = v_init * theta + offset
    assume(-theta <= v0 < theta)  # with z <= theta too, one spike per step always suffices: the closed form holds
    level = (z * T + v0) / theta
    assume(abs(level - round(level)) > 1e-6)  # on a spike boundary float rounding decides either way
    v, spikes = v0, 0
    for _ in range(T):  # the reference loop: integrate, fire at >= theta, subtract
        v += z
        if v >= theta:
            v -= theta
            spikes += 1
    got = rate_surrogate(torch.tensor(z, dtype=torch.float64), torch.tensor(theta, dtype=torch.float64),
                         torch.tensor(v0, dtype=torch.float64), T)
    assert got.item() == pytest.approx(theta * spikes / T, abs=1e-9)


def test_the_surrogate_passes_the_gradient_of_its_clamped_line():
    z = torch.tensor([-1.0, 0.3, 0.55, 5.0], requires_grad=True)
    rate_surrogate(z, torch.tensor(1.0), torch.tensor(0.5), 4).sum().backward()
    assert z.grad.tolist() == [0.0, 1.0, 1.0, 0.0]  # slope 1 inside [0, theta], 0 where the output is clipped


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.short = nn.Conv2d(4, 4, 1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        a = torch.relu(self.conv1(x))
        b = torch.relu(self.conv2(a) + self.short(a))
        return self.fc(torch.flatten(self.pool(b), 1))


def test_the_segment_of_averages_is_the_time_average_of_the_neuron_input():
    net = Residual().eval()
    x = torch.rand(16, 1, 8, 8)
    snn = sc.convert(net, x, "rmp", threshold="max", v_init=0.5)
    first, second = snn.program.activation_nodes()
    frontier, body = segment(snn, second)
    assert frontier == [first.name]  # both branches start at the first neurons
    assert {n.name for n in body} >= {second.args[0].name}
    assert len(body) == 3  # conv2, the shortcut conv and the addition
    assert segment(snn, first)[0] == [snn.program.input_name]
    T = 6
    averages, _ = cache_layer(snn, trace(net), x, frontier, second.name, T, 5, 16)  # batches of 5, put together in order
    got = run_segment(snn.program, body, averages)
    taps = {second.args[0].name: None}  # the engine's own running sum of the neurons' input over T steps
    for _ in snn.run(x, T, stop_after=second.name, taps=taps):
        pass
    torch.testing.assert_close(got, taps[second.args[0].name] / T, rtol=1e-5, atol=1e-6)


def test_the_cache_pairs_each_sample_with_its_own_ann_activation_on_shuffled_data():
    net = Residual().eval()
    x = torch.rand(40, 1, 8, 8)
    snn = sc.convert(net, x, "rmp", threshold="max", v_init=0.5)
    first = snn.program.activation_nodes()[0]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(40)), batch_size=8, shuffle=True)
    averages, target = cache_layer(snn, trace(net), loader, [snn.program.input_name], first.name, 4, 8, 24)
    assert len(target) == 24
    with torch.no_grad():  # the input's time average is the image itself: its ANN activation must be the target row
        _, again = trace(net).run(averages[snn.program.input_name], [first.name])
    torch.testing.assert_close(again[first.name], target)


def deep_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 5)).eval()


def layer_errors(snn, net, x, T):
    """Per neuron layer: mean squared error of the SNN's mean output over T steps against the ANN."""
    names = [n.name for n in snn.program.activation_nodes()]
    with torch.no_grad():
        _, ann = trace(net).run(x, names)
        means = snn.mean_values(x, T, names)
    return {n: float(((means[n] - ann[n]) ** 2).mean()) for n in names}


def test_weight_calibration_undoes_a_known_weight_error_and_leaves_the_ann_alone():
    net = deep_net()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
    x = torch.rand(128, 1, 8, 8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    T = 4
    snn = sc.convert(net, x, "rmp", threshold=sc.calibration.ErrorMinimising(T, 0.5), granularity="channel",
                     v_init=0.5)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    first, second, third = snn.program.activation_nodes()
    layer = feeding_layer(snn.program, second)
    with torch.no_grad():
        layer.weight *= 0.6  # the spiking layer now gets 60% of its input: a large, systematic error
    err_before = layer_errors(snn, net, x, T)[second.name]
    report = calibrate_weights(snn, trace(net), second, layer, x, T, WeightCalibration(steps=200), 64)
    assert report["kept"] and report["surrogate_mse_after"] < 0.5 * report["surrogate_mse_before"]
    assert layer_errors(snn, net, x, T)[second.name] < 0.5 * err_before  # measured by simulation, not the surrogate
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not layer.weight.requires_grad and layer.weight.grad is None


def test_the_calibrated_preset_with_weight_calibration_records_it_and_never_raises_the_surrogate_error():
    net = deep_net()
    x = torch.rand(96, 1, 8, 8)
    tuned = sc.convert(net, x, "calibrated", target_T=4, weight_calibration=True)
    report = tuned.method["layerwise_calibration"]
    for r in report.values():
        w = r["weights"]
        assert w["surrogate_mse_after"] <= w["surrogate_mse_before"]
        assert w["kept"] == (w["mean_abs_weight_change"] > 0)
    assert tuned.method["weight_calibration"] is True
    assert "weight_calibration" not in sc.convert(net, x, "calibrated", target_T=4).method


def test_weights_that_do_not_lower_the_error_are_put_back():
    net = deep_net()
    x = torch.rand(32, 1, 8, 8)
    snn = sc.convert(net, x, "rmp", threshold=sc.calibration.ErrorMinimising(4, 0.5), granularity="channel",
                     v_init=0.5)
    node = snn.program.activation_nodes()[1]
    layer = feeding_layer(snn.program, node)
    original = layer.weight.clone()
    report = calibrate_weights(snn, trace(net), node, layer, x, 4, WeightCalibration(steps=0), 16)
    assert not report["kept"] and torch.equal(layer.weight, original) and not layer.weight.requires_grad


def test_weight_calibration_survives_save_and_load_and_bad_settings_are_named(tmp_path):
    net = deep_net()
    x = torch.rand(48, 1, 8, 8)
    snn = sc.convert(net, x, "calibrated", target_T=2, weight_calibration=True)
    sc.save(snn, tmp_path / "snn")
    back = sc.load(tmp_path / "snn")
    assert back.method_config["weight_calibration"] is True and back.method["weight_calibration"] is True
    assert torch.equal(back(x, 2), snn(x, 2))
    with pytest.raises(sc.ConfigError, match="target_T"):
        sc.convert(net, x, "rmp", weight_calibration=True)
    with pytest.raises(sc.ConfigError, match="soft-reset IF neurons"):
        sc.convert(net, x, "snm", target_T=4, weight_calibration=True)


def test_cli_weight_calibration_needs_a_target_T(tmp_path, capsys):
    torch.manual_seed(0)
    save_model(create_model("digits_cnn").eval(), tmp_path / "m", "digits_cnn", 10, dataset="digits")
    code = main(["convert", "--model-dir", str(tmp_path / "m"), "--method", "rmp", "--weight-calibration",
                 "--calib-samples", "64", "--quiet", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code != 0 and "--target-T" in err and "target_T" not in err and not (tmp_path / "s").exists()
    code = main(["convert", "--model-dir", str(tmp_path / "m"), "--method", "calibrated", "--target-T", "4",
                 "--weight-calibration", "--calib-samples", "32", "--quiet", "--out", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert code == 0 and "weights tuned" in out and "weight_calibration True" in out
