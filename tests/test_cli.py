"""The command line: help and the end-to-end demo."""
import argparse
import json

import pytest
import torch

from snnconvert import cli


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 OpenMP threads on 2 shared cores can be 10x slower than 1 for these tiny tensors
    torch.set_num_threads(1)
    yield


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
    png = (out / "accuracy_vs_T.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
