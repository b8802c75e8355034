"""Feedback on long runs and after them: progress bars with a total (so a percentage and an ETA) on
stderr for every long step, silent with progress=False; the one-screen evaluation and threshold
summaries; the firing-rate and evaluation plots."""
from __future__ import annotations

import importlib
import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import snnconvert as sc
from snnconvert.batches import count_batches
from snnconvert.errors import ConfigError, OutputError
from snnconvert.finetune import finetune_layerwise
from snnconvert.quantization import quantize
from snnconvert.report import (evaluation_summary, plot_evaluation, plot_firing_rates, threshold_granularity,
                               threshold_summary)
from snnconvert.simulation.result import LayerActivity, SimulationResult
from snnconvert.training import TrainConfig, train


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 8),
                         nn.ReLU(), nn.Linear(8, 3)).eval()


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, _net()(x).argmax(1)


def _final(err: str, desc: str) -> str:
    """The last state tqdm drew of the bar named `desc`."""
    states = [s for s in re.split(r"[\r\n]", err) if s.startswith(desc)]
    assert states, f"no {desc!r} bar in {err!r}"
    return states[-1]


# ------------------------------------------------------------------------------------------- bars

def test_count_batches_knows_tensors_pairs_datasets_and_loaders():
    x, y = _data(65)
    assert count_batches(x, 16) == 5
    assert count_batches((x, y), 16) == 5
    assert count_batches(TensorDataset(x, y), 64) == 2
    assert count_batches(DataLoader(TensorDataset(x, y), batch_size=10), 256) == 7  # the loader's own batches
    assert count_batches([(x, y)] * 3, 256) == 3

    class Stream(IterableDataset):
        def __iter__(self):
            yield x, y

    assert count_batches(Stream(), 16) is None
    assert count_batches((b for b in [x]), 16) is None


def test_simulation_bar_counts_images_to_the_total(capsys):
    x, y = _data(64)
    snn = sc.convert(_net(), x, "baseline")
    sc.simulate(snn, (x, y), 8, batch_size=16, chunk_size=3, progress=True, compile=False)
    bar = _final(capsys.readouterr().err, "simulating T=8")
    assert "100%" in bar and "64/64" in bar and "img" in bar
    sc.simulate(snn, (x, y), 8, batch_size=16, progress=False, compile=False)
    assert capsys.readouterr().err == ""


def test_simulation_bar_moves_within_a_batch(monkeypatch):
    simulate_module = importlib.import_module("snnconvert.simulation.simulate")  # the package's name is the function
    seen: list[int] = []
    real = simulate_module.progress_bar

    def recording(*args, **kwargs):
        bar = real(*args, **kwargs)
        update = bar.update
        bar.update = lambda n=1: (seen.append(n), update(n))[1]
        return bar

    monkeypatch.setattr(simulate_module, "progress_bar", recording)
    x, y = _data(64)
    sc.simulate(sc.convert(_net(), x, "baseline"), (x, y), 8, batch_size=64, chunk_size=2, progress=True,
                compile=False)
    assert seen == [16, 16, 16, 16]  # one batch of 64 images, 4 chunks of 2 of its 8 steps


def test_balancing_bar_covers_layers_times_batches(capsys):
    x, _ = _data(64)
    sc.convert(_net(), x, "rmp", batch_size=16, progress=True)  # 2 neuron layers x 4 batches
    bar = _final(capsys.readouterr().err, "threshold balancing")
    assert "100%" in bar and "8/8" in bar and "layer 2/2" in bar
    sc.convert(_net(), x, "rmp", batch_size=16)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("potential, total", [(True, 20), (False, 12)])
def test_layerwise_calibration_bar_covers_every_pass(capsys, potential, total):
    x, _ = _data(64)
    # 4 batches x (one ANN pass + per neuron layer one SNN pass, two with potential calibration)
    sc.convert(_net(), x, "calibrated", target_T=2, potential=potential, batch_size=16, progress=True)
    bar = _final(capsys.readouterr().err, "layer-wise calibration")
    assert "100%" in bar and f"{total}/{total}" in bar


def test_finetune_bar_covers_layers_epochs_and_batches(capsys):
    x, y = _data(64)
    qann = quantize(_net(), 2, x).eval()
    snn = sc.convert(qann, method="fastsnn")
    lines: list[str] = []
    finetune_layerwise(snn, qann, (x, y), epochs=2, batch_size=16, progress=True, log=lines.append)
    bar = _final(capsys.readouterr().err, "fine-tuning")
    # first accuracy (4) + 1 tuned layer x (2 epochs + 2 MSE passes) x 4 batches + its accuracy (4)
    assert "100%" in bar and "24/24" in bar
    assert len(lines) == 1 and "MSE" in lines[0]
    finetune_layerwise(snn, qann, (x, y), batch_size=16)
    assert capsys.readouterr().err == ""


def test_training_bar_has_the_epoch_total(capsys):
    x = torch.randn(64, 2)
    ds = TensorDataset(x, torch.arange(64) % 3)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
    train(model, ds, TrainConfig(epochs=1, lr=0.01, batch_size=16, progress=True))
    assert "/4 [" in _final(capsys.readouterr().err, "epoch 1/1")
    train(model, ds, TrainConfig(epochs=1, lr=0.01, batch_size=16, progress=False))
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------- summary

