"""train(): learning, exact resume, atomic checkpoints, config and checkpoint errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnconvert.io.weights as weights_io
from snnconvert.errors import CheckpointError, ConfigError, DataError, ModelError
from snnconvert.quantization import QuantReLU
from snnconvert.training import (
    TrainConfig,
    evaluate_accuracy,
    load_weights,
    save_weights,
    train,
)


def blobs(n: int = 240, seed: int = 0) -> TensorDataset:
    """Three well-separated Gaussian blobs in 2-D."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    y = torch.arange(n) % 3
    x = centers[y] + 0.4 * torch.randn(n, 2, generator=gen)
    return TensorDataset(x, y)


def mlp(seed: int = 0, quant: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    act = QuantReLU(2, alpha=2.0) if quant else nn.ReLU()
    return nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), act, nn.Dropout(0.2), nn.Linear(16, 3))


def cfg(**kw: object) -> TrainConfig:
    base = dict(epochs=4, lr=0.05, batch_size=32, progress=False)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_tiny_mlp_learns_separable_blobs() -> None:
    data, val = blobs(), blobs(90, seed=1)
    model = mlp(1)
    before = evaluate_accuracy(model, val)
    result = train(model, data, cfg(epochs=5, lr=0.1), val_set=val)
    assert before < 0.7
    assert result.history[-1]["val_acc"] > 0.95
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert set(result.history[0]) == {"epoch", "train_loss", "train_acc", "val_acc", "lr", "seconds"}
    assert not model.training


def test_quantized_mlp_trains_alpha_with_adamw() -> None:
    model = mlp(2, quant=True)
    result = train(model, blobs(), cfg(epochs=4, lr=0.02, optimizer="adamw"), val_set=blobs(90, seed=1))
    assert result.best_val_acc is not None and result.best_val_acc > 0.9
    assert model[2].alpha.item() != 2.0


def test_cosine_schedule_and_log_records() -> None:
    records: list[dict] = []
    result = train(mlp(), blobs(), cfg(epochs=4, lr=0.1), log=records.append)
    assert records == result.history
    assert [r["lr"] for r in records] == pytest.approx([0.1, 0.1 * (1 + 2**-0.5) / 2, 0.05, 0.1 * (1 - 2**-0.5) / 2])
    assert records[0]["val_acc"] is None


def test_same_seed_same_weights_and_caller_rng_untouched() -> None:
    model, data = mlp(), blobs()
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = train(model, data, cfg(epochs=2)).model
    assert torch.equal(torch.rand(1), expected_next)
    b = train(mlp(), blobs(), cfg(epochs=2)).model
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)


class _Stop(Exception):
    pass


def _stop_after(n: int):
    def log(record: dict) -> None:
        if record["epoch"] == n:
            raise _Stop
    return log


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_gives_same_weights_as_uninterrupted_run(tmp_path: Path, optimizer: str) -> None:
    config = cfg(epochs=4, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01)
    data, val = blobs(), blobs(60, seed=1)
    straight = train(mlp(0), data, config, val_set=val)

    with pytest.raises(_Stop):
        train(mlp(0), data, config, val_set=val, checkpoint_dir=tmp_path, log=_stop_after(2))
    resumed = train(mlp(7), data, config, val_set=val, checkpoint_dir=tmp_path, resume=True)

    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    for (k, x), y in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6), k
    for h1, h2 in zip(straight.history, resumed.history):
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-6)
    assert (tmp_path / "best.safetensors").is_file()
    load_weights(mlp(3), tmp_path / "best.safetensors")


def test_resume_constant_schedule_with_more_epochs(tmp_path: Path) -> None:
    data = blobs()
    straight = train(mlp(0), data, cfg(epochs=4, schedule="constant"))
    train(mlp(0), data, cfg(epochs=2, schedule="constant"), checkpoint_dir=tmp_path)
    resumed = train(mlp(5), data, cfg(epochs=4, schedule="constant"), checkpoint_dir=tmp_path, resume=True)
    for x, y in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6)


