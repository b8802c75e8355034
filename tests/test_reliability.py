"""Nothing lost, nothing silent (in one process): outputs replaced as a whole, outputs checked before
the work, inputs never overwritten, resumable and reproducible training, CLI numbers validated.
The same properties under real SIGKILLs are in test_faults.py."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import snnconvert
from snnconvert import cli, files
from snnconvert.data import get_dataset
from snnconvert.errors import CheckpointError, ConfigError, OutputError
from snnconvert.models import create_model
from snnconvert.quantization import train_progressive
from snnconvert.training import TrainConfig, train

# ---------------------------------------------------------------------------------------------------
# files.DirectoryWrite: the old whole or the new whole
# ---------------------------------------------------------------------------------------------------


def write_pair(d: Path, a: str, b: str) -> None:
    with files.DirectoryWrite(d) as w:
        w.write("a.txt", lambda p: Path(p).write_text(a))
        w.write("b.txt", lambda p: Path(p).write_text(b))


def pair(d: Path) -> tuple[str, str]:
    files.finish_interrupted_write(d)
    return (d / "a.txt").read_text(), (d / "b.txt").read_text()


def test_directory_write_replaces_both_files_and_leaves_nothing_else(tmp_path):
    (tmp_path / "keep.txt").write_text("other file")
    write_pair(tmp_path, "old-a", "old-b")
    write_pair(tmp_path, "new-a", "new-b")
    assert pair(tmp_path) == ("new-a", "new-b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "keep.txt"]


def test_an_error_inside_the_block_changes_nothing(tmp_path):
    write_pair(tmp_path, "old-a", "old-b")
    with pytest.raises(RuntimeError):
        with files.DirectoryWrite(tmp_path) as w:
            w.write("a.txt", lambda p: Path(p).write_text("new-a"))
            raise RuntimeError("killed half-way")
    assert pair(tmp_path) == ("old-a", "old-b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_a_write_killed_before_its_commit_is_cleaned_and_the_old_pair_stays(tmp_path):
    write_pair(tmp_path, "old-a", "old-b")
    (tmp_path / ".a.txt.pending").write_text("new-a")  # what a kill before the journal leaves
    (tmp_path / ".b.txt.Xy12.tmp").write_text("half")  # and an atomic_write temp file
    assert pair(tmp_path) == ("old-a", "old-b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


@pytest.mark.parametrize("renamed", [0, 1, 2])
def test_a_write_killed_after_its_commit_is_finished_by_the_next_reader(tmp_path, renamed):
    write_pair(tmp_path, "old-a", "old-b")
    names = ["a.txt", "b.txt"]
    for name, text in zip(names, ["new-a", "new-b"]):
        (tmp_path / f".{name}.pending").write_text(text)
    (tmp_path / files.JOURNAL).write_text(json.dumps({"files": names}))
    for name in names[:renamed]:  # killed after `renamed` of the renames
        (tmp_path / f".{name}.pending").replace(tmp_path / name)
    assert pair(tmp_path) == ("new-a", "new-b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_a_full_disk_is_an_output_error_naming_the_file_and_the_old_files_stay(tmp_path, monkeypatch):
    write_pair(tmp_path, "old-a", "old-b")

    def full(p: str) -> None:
        Path(p).write_text("par")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"cannot write .*b\.txt.*No space left"):
        with files.DirectoryWrite(tmp_path) as w:
            w.write("a.txt", lambda p: Path(p).write_text("new-a"))
            w.write("b.txt", full)
    assert pair(tmp_path) == ("old-a", "old-b")
    with pytest.raises(OutputError, match="No space left"):
        files.atomic_write(tmp_path / "c.txt", full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


# ---------------------------------------------------------------------------------------------------
# saved models: the hash in the card, kill between the two files
# ---------------------------------------------------------------------------------------------------


def tiny_model(seed: int = 0) -> nn.Module:
    return create_model("digits_cnn", seed=seed)


def test_a_model_card_refuses_weights_it_was_not_written_with(tmp_path):
    from snnconvert.modelfile import load_model, save_model

    save_model(tiny_model(0), tmp_path / "a", "digits_cnn", 10)
    save_model(tiny_model(1), tmp_path / "b", "digits_cnn", 10)
    (tmp_path / "b" / "model.safetensors").replace(tmp_path / "a" / "model.safetensors")
    with pytest.raises(CheckpointError, match="does not match model.json"):
        load_model(tmp_path / "a")


def test_a_version_1_card_without_a_hash_still_loads(tmp_path):
    from snnconvert.modelfile import load_model, save_model

    save_model(tiny_model(0), tmp_path, "digits_cnn", 10)
    card = json.loads((tmp_path / "model.json").read_text())
    card["version"] = 1
    del card["weights_sha256"]
    (tmp_path / "model.json").write_text(json.dumps(card))
    model, _ = load_model(tmp_path)
    assert torch.equal(model.state_dict()["features.0.weight"], tiny_model(0).state_dict()["features.0.weight"])


# ---------------------------------------------------------------------------------------------------
# training: reproducible, resumable bit for bit, refused on other data
# ---------------------------------------------------------------------------------------------------


class Stop(Exception):
    pass


def stop_after(epochs: int):
    def log(record):
        if record["epoch"] == epochs:
            raise Stop

    return log


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_create_model_with_a_seed_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = (weights(create_model("digits_cnn", seed=s)) for s in (3, 3, 4))
    assert same(a, b) and not same(a, c)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ConfigError, match="seed"):
        create_model("digits_cnn", seed=-1)


CFG = dict(epochs=3, lr=3e-3, batch_size=128, optimizer="adamw", progress=False)


@pytest.mark.parametrize("augment", [False, True])
def test_resumed_training_equals_an_uninterrupted_run_bit_for_bit(tmp_path, augment):
    data = get_dataset("digits", augment=augment)
    full = train(tiny_model(), data, TrainConfig(**CFG), checkpoint_dir=tmp_path / "full").model
    with pytest.raises(Stop):
        train(tiny_model(), get_dataset("digits", augment=augment), TrainConfig(**CFG),
              checkpoint_dir=tmp_path / "cut", log=stop_after(1))
    resumed = train(tiny_model(), get_dataset("digits", augment=augment), TrainConfig(**CFG),
                    checkpoint_dir=tmp_path / "cut", resume=True).model
    assert same(weights(full), weights(resumed))


def test_the_seed_changes_augmentation_and_the_same_seed_repeats_it():
    def run(seed: int) -> dict[str, torch.Tensor]:
        return weights(train(tiny_model(), get_dataset("digits", augment=True),
                             TrainConfig(**{**CFG, "epochs": 1, "seed": seed})).model)

    assert same(run(0), run(0)) and not same(run(0), run(1))


def test_resuming_with_augmentation_switched_is_refused(tmp_path):
    with pytest.raises(Stop):
        train(tiny_model(), get_dataset("digits", augment=True), TrainConfig(**CFG), checkpoint_dir=tmp_path,
              log=stop_after(1))
    with pytest.raises(ConfigError, match="augment: saved True, given False"):
        train(tiny_model(), get_dataset("digits"), TrainConfig(**CFG), checkpoint_dir=tmp_path, resume=True)


def test_a_model_that_cannot_take_the_data_is_refused_before_training():
    mnist_sized = torch.utils.data.TensorDataset(torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"an item has shape \[1, 28, 28\]"):
        train(tiny_model(), mnist_sized, TrainConfig(**CFG))


def test_progressive_training_resumes_a_run_killed_before_its_last_stage(tmp_path):
    """Finding 1: the stages that never started used to be passed resume=True and failed every time."""
    float_model = train(tiny_model(), get_dataset("digits"), TrainConfig(**{**CFG, "epochs": 2})).model
    cfg = TrainConfig(**{**CFG, "epochs": 1})
    calib = torch.stack([get_dataset("digits")[i][0] for i in range(64)])
    full = train_progressive(float_model, get_dataset("digits"), cfg, (4, 3, 2), calibration_data=calib,
                             checkpoint_dir=tmp_path / "full")

    def killed(bits, model):
        if bits == 3:
            raise Stop

    with pytest.raises(Stop):
        train_progressive(float_model, get_dataset("digits"), cfg, (4, 3, 2), calibration_data=calib,
                          checkpoint_dir=tmp_path / "cut", after_stage=killed)
    assert not (tmp_path / "cut" / "bits2").exists()
    resumed = train_progressive(float_model, get_dataset("digits"), cfg, (4, 3, 2), calibration_data=calib,
                                checkpoint_dir=tmp_path / "cut", resume=True)
    for b in (4, 3, 2):
        assert same(weights(full[b].model), weights(resumed[b].model)), b
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train_progressive(float_model, get_dataset("digits"), cfg, (4, 3, 2), calibration_data=calib,
                          checkpoint_dir=tmp_path / "empty", resume=True)


# ---------------------------------------------------------------------------------------------------
# the CLI: outputs checked before the work, inputs never overwritten, numbers validated
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A model directory (1 epoch on digits) and an SNN converted from it."""
    root = tmp_path_factory.mktemp("cli")
    ann, snn = root / "ann", root / "snn"
    assert cli.main(["train", "--epochs", "1", "--quiet", "--out", str(ann)]) == 0
    assert cli.main(["convert", "--model-dir", str(ann), "--method", "snm", "--calib-samples", "64", "--quiet",
                     "--out", str(snn)]) == 0
    return ann, snn


