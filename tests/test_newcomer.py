"""The newcomer's path through the CLI: a model is built for the dataset it trains on, later commands
use the data recorded at training, --T has a stated default, and errors speak in flags.

Everything runs on a small synthetic MNIST-format directory (256 + 64 images, IDX files)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_data import write_idx

from snnconvert import cli
from snnconvert.data import dataset_info, get_dataset
from snnconvert.data.registry import DataRecord
from snnconvert.errors import CheckpointError, ConfigError, DataError
from snnconvert.models import list_models


def write_mnist_like(folder: Path, n_train: int = 256, n_test: int = 64) -> Path:
    """An MNIST-format directory whose classes are learnable (a bright bar at a class-dependent row)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for image, c in zip(images, labels):
            image[2 * c:2 * c + 6, 4:24] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    return write_mnist_like(tmp_path_factory.mktemp("data") / "mnist")


@pytest.fixture(scope="module")
def trained(mnist, tmp_path_factory) -> Path:
    """digits_cnn (the default model) trained 1 epoch on the MNIST-format data."""
    out = tmp_path_factory.mktemp("runs") / "m"
    assert cli.main(["train", "--dataset", "mnist", "--data-dir", str(mnist), "--epochs", "1", "--out", str(out),
                     "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def converted(trained, tmp_path_factory) -> Path:
    """RMP conversion of `trained`, given neither --dataset nor --data-dir."""
    out = tmp_path_factory.mktemp("snn") / "s"
    assert cli.main(["convert", "--model-dir", str(trained), "--method", "rmp", "--calib-samples", "32",
                     "--calibration-steps", "4", "--out", str(out), "--quiet"]) == 0
    return out


def card(directory: Path) -> dict:
    return json.loads((directory / "model.json").read_text())


# ---- 1. the model is built for the dataset it trains on


@pytest.mark.parametrize("model, kwargs, recorded", [
    (None, None, {"in_channels": 1, "input_size": 28}),                        # the default model
    ("vgg_small", '{"width": 4}', {"in_channels": 1, "width": 4}),
])
def test_train_on_mnist_builds_the_model_for_the_data(mnist, tmp_path, model, kwargs, recorded):
    out = tmp_path / "m"
    argv = ["train", "--dataset", "mnist", "--data-dir", str(mnist), "--epochs", "1", "--out", str(out), "--quiet"]
    argv += (["--model", model] if model else []) + (["--model-kwargs", kwargs] if kwargs else [])
    assert cli.main(argv) == 0
    c = card(out)
    assert c["model_kwargs"] == recorded and c["num_classes"] == 10
    assert c["dataset"] == "mnist" and c["input_shape"] == [1, 28, 28]
    assert c["data_dir"] == str(mnist.resolve()) and Path(c["data_dir"]).is_absolute()


def test_a_model_that_cannot_take_the_data_is_refused_naming_both_shapes(mnist, tmp_path, capsys):
    out = tmp_path / "m"
    base = ["train", "--dataset", "mnist", "--data-dir", str(mnist), "--epochs", "1", "--out", str(out), "--quiet"]
    assert cli.main(base + ["--model", "vgg_small", "--model-kwargs", '{"in_channels": 3}']) == 1
    err = capsys.readouterr().err
    assert "expects 3xHxW images" in err and "mnist has 1x28x28 images" in err
    assert cli.main(base + ["--model", "vgg16"]) == 1
    err = capsys.readouterr().err
    assert "H and W >= 32" in err and "1x28x28" in err and "digits_cnn" in err  # and which models do fit
    assert not out.exists()


def test_models_lists_every_registered_model_with_its_shapes(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    starts = {line.split(":", 1)[0]: i for i, line in enumerate(lines) if not line.startswith(" ")}
    assert set(list_models()) <= set(starts)
    fits = {name: next(x for x in lines[starts[name]:] if x.startswith("  fits:")) for name in list_models()}
    assert "mnist (1x28x28)" in fits["digits_cnn"] and "digits (1x8x8)" in fits["digits_cnn"]
    assert "mnist" not in fits["vgg16"] and "cifar10 (3x32x32)" in fits["vgg16"]
    assert "input_size=8" in out and "width=64" in out  # options with their defaults


# ---- 2. later commands use the recorded data


def test_convert_and_evaluate_use_the_recorded_dataset(converted, trained, tmp_path, capsys):
    data = json.loads((converted / "snn.json").read_text())["method"]["data"]
    assert data == {"dataset": "mnist", "input_shape": [1, 28, 28], "num_classes": 10,
                    "data_dir": card(trained)["data_dir"]}
    capsys.readouterr()
    res = tmp_path / "r.json"  # neither --dataset, --data-dir, --model-dir nor --T
    assert cli.main(["evaluate", "--snn", str(converted), "--limit", "16", "--no-compile", "--quiet",
                     "--out", str(res)]) == 0
    assert f"--T not given: T={cli.DEFAULT_T}" in capsys.readouterr().out
    r = json.loads(res.read_text())
    assert r["T"] == cli.DEFAULT_T and r["samples"] == 16
    diag = tmp_path / "d"
    assert cli.main(["diagnose", "--snn", str(converted), "--model-dir", str(trained), "--limit", "8", "--T", "4",
                     "--out", str(diag)]) == 0
    assert json.loads((diag / "diagnosis.json").read_text())["samples"] == 8


def test_a_contradicting_dataset_is_refused_naming_both(converted, trained, tmp_path, capsys):
    for argv in (["convert", "--model-dir", str(trained), "--out", str(tmp_path / "s")],
                 ["evaluate", "--snn", str(converted), "--out", str(tmp_path / "r.json")],
                 ["diagnose", "--snn", str(converted), "--model-dir", str(trained), "--out", str(tmp_path / "d")]):
        assert cli.main(argv + ["--dataset", "cifar10"]) == 1, argv[0]
        err = capsys.readouterr().err
        assert "the model was trained on mnist (1x28x28); --dataset cifar10 gives 3x32x32 images" in err, err
    assert not (tmp_path / "s").exists() and not (tmp_path / "d").exists()


def test_the_recorded_data_directory_is_used_only_while_it_exists(tmp_path):
    info = dataset_info("mnist")
    record = DataRecord.of(info, tmp_path)
    assert record.choose(None, None) == ("mnist", str(tmp_path.resolve()))
    assert record.choose(None, "elsewhere") == ("mnist", "elsewhere")          # the flag wins
    assert record.choose("fashion-mnist", None) == ("fashion-mnist", None)     # another dataset's files
    assert DataRecord.of(info, tmp_path / "gone").choose(None, None) == ("mnist", None)
    assert DataRecord(None).choose(None, None) == ("digits", None)             # nothing recorded
    with pytest.raises(ConfigError, match="trained on mnist with 10 classes; cifar100 has 100 classes"):
        DataRecord("mnist", None, 10).check(dataset_info("cifar100"), "cifar100")
    with pytest.raises(CheckpointError, match="input_shape"):
        DataRecord.read({"dataset": "mnist", "input_shape": [28, 28]}, "model.json")


# ---- 3. --T has a stated default; errors speak in flags


def test_evaluate_without_T_runs_the_calibrated_target_T(trained, tmp_path, capsys):
    snn, res = tmp_path / "cal", tmp_path / "r.json"
    assert cli.main(["convert", "--model-dir", str(trained), "--method", "calibrated", "--target-T", "4",
                     "--calib-samples", "32", "--out", str(snn), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "--snn", str(snn), "--limit", "16", "--no-compile", "--quiet",
                     "--out", str(res)]) == 0
    assert "--T not given: T=4 (the T it was calibrated for" in capsys.readouterr().out
    assert json.loads(res.read_text())["T"] == 4


def test_finetune_of_a_model_that_is_no_fast_snn_says_what_to_do(converted, trained, tmp_path, capsys):
    assert cli.main(["finetune", "--snn", str(converted), "--model-dir", str(trained),
                     "--out", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert "converted with --method rmp" in err and "--method fastsnn" in err and "--bits" in err
    assert "got None" not in err and not (tmp_path / "t").exists()


def test_errors_the_cli_shows_name_its_flags(trained, tmp_path, capsys):
    assert cli.main(["convert", "--model-dir", str(trained), "--method", "fastsnn", "--out", str(tmp_path / "f")]) == 1
    err = capsys.readouterr().err
    assert "snnconvert train --bits B" in err and "quantize(model" not in err
    assert cli.main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "missing"), "--epochs", "1",
                     "--out", str(tmp_path / "m"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Give --data-dir the folder" in err and "root=" not in err
    # the library's own words, as the CLI shows them
    from snnconvert.simulation.engine import check_steps

    with pytest.raises(ConfigError) as e:
        check_steps(None)
    assert cli.in_cli_words(str(e.value)).startswith("--T (the number of time steps) must be")
    assert "(e.g. --T 256)" in cli.in_cli_words(str(e.value))
    with pytest.raises(DataError) as e:
        get_dataset("mnist", root=tmp_path / "missing")
    assert "root=" in str(e.value) and "root=" not in cli.in_cli_words(str(e.value))
    budget = ("simulate(): a run of T=100 steps would hold 9 GiB; use a smaller T (at most about 8 here) or a "
              "smaller batch size than 256 (batch_size=, --batch-size) or fewer steps per chunk (chunk_size= or "
              "memory_budget_mb=)")
    assert cli.in_cli_words(budget) == ("a run of T=100 steps would hold 9 GiB; use a smaller --T (at most about 8 "
                                        "here) or a smaller batch size than 256 (--batch-size)")


def test_train_validates_on_held_out_training_images_by_default(trained, mnist, tmp_path):
    """Finding 4: val_acc came from the test split, and best.safetensors was chosen by it."""
    assert card(trained)["holdout"] == {"split": "train", "images": round(0.1 * 256), "seed": 0}
    assert all(h["val_acc"] is not None for h in card(trained)["history"])
    assert (trained / "checkpoints" / "best.safetensors").is_file()
    none = tmp_path / "none"
    assert cli.main(["train", "--dataset", "mnist", "--data-dir", str(mnist), "--epochs", "1", "--holdout", "0",
                     "--out", str(none), "--quiet"]) == 0
    assert "holdout" not in card(none) and card(none)["history"][0]["val_acc"] is None
    assert not (none / "checkpoints" / "best.safetensors").exists()  # nothing to choose by: not the test split


def test_evaluate_prints_a_one_screen_summary_and_writes_plots(converted, trained, tmp_path, capsys):
    """Finding 6: evaluate printed a table and a Python dict; no firing rates, no plot outside the demo."""
    plots = tmp_path / "plots"
    assert cli.main(["evaluate", "--snn", str(converted), "--model-dir", str(trained), "--T", "8", "--quiet",
                     "--out", str(tmp_path / "r.json"), "--plot", str(plots)]) == 0
    out = capsys.readouterr().out
    for part in ("accuracy after t steps (ANN", "spikes per neuron per step", "energy per sample", "thresholds per"):
        assert part in out, part
    assert max(len(line) for line in out.splitlines() if not line.startswith(("results", "plots"))) <= 100
    for name in ("accuracy_vs_T.png", "firing_rates.png"):
        assert (plots / name).read_bytes().startswith(b"\x89PNG")
