"""Bad inputs give the library's own error types with messages that say what was wrong."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnconvert
from snnconvert import CalibrationError, ConfigError, ModelError

SRC = str(Path(__file__).resolve().parents[1] / "src")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(F.avg_pool2d(F.relu(self.conv(x)), 2).flatten(1))


def net_and_data():
    torch.manual_seed(0)
    return Net().eval(), torch.randn(16, 1, 8, 8)


@pytest.mark.parametrize("T", [0, -1, 2.5, "8", True, None])
def test_bad_number_of_steps(T):
    model, x = net_and_data()
    snn = snnconvert.convert(model, x, "snm")
    y = torch.zeros(16, dtype=torch.long)
    with pytest.raises(ConfigError, match="T"):
        snn(x, T)
    with pytest.raises(ConfigError, match="T"):
        snnconvert.simulate(snn, (x, y), T)
    if T is not None:
        with pytest.raises(ConfigError, match="time steps T must be an integer >= 1"):
            next(snn.run(x, T))


@pytest.mark.parametrize("method", ["baseline", "rmp", "snm"])
@pytest.mark.parametrize("data", [torch.empty(0, 1, 8, 8), [], (torch.empty(0, 1, 8, 8), torch.empty(0))],
                         ids=["empty-tensor", "empty-list", "empty-pair"])
def test_empty_calibration_data(method, data):
    model, _ = net_and_data()
    with pytest.raises(CalibrationError, match="empty"):
        snnconvert.convert(model, data, method)


def test_empty_data_for_calibrate_and_simulate():
    model, x = net_and_data()
    with pytest.raises(CalibrationError, match="empty"):
        snnconvert.calibrate(snnconvert.trace(model), torch.empty(0, 1, 8, 8), snnconvert.Max())
    snn = snnconvert.convert(model, x, "snm")
    with pytest.raises(CalibrationError, match="empty"):
        snnconvert.simulate(snn, (torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long)), 4)


def test_no_calibration_data_where_it_is_needed():
    model, _ = net_and_data()
    with pytest.raises(CalibrationError, match="needs calibration_data"):
        snnconvert.convert(model, None, "rmp")


@pytest.mark.parametrize("method", ["baseline", "rmp", "snm"])
@pytest.mark.parametrize("shape, shown", [((4, 3, 8, 8), r"3, 8, 8"), ((4, 64), r"64"), ((4, 1, 5, 5), r"1, 5, 5")])
def test_calibration_data_of_the_wrong_shape(method, shape, shown):
    model, _ = net_and_data()
    with pytest.raises(CalibrationError, match=rf"shape \([0-9]+, {shown}\).*does not fit"):
        snnconvert.convert(model, torch.randn(*shape), method)


def test_mismatched_inputs_and_labels():
    model, x = net_and_data()
    with pytest.raises(CalibrationError, match="16 inputs but 3 labels"):
        snnconvert.convert(model, (x, torch.zeros(3)), "snm")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(bad):
    model, x = net_and_data()
    with torch.no_grad():
        model.conv.weight[0, 0, 1, 1] = bad
    with pytest.raises(ModelError, match="conv.weight.*NaN or infinite"):
        snnconvert.convert(model, x, "rmp")
    with pytest.raises(ModelError, match="conv.weight"):
        snnconvert.trace(model)
    model, x = net_and_data()
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
    bn[1].running_var[2] = bad  # buffers count too
    with pytest.raises(ModelError, match="running_var"):
        snnconvert.convert(bn, torch.randn(8, 4), "snm")


@pytest.mark.parametrize("method", ["baseline", "rmp", "snm"])
def test_nan_calibration_inputs(method):
    model, x = net_and_data()
    x[5, 0, 3, 3] = float("nan")
    with pytest.raises(CalibrationError, match="NaN"):
        snnconvert.convert(model, x, method)


def test_nan_in_a_later_batch(tmp_path):
    model, x = net_and_data()
    x = torch.cat([x, x])
    x[-1] = float("nan")
    with pytest.raises(CalibrationError, match="NaN"):
        snnconvert.convert(model, x, "snm", batch_size=8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="nope"), "unknown method 'nope'"),
    (dict(method="rmp", threshhold="max"), "unknown override"),
    (dict(method="snm", granularity="pixel"), "granularity must be one of"),
    (dict(method="snm", neuron="lif"), "unknown neuron 'lif'"),
    (dict(method="snm", scale=0), "scale must be > 0"),
    (dict(method="snm", scale=-1.5), "scale must be > 0"),
    (dict(method="snm", threshold="median"), "unknown threshold rule"),
    (dict(method="baseline", percentile=120), "percentile must be in"),
    (dict(method="baseline", percentile=0), "percentile must be in"),
    (dict(method="baseline", threshold=-1.0), "fixed threshold must be > 0"),
    (dict(method="snm", calibration_steps=8), "calibration_steps applies only"),
    (dict(method="rmp", calibration_steps=0), "steps >= 1"),
    (dict(method="snm", v_init=2.0), "v_init"),
])
def test_bad_options(kwargs, message):
    model, x = net_and_data()
    method = kwargs.pop("method")
    with pytest.raises(ConfigError, match=message):
        snnconvert.convert(model, x, method, **kwargs)


def test_bad_options_to_calibrate():
    model, x = net_and_data()
    prog = snnconvert.trace(model)
    with pytest.raises(ConfigError, match="granularity must be one of"):
        snnconvert.calibrate(prog, x, snnconvert.Max(), "pixel")
    with pytest.raises(ConfigError, match="scale must be > 0"):
        snnconvert.calibrate(prog, x, snnconvert.Max(), "layer", scale=0.0)


def test_simulate_needs_labels_and_a_spiking_model():
    model, x = net_and_data()
    snn = snnconvert.convert(model, x, "snm")
    with pytest.raises(ConfigError, match="labelled data"):
        snnconvert.simulate(snn, x, 4)
    with pytest.raises(ConfigError, match="SpikingModel"):
        snnconvert.simulate(model, (x, torch.zeros(16, dtype=torch.long)), 4)


def test_cli_demo_with_an_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("keep me")
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "snnconvert.cli", "demo", "--out", str(blocker / "out"),
                           "--epochs", "1", "--T", "2", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error" in proc.stderr and str(blocker / "out") in proc.stderr
    assert "training" not in proc.stdout  # it failed before any work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_dir"]  # nothing partial left behind
    assert blocker.read_text() == "keep me"