def snapshot(*dirs: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for d in dirs for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["snn/snn.json", "snn/weights.safetensors", "ann/model.json"])
def test_evaluate_refuses_to_overwrite_an_input_before_simulating(trained, target, capsys, monkeypatch):
    ann, snn = trained
    before = snapshot(ann, snn)
    monkeypatch.setattr("snnconvert.simulation.simulate", lambda *a, **k: pytest.fail("simulated"))
    out = ann.parent / target
    assert cli.main(["evaluate", "--snn", str(snn), "--model-dir", str(ann), "--T", "4", "--quiet",
                     "--out", str(out)]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert snapshot(ann, snn) == before


def test_evaluate_refuses_a_directory_as_its_output_file_before_simulating(trained, tmp_path, capsys, monkeypatch):
    ann, snn = trained
    monkeypatch.setattr("snnconvert.simulation.simulate", lambda *a, **k: pytest.fail("simulated"))
    assert cli.main(["evaluate", "--snn", str(snn), "--T", "4", "--quiet", "--out", str(tmp_path)]) == 1
    assert "is a directory; give a file name" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "1", "--init", "{ann}", "--out", "{ann}"],
    ["convert", "--model-dir", "{ann}", "--method", "snm", "--out", "{ann}"],
    ["finetune", "--snn", "{snn}", "--model-dir", "{ann}", "--out", "{snn}"],
    ["diagnose", "--snn", "{snn}", "--model-dir", "{ann}", "--T", "4", "--out", "{snn}"],
])
def test_no_command_writes_into_its_own_input_directory(trained, argv, capsys):
    ann, snn = trained
    before = snapshot(ann, snn)
    assert cli.main([a.format(ann=ann, snn=snn) for a in argv] + ["--quiet"]) == 1
    assert "is also an input of this command" in capsys.readouterr().err
    assert snapshot(ann, snn) == before


