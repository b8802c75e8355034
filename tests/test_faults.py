"""Fault tests with real processes: `snnconvert` SIGKILLed mid-epoch, mid-checkpoint, between the
two files of a model and during progressive training; then resumed or rerun. Nothing half-written is
accepted, and a resumed run's weights equal an uninterrupted run's bit for bit.
(fault_driver.py runs the CLI in a child and kills it at an exact point.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snnconvert import cli, io
from snnconvert.files import JOURNAL
from snnconvert.io.weights import read_safetensors
from snnconvert.modelfile import load_model

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("fault_driver.py")
TRAIN = ["train", "--epochs", "3", "--augment", "--quiet"]  # digits: 23 batches of 64 per epoch


def driver(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(DRIVER), *args], env=env, capture_output=True, text=True, timeout=300)


def killed(*args: str) -> None:
    """Run the driver; it must die by SIGKILL."""
    proc = driver(*args)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)


def run(*cli_args: str) -> None:
    """`snnconvert ARGS` in a fresh process, as a user's next command (the runs compared bit for bit
    are all separate processes, as a resumed run always is)."""
    proc = driver("--", *cli_args)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


def state(path: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(path)[0]


def same_weights(a: Path, b: Path) -> bool:
    x, y = state(a), state(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "full"
    run(*TRAIN, "--out", str(out))
    return out


@pytest.mark.parametrize("kill", [["--kill-in-batch", "40"],  # mid-epoch 2
                                  ["--kill-before-rename-to", "last.safetensors", "--occurrence", "2"]])
def test_train_killed_then_resumed_equals_the_uninterrupted_run(uninterrupted, tmp_path, kill):
    out = tmp_path / "run"
    killed(*kill, "--", *TRAIN, "--out", str(out))
    assert not (out / "model.json").exists()
    state(out / "checkpoints" / "last.safetensors")  # whole: the old checkpoint or the new one
    run(*TRAIN, "--resume", "--out", str(out))
    assert same_weights(out / "model.safetensors", uninterrupted / "model.safetensors")
    assert not [p for p in out.rglob(".*")]  # no temporary file left


def test_train_killed_between_its_two_model_files_leaves_a_whole_model(uninterrupted, tmp_path):
    out = tmp_path / "run"
    killed("--kill-before-rename-to", "model.json", "--", *TRAIN, "--out", str(out))
    assert (out / JOURNAL).exists() and (out / "model.safetensors").exists()  # the weights were renamed, the card not
    load_model(out)  # the reader finishes the committed write
    assert same_weights(out / "model.safetensors", uninterrupted / "model.safetensors")
    assert not (out / JOURNAL).exists()


@pytest.fixture(scope="module")
def ann(uninterrupted) -> Path:
    return uninterrupted


@pytest.mark.parametrize("point,expect", [(JOURNAL, "rmp"), ("weights.safetensors", "snm"), ("snn.json", "snm")])
def test_convert_killed_while_replacing_an_snn_leaves_the_old_or_the_new_whole(ann, tmp_path, point, expect):
    out = tmp_path / "snn"
    convert = ["convert", "--model-dir", str(ann), "--calib-samples", "64", "--quiet", "--out", str(out)]
    assert cli.main(convert + ["--method", "rmp"]) == 0
    killed("--kill-before-rename-to", point, "--", *convert, "--method", "snm")
    snn = io.load(out)  # before the commit: the old model; after it: the new one, never a mix
    assert snn.method["name"] == expect
    assert sorted(p.name for p in out.iterdir()) == ["snn.json", "weights.safetensors"]
    assert cli.main(convert + ["--method", "snm"]) == 0 and io.load(out).method["name"] == "snm"


def test_evaluate_killed_while_writing_leaves_the_old_results(ann, tmp_path):
    snn, res = tmp_path / "snn", tmp_path / "results.json"
    assert cli.main(["convert", "--model-dir", str(ann), "--method", "snm", "--calib-samples", "64", "--quiet",
                     "--out", str(snn)]) == 0
    evaluate = ["evaluate", "--snn", str(snn), "--quiet", "--no-compile", "--limit", "50", "--out", str(res)]
    assert cli.main(evaluate + ["--T", "4"]) == 0
    before = res.read_bytes()
    killed("--kill-before-rename-to", "results.json", "--", *evaluate, "--T", "8")
    assert res.read_bytes() == before
    assert [p.name.startswith(".results.json.") for p in tmp_path.glob(".*")] == [True]  # the killed run's temp
    assert cli.main(evaluate + ["--T", "8"]) == 0 and res.read_bytes() != before
    assert not list(tmp_path.glob(".*"))  # removed by the next write of the same file


def test_progressive_training_killed_in_a_later_stage_resumes_to_the_uninterrupted_result(ann, tmp_path):
    prog = ["train", "--init", str(ann), "--bits", "2", "--progressive", "--epochs", "1", "--calib-samples", "64",
            "--quiet"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    run(*prog, "--out", str(full))
    killed("--kill-in-batch", "30", "--", *prog, "--out", str(cut))  # stage 4 done (23 batches), in stage 3
    assert (cut / "checkpoints" / "bits4" / "last.safetensors").exists()
    assert not (cut / "checkpoints" / "bits2").exists()
    run(*prog, "--resume", "--out", str(cut))
    assert same_weights(cut / "model.safetensors", full / "model.safetensors")