def test_resume_with_different_config_is_refused(tmp_path: Path) -> None:
    train(mlp(), blobs(), cfg(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="lr"):
        train(mlp(), blobs(), cfg(epochs=1, lr=0.5), checkpoint_dir=tmp_path, resume=True)


def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    real_save = weights_io.save_file
    calls = {"n": 0}

    def flaky_save(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_save(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(b"\x10\x00half a header")  # crash mid-way through writing
        raise OSError("disk full")

    monkeypatch.setattr(weights_io, "save_file", flaky_save)
    config = cfg(epochs=2)
    with pytest.raises(OSError, match="disk full"):
        train(mlp(), blobs(), config, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
    monkeypatch.setattr(weights_io, "save_file", real_save)

    resumed = train(mlp(), blobs(), config, checkpoint_dir=tmp_path, resume=True)  # epoch 1 was kept
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    straight = train(mlp(), blobs(), config)
    for x, y in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6)


@pytest.mark.parametrize("content", [b"not a safetensors file", b""])
def test_corrupt_checkpoint_raises_checkpoint_error_naming_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "last.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match="last.safetensors"):
        train(mlp(), blobs(), cfg(epochs=1), checkpoint_dir=tmp_path, resume=True)


def test_truncated_checkpoint_raises_checkpoint_error(tmp_path: Path) -> None:
    train(mlp(), blobs(), cfg(epochs=1), checkpoint_dir=tmp_path)
    path = tmp_path / "last.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="last.safetensors"):
        train(mlp(), blobs(), cfg(epochs=1), checkpoint_dir=tmp_path, resume=True)


def test_missing_checkpoint_and_resume_without_dir(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="last.safetensors"):
        train(mlp(), blobs(), cfg(epochs=1), checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        train(mlp(), blobs(), cfg(epochs=1), resume=True)


def test_weights_roundtrip_and_mismatch(tmp_path: Path) -> None:
    src, dst = mlp(1), mlp(2)
    save_weights(src, tmp_path / "w.safetensors")
    load_weights(dst, tmp_path / "w.safetensors")
    for x, y in zip(src.state_dict().values(), dst.state_dict().values()):
        assert torch.equal(x, y)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_weights(nn.Sequential(nn.Linear(2, 16), nn.Linear(16, 3)), tmp_path / "w.safetensors")
    wide = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 3))
    with pytest.raises(CheckpointError, match="shape"):
        load_weights(wide, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        load_weights(dst, tmp_path / "nope.safetensors")


def test_tied_weights_can_be_saved(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight
    save_weights(model, tmp_path / "tied.safetensors")
    load_weights(model, tmp_path / "tied.safetensors")


@pytest.mark.parametrize(
    "bad",
    [
        dict(optimizer="adam"), dict(schedule="step"), dict(epochs=0), dict(lr=0.0), dict(lr=float("nan")),
        dict(batch_size=0), dict(momentum=1.0), dict(weight_decay=-1.0), dict(label_smoothing=1.0),
        dict(grad_clip=0.0), dict(seed=-1), dict(epochs=2.5),
    ],
)
def test_bad_config_raises_config_error(bad: dict) -> None:
    name = next(iter(bad))
    with pytest.raises(ConfigError, match=name):
        cfg(**bad)


class _NaNParam(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 3)
        self.unused = nn.Parameter(torch.tensor(float("nan")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_divergence_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="diverged at epoch 1.*learning rate"):
        train(_NaNParam(), blobs(), cfg(epochs=2), checkpoint_dir=tmp_path)
    assert not (tmp_path / "last.safetensors").exists()
    model = mlp()
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(ModelError, match="diverged at epoch 1"):
        train(model, blobs(), cfg(epochs=2))


def test_evaluate_accuracy_restores_each_modules_mode() -> None:
    model = mlp()
    model.train()
    model[1].eval()
    data = blobs(30)
    acc_ds = evaluate_accuracy(model, data, batch_size=7)
    acc_dl = evaluate_accuracy(model, DataLoader(data, batch_size=11))
    assert acc_ds == acc_dl and 0.0 <= acc_ds <= 1.0
    assert model.training and not model[1].training and model[3].training


def test_empty_data_raises_data_error() -> None:
    empty = TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(DataError, match="empty"):
        train(mlp(), empty, cfg(epochs=1))
    with pytest.raises(DataError):
        evaluate_accuracy(mlp(), empty)