def test_an_output_directory_that_is_a_file_is_refused_up_front(trained, tmp_path, capsys):
    ann, _ = trained
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["convert", "--model-dir", str(ann), "--method", "snm", "--out", str(blocker)]) == 1
    assert "is an existing file" in capsys.readouterr().err
    assert cli.main(["train", "--epochs", "1", "--quiet", "--out", str(blocker / "m")]) == 1
    assert "cannot be written" in capsys.readouterr().err


def test_the_same_train_command_twice_gives_the_same_files(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        assert cli.main(["train", "--epochs", "2", "--augment", "--quiet", "--out", str(d)]) == 0
    for name in ("model.safetensors", "checkpoints/best.safetensors"):
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name

    def card(d: Path) -> dict:  # all but the measured epoch times and the hash of the equal weights
        c = json.loads((d / "model.json").read_text())
        for h in c["history"]:
            h.pop("seconds")
        return c

    assert card(dirs[0]) == card(dirs[1])


@pytest.mark.parametrize("flag,value,message", [
    ("--limit", "0", "argument --limit: must be >= 1, got 0"),
    ("--limit", "-5", "argument --limit: must be >= 1, got -5"),
    ("--batch-size", "0", "argument --batch-size: must be >= 1, got 0"),
    ("--T", "2.5", "argument --T: must be a whole number >= 1, got '2.5'"),
    ("--fit-images", "0", "argument --fit-images: must be >= 1"),
])
def test_cli_numbers_out_of_range_are_refused_naming_the_flag(trained, flag, value, message, capsys):
    _, snn = trained
    with pytest.raises(SystemExit) as stop:
        cli.main(["evaluate", "--snn", str(snn), flag, value])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_train_numbers_out_of_range_are_refused(capsys, tmp_path):
    for flag, value in (("--epochs", "0"), ("--lr", "-1"), ("--lr", "nan"), ("--holdout", "-1"), ("--seed", "-2")):
        with pytest.raises(SystemExit) as stop:
            cli.main(["train", flag, value, "--out", str(tmp_path / "m")])
        assert stop.value.code == 2 and f"argument {flag}: must be" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_an_unexpected_os_error_is_a_one_line_error_naming_the_file(trained, capsys, monkeypatch):
    ann, snn = trained

    def unreadable(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(snn / "snn.json"))

    monkeypatch.setattr("snnconvert.io.load", unreadable)
    assert cli.main(["evaluate", "--snn", str(snn), "--T", "2", "--quiet", "--out", str(ann.parent / "r.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("snnconvert evaluate: error: cannot access") and "snn.json" in err
    assert "Permission denied" in err and "Traceback" not in err


def test_save_model_keeps_other_files_of_the_directory(tmp_path):
    from snnconvert.modelfile import save_model

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.safetensors").write_bytes(b"x")
    save_model(tiny_model(), tmp_path, "digits_cnn", 10)
    save_model(tiny_model(1), tmp_path, "digits_cnn", 10)
    assert (tmp_path / "checkpoints" / "last.safetensors").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "model.json", "model.safetensors"]
    snnconvert.modelfile.load_model(tmp_path)


def test_equal_tensors_and_metadata_give_equal_file_bytes(tmp_path):
    """safetensors writes metadata in hash-map order; the library sorts it, so equal runs give equal files."""
    from snnconvert.io.weights import read_safetensors, write_safetensors

    tensors = {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(3, dtype=torch.float64)}
    meta = {f"key{i}": str(i) for i in range(12)}
    write_safetensors(tmp_path / "a.safetensors", tensors, meta)
    write_safetensors(tmp_path / "b.safetensors", tensors, dict(reversed(list(meta.items()))))
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    loaded, loaded_meta = read_safetensors(tmp_path / "a.safetensors")
    assert loaded_meta == meta and torch.equal(loaded["w"], tensors["w"]) and torch.equal(loaded["b"], tensors["b"])


def test_a_refused_command_leaves_no_empty_output_directory(tmp_path, capsys):
    bad = tmp_path / "no-model"
    bad.mkdir()
    assert cli.main(["convert", "--model-dir", str(bad), "--method", "snm", "--out", str(tmp_path / "a" / "b")]) == 1
    assert "is not a model directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-model"]
    with pytest.raises(ConfigError):  # the shape probe runs before the checkpoint directory is made
        train(tiny_model(), torch.utils.data.TensorDataset(torch.zeros(4, 3, 5, 5), torch.zeros(4, dtype=torch.long)),
              TrainConfig(**CFG), checkpoint_dir=tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()