def _result(**kw) -> SimulationResult:
    """T=8, 100 samples; ANN 90%; one layer of 10 neurons spiking from t=3, one silent layer."""
    base = dict(T=8, samples=100, accuracy=[0.10, 0.30, 0.45, 0.50, 0.85, 0.89, 0.90, 0.895], ann_accuracy=0.9,
                layers=[LayerActivity("conv1", 10, [0, 0, 50, 50, 50, 50, 50, 50]),
                        LayerActivity("fc_with_a_rather_long_name_indeed", 1000, [0.0] * 8)],
                synops_per_step=[1e6] * 8, static_macs_per_sample=1000.0, ann_macs_per_sample=1e5,
                method={"name": "rmp"}, seconds=2.5)
    base.update(kw)
    return SimulationResult(**base)


def test_evaluation_summary_shows_accuracy_latency_rates_and_energy():
    text = evaluation_summary(_result())
    assert text.splitlines()[0] == "SNN evaluation: 100 samples, T=8, method rmp, 2.5 s"
    assert "accuracy after t steps (ANN 90.00%):\n     t:      1      2      4      8\n" \
           "     %:  10.00  30.00  50.00  89.50" in text
    # 0.9 - 0.01 is 0.8900000000000001 in floats: t=6's 89% counts as within 1%
    assert "within 1% of the ANN from t=6 on (89.00% at t=6)" in text
    assert ("firing rate over T=8 steps (spikes per neuron per step):\n"
            "  layer                       neurons     rate first spike\n"
            "  conv1                            10   0.0375         t=3\n"
            "  fc_with_a_rather_long_..      1,000   0.0000       never\n"
            "  all                           1,010   0.0004") in text
    # synops 8e6 / 100 = 80k per sample: 0.9 x 80k + 4.6 x 1000 x 8 = 108,800 pJ; ANN 4.6 x 1e5 = 460,000 pJ
    assert "  SNN at T=8: 109 nJ (80k synops), 0.24x the ANN" in text
    assert "  SNN at t=6 (within 1%): 81.6 nJ, 0.18x the ANN" in text
    assert "  ANN: 460 nJ (100k MACs)" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_evaluation_summary_without_reaching_or_knowing_the_ann():
    far = evaluation_summary(_result(), ann_accuracy=0.99)
    assert "(ANN 99.00%)" in far and "not within 1% of the ANN by T=8 (best 90.00% at t=7)" in far
    assert "SNN at t=" not in far
    unknown = evaluation_summary(_result(ann_accuracy=None, ann_macs_per_sample=None))
    assert "within 1% of the ANN: unknown (no ANN accuracy; pass ann= to simulate())" in unknown
    assert "  ANN: unknown (pass ann= to simulate())" in unknown and "x the ANN" not in unknown
    bare = evaluation_summary(_result(layers=[], synops_per_step=[], mean_steps=5.25))
    assert "activity: not recorded" in bare and "spikes per neuron" not in bare
    assert "early exit: 5.25 steps per sample on average (of T=8)" in bare


def test_long_runs_wrap_the_accuracy_row():
    T = 2048
    text = evaluation_summary(_result(T=T, accuracy=[0.5] * T, layers=[], synops_per_step=[]))
    rows = [line for line in text.splitlines() if line.startswith("     t:")]
    assert rows == ["     t:" + "".join(f"{t:>7}" for t in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
                    "     t:   1024   2048"]


def test_summaries_refuse_an_empty_result():
    with pytest.raises(ConfigError, match="empty"):
        evaluation_summary(SimulationResult(T=0, samples=0, accuracy=[]))
    with pytest.raises(ConfigError, match="SimulationResult"):
        evaluation_summary({"T": 8})  # type: ignore[arg-type]


def test_threshold_summary_per_layer():
    snn = sc.convert(_net(), method="baseline", threshold=1.0)
    conv, fc = snn.neurons().values()
    conv.threshold = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    fc.threshold = torch.tensor(0.5)
    text = threshold_summary(snn)
    assert text == ("thresholds per neuron layer:\n"
                    "  layer neuron  granularity      mean       min       max\n"
                    "  _1    if_hard channel x3          2         1         3\n"
                    "  _4    if_hard layer             0.5       0.5       0.5")
    assert evaluation_summary(_result(), snn=snn).endswith(text)
    assert threshold_granularity(torch.ones(3, 4, 4)) == "neuron x48"
    assert threshold_granularity(torch.ones(8)) == "channel x8"


# ------------------------------------------------------------------------------------------ plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_firing_rate_and_evaluation_plots_are_pngs(tmp_path):
    path = plot_firing_rates(_result(), tmp_path / "rates.png")
    data = path.read_bytes()
    assert data.startswith(PNG) and 10_000 < len(data) < 500_000
    written = plot_evaluation(_result(), tmp_path / "plots")
    assert sorted(written) == ["accuracy", "firing_rates"]
    for p in written.values():
        assert p.parent == tmp_path / "plots" and p.read_bytes().startswith(PNG) and p.stat().st_size > 10_000
    assert sorted(f.name for f in (tmp_path / "plots").iterdir()) == ["accuracy_vs_T.png", "firing_rates.png"]
    only = plot_evaluation(_result(layers=[], synops_per_step=[]), tmp_path / "bare")
    assert list(only) == ["accuracy"]


def test_plots_refuse_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        plot_firing_rates(SimulationResult(T=0, samples=0, accuracy=[]), tmp_path / "a.png")
    with pytest.raises(ConfigError, match="record=True"):
        plot_firing_rates(_result(layers=[]), tmp_path / "a.png")
    with pytest.raises(ConfigError, match="empty"):
        plot_evaluation(SimulationResult(T=0, samples=0, accuracy=[]), tmp_path / "d")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        plot_firing_rates(_result(), blocker / "rates.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
