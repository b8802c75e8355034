"""The command line: help and the end-to-end demo."""
import argparse
import json

import pytest

from snnconvert import cli


def commands() -> list[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_help_lists_every_command(capsys):
    names = commands()
    assert "demo" in names
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in names:
        assert name in out
    assert cli.main([]) == 2  # no command: help, and a usage exit code
    assert "demo" in capsys.readouterr().out


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--out", "--epochs", "--T", "--quiet"):
        assert option in out


def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--epochs", "2", "--T", "16", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "T=16" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["T"] == 16
    assert 0.5 < results["ann_accuracy"] <= 1.0
    from snnconvert.demo import DEMO_METHODS

    assert set(DEMO_METHODS) <= set(results["methods"])
    for label, m in results["methods"].items():
        acc = m["accuracy"]
        assert len(acc) == 16, label
        assert all(0.0 <= a <= 1.0 for a in acc), label
    # the printed conclusions are this run's numbers, checked independently here
    assert "conclusions (this run):" in printed and "steps to come within 1% of the ANN" in printed
    within = {k: m["steps_within_1pct_of_ann"] or float("inf") for k, m in results["methods"].items()}
    claims = {c["claim"]: c["holds"] for c in results["conclusions"]}
    assert claims["soft reset (RMP, alpha=1) comes within 1% of the ANN in fewer steps than hard reset"] == (
        within["RMP, alpha=1"] < within["baseline IF, max"])
    assert claims["the calibrated preset comes within 1% of the ANN in the fewest steps"] == (
        within["calibrated, target T=8"] == min(within.values()))
    for b, f in results["fastsnn"].items():
        assert claims[f"Fast-SNN {b}-bit: signed IF at least as accurate as unsigned IF at T={f['T']}"] == (
            f["signed_if"] >= f["unsigned_if"])
    for c in results["conclusions"]:
        assert f"{'holds' if c['holds'] else 'DOES NOT HOLD'}: {c['claim']}" in printed
    png = (out / "accuracy_vs_T.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_train_convert_evaluate_finetune_pipeline(tmp_path, capsys):
    """The Fast-SNN path through the CLI: float ANN -> 2-bit QANN -> SNN -> evaluate -> fine-tune."""
    ann, qann, snn, tuned = (str(tmp_path / n) for n in ("ann", "q2", "snn", "tuned"))
    assert cli.main(["train", "--epochs", "3", "--out", ann, "--quiet"]) == 0
    assert cli.main(["train", "--init", ann, "--bits", "2", "--epochs", "2", "--out", qann, "--quiet"]) == 0
    card = json.loads((tmp_path / "q2" / "model.json").read_text())
    assert card["bits"] == 2 and card["arch"] == "digits_cnn"
    assert cli.main(["convert", "--model-dir", qann, "--method", "fastsnn", "--out", snn, "--quiet"]) == 0
    res = tmp_path / "r.json"
    assert cli.main(["evaluate", "--snn", snn, "--model-dir", qann, "--out", str(res), "--limit", "100",
                     "--quiet"]) == 0
    r = json.loads(res.read_text())
    assert r["T"] == 3 and len(r["accuracy"]) == 3 and r["ann_accuracy"] is not None
    assert cli.main(["finetune", "--snn", snn, "--model-dir", qann, "--out", tuned, "--limit", "128",
                     "--quiet"]) == 0
    assert (tmp_path / "tuned" / "snn.json").is_file()
    early = tmp_path / "e.json"
    assert cli.main(["evaluate", "--snn", snn, "--out", str(early), "--limit", "100", "--T", "16",
                     "--exit-when", "confidence=0.9,patience=2", "--quiet"]) == 0
    e = json.loads(early.read_text())
    assert e["exit_rule"]["confidence"] == 0.9 and 1 <= e["mean_steps"] <= 16
    capsys.readouterr()
    fitted = tmp_path / "f.json"
    assert cli.main(["evaluate", "--snn", snn, "--model-dir", qann, "--out", str(fitted), "--limit", "100", "--T", "8",
                     "--exit-when", "fitted:tolerance=0.02", "--fit-images", "200", "--quiet"]) == 0
    f = json.loads(fitted.read_text())
    assert f["exit_rule"]["rule"] == "ExitOnMargin" and f["exit_rule"]["fitted"]["tolerance"] == 0.02
    assert len(f["exit_rule"]["thresholds"]) == 8 and 1 <= f["mean_steps"] <= 8
    held_out = json.loads((tmp_path / "q2" / "model.json").read_text())["holdout"]["images"]
    assert held_out == round(0.1 * 1437)  # train's default validation split: 10% of the training images
    assert f"exit rule fitted on {held_out} training images" in capsys.readouterr().out  # the held-out ones only
    assert cli.main(["evaluate", "--snn", snn, "--out", str(early), "--exit-when", "speed=3", "--quiet"]) == 1
    assert "--exit-when takes" in capsys.readouterr().err
    assert cli.main(["convert", "--model-dir", str(tmp_path / "missing"), "--out", snn]) == 1
    assert "not a model directory" in capsys.readouterr().err


def test_train_takes_model_options_and_records_them(tmp_path, capsys):
    out = tmp_path / "vgg"
    assert cli.main(["train", "--model", "vgg_small", "--model-kwargs", '{"width": 4, "in_channels": 1}',
                     "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    card = json.loads((out / "model.json").read_text())
    assert card["arch"] == "vgg_small" and card["model_kwargs"] == {"width": 4, "in_channels": 1}
    from snnconvert.modelfile import load_model

    model, _ = load_model(out)
    assert model.features[0].out_channels == 4  # rebuilt with the recorded options


@pytest.mark.parametrize("text, words", [("{width: 4}", "JSON object"), ("[4]", "JSON object"),
                                         ('{"depth": 3}', "unknown option")])
def test_train_rejects_bad_model_options(tmp_path, capsys, text, words):
    assert cli.main(["train", "--model", "vgg_small", "--model-kwargs", text, "--epochs", "1",
                     "--out", str(tmp_path / "m"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert words in err and not (tmp_path / "m" / "model.json").exists()


def test_train_validates_on_held_out_training_images(tmp_path, capsys):
    from snnconvert.data import get_dataset, holdout_split
    from snnconvert.modelfile import load_model
    from snnconvert.training import evaluate_accuracy

    out = tmp_path / "m"
    assert cli.main(["train", "--epochs", "1", "--holdout", "300", "--augment", "--out", str(out), "--quiet"]) == 0
    model, card = load_model(out)
    assert card["holdout"] == {"split": "train", "images": 300, "seed": cli.HOLDOUT_SEED}
    _, held = holdout_split(get_dataset("digits", train=True), 300, card["holdout"]["seed"])
    from snnconvert.modelfile import training_parts

    trained_on, held_out = training_parts(card, get_dataset("digits", train=True))
    assert held_out.indices == held.indices and len(trained_on) + len(held_out) == len(trained_on.dataset)
    # the validation accuracy in the history is the held-out images' (no augmentation), not the test split's
    assert card["history"][-1]["val_acc"] == pytest.approx(evaluate_accuracy(model, held))
    assert cli.main(["train", "--epochs", "1", "--holdout", "100000", "--out", str(tmp_path / "n"), "--quiet"]) != 0
    assert "0 < n <" in capsys.readouterr().err


def test_diagnose_writes_a_table_json_and_plot(tmp_path, capsys):
    ann, snn, out = (str(tmp_path / n) for n in ("ann", "snn", "diag"))
    assert cli.main(["train", "--epochs", "1", "--out", ann, "--quiet"]) == 0
    assert cli.main(["convert", "--model-dir", ann, "--method", "snm", "--out", snn, "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["diagnose", "--snn", snn, "--model-dir", ann, "--T", "8", "--limit", "60", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "err@8" in printed and "silent%" in printed
    d = json.loads((tmp_path / "diag" / "diagnosis.json").read_text())
    assert d["T"] == 8 and d["samples"] == 60 and d["steps"] == [1, 2, 4, 8] and len(d["layers"]) >= 2
    assert (tmp_path / "diag" / "diagnosis.png").stat().st_size > 1000
    with pytest.raises(SystemExit) as stop:  # argparse refuses it, naming the flag
        cli.main(["diagnose", "--snn", snn, "--model-dir", ann, "--T", "0", "--out", out])
    assert stop.value.code == 2 and "argument --T: must be >= 1, got 0" in capsys.readouterr().err
    cal = str(tmp_path / "cal")
    assert cli.main(["convert", "--model-dir", ann, "--method", "calibrated", "--target-T", "4", "--calib-samples",
                     "128", "--out", cal, "--quiet"]) == 0
    assert "method calibrated" in capsys.readouterr().out
    desc = json.loads((tmp_path / "cal" / "snn.json").read_text())
    assert desc["method"]["target_T"] == 4 and desc["default_T"] == 4 and "layerwise_calibration" in desc["method"]
    with pytest.raises(SystemExit) as stop:
        cli.main(["convert", "--model-dir", ann, "--method", "calibrated", "--target-T", "0", "--out",
                  str(tmp_path / "bad")])
    assert stop.value.code == 2 and "argument --target-T: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
