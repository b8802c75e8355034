"""Data parallelism: sharding, exact merging of simulation results, and real 2-process torchrun runs
(gloo, loopback only) of train() and `snnconvert evaluate`."""
from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import snnconvert
from snnconvert import cli, distributed
from snnconvert.distributed import DistInfo, batch_shards, shard_indices
from snnconvert.errors import ConfigError
from snnconvert.simulation import LayerActivity, SimulationResult

SRC = Path(__file__).resolve().parents[1] / "src"
multiprocess = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="this PyTorch build has no torch.distributed with the gloo backend; multi-process runs need it",
)


# --------------------------------------------------------------------------- single process


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shard_indices_cover_every_index_exactly_once(world):
    for n in range(0, 13):
        shards = [shard_indices(n, r, world) for r in range(world)]
        assert [i for s in shards for i in s] == list(range(n))  # contiguous, in order, no duplicates
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert shards == [shard_indices(n, r, world) for r in range(world)]  # deterministic


def test_shard_indices_rejects_bad_arguments():
    for args in [(-1, 0, 1), (4, 2, 2), (4, 0, 0), (4, -1, 2), (4.0, 0, 1)]:
        with pytest.raises(ConfigError):
            shard_indices(*args)


def test_batch_shards_split_each_global_batch():
    order = [9, 3, 7, 1, 0, 5, 2, 8, 4, 6, 10]
    per_rank = [list(batch_shards(order, 4, r, 3)) for r in range(3)]
    assert [size for _, size in per_rank[0]] == [4, 4, 3]
    assert all(len(p) == 3 for p in per_rank)  # same number of steps on every rank
    for step, start in enumerate(range(0, len(order), 4)):
        assert [i for p in per_rank for i in p[step][0]] == order[start:start + 4]
    assert per_rank[2][2][0] == [10] and per_rank[0][2][0] == [4]
    short = [list(batch_shards([5], 4, r, 2)) for r in range(2)]
    assert short == [[([5], 1)], [([], 1)]]  # rank 1 has nothing in a 1-sample batch


def result(samples, correct, spikes, synops, ann_correct=None, hist=None, seconds=1.0):
    T = len(correct)
    return SimulationResult(
        T=T, samples=samples, accuracy=[c / samples for c in correct],
        ann_accuracy=None if ann_correct is None else ann_correct / samples,
        layers=[LayerActivity("a", 10, spikes), LayerActivity("b", 3, [s / 2 for s in spikes])],
        synops_per_step=synops, static_macs_per_sample=12.5, ann_macs_per_sample=40.0,
        method={"name": "rmp"}, seconds=seconds, exit_steps_histogram=hist,
        mean_steps=None if hist is None else sum(t * h for t, h in enumerate(hist, 1)) / samples,
        exit_rule=None if hist is None else {"patience": 2},
    )


def test_merge_simulation_results_is_exact():
    parts = [result(3, [1, 2, 3], [4.0, 6.0, 2.0], [100.0, 7.0, 9.0], ann_correct=2, hist=[0, 1, 2], seconds=2.0),
             result(7, [0, 5, 6], [1.0, 0.0, 8.0], [3.0, 0.0, 1.0], ann_correct=7, hist=[4, 0, 3], seconds=5.0)]
    whole = result(10, [1, 7, 9], [5.0, 6.0, 10.0], [103.0, 7.0, 10.0], ann_correct=9, hist=[4, 1, 5], seconds=5.0)
    merged = SimulationResult.merge(parts)
    assert merged == whole  # every field, bit for bit: accuracies 1/10, 7/10, 9/10 computed from counts
    assert merged.accuracy == [0.1, 0.7, 0.9] and merged.ann_accuracy == 0.9
    assert merged.mean_steps == (1 * 4 + 2 * 1 + 3 * 5) / 10
    assert merged.summary() == whole.summary()
    assert SimulationResult.merge(parts[:1]) == parts[0]
    assert parts[0].samples == 3  # inputs untouched


def test_merge_rejects_results_of_different_runs():
    a = result(3, [1, 2, 3], [4.0, 6.0, 2.0], [1.0, 1.0, 1.0])
    for b in (result(3, [1, 2], [4.0, 6.0], [1.0, 1.0]), result(3, [1, 2, 3], [4.0, 6.0, 2.0], [1.0, 1.0, 1.0], 2)):
        with pytest.raises(ConfigError, match="same model and options"):
            SimulationResult.merge([a, b])
    with pytest.raises(ConfigError):
        SimulationResult.merge([])


def tiny_snn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3)).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(23, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (23,), generator=g)
    return model, snnconvert.convert(model, x, "rmp"), x, y


def test_merged_shards_equal_one_simulation_of_everything():
    from snnconvert.simulation.early_exit import ExitWhenStable

    model, snn, x, y = tiny_snn()
    for exit_when in (None, ExitWhenStable(patience=2)):
        whole = snnconvert.simulate(snn, (x, y), 12, ann=model, batch_size=5, exit_when=exit_when)
        parts = [snnconvert.simulate(snn, (x[i[0]:i[-1] + 1], y[i[0]:i[-1] + 1]), 12, ann=model, batch_size=5,
                                     exit_when=exit_when) for i in (shard_indices(23, r, 3) for r in range(3))]
        merged = SimulationResult.merge(parts)
        merged.seconds = whole.seconds
        assert merged == whole


def test_without_torchrun_everything_is_a_single_process_no_op(monkeypatch):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert distributed.init_from_env() == DistInfo(0, 1, 0, torch.device("cpu"))
    assert distributed.is_main() and distributed.rank_and_world() == (0, 1)
    t = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    r = result(3, [1, 2, 3], [4.0, 6.0, 2.0], [1.0, 1.0, 1.0])
    assert r.reduce_across_ranks() is r
    distributed.barrier()
    distributed.cleanup()


def test_a_partial_torchrun_environment_is_a_config_error(monkeypatch):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="WORLD_SIZE, LOCAL_RANK missing"):
        distributed.init_from_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="not an integer"):
        distributed.init_from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="RANK < WORLD_SIZE"):
        distributed.init_from_env()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="number of seconds > 0"):
        distributed._timeout()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "90")
    assert distributed._timeout()["timeout"].total_seconds() == 90


# --------------------------------------------------------------------------- two processes (torchrun)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ABORT = "terminate called without an active exception"


def torchrun(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 ARGS` on loopback (rendezvous and gloo traffic on 127.0.0.1).

    A worker that aborts inside libtorch/gloo with ABORT (seen once in CI, in ~100 local runs never;
    cause not found) gets the run repeated once, with a warning that shows the aborted run's output,
    so the assertions still judge a complete run.
    """
    proc = _torchrun_once(*args, timeout=timeout)
    if proc.returncode != 0 and ABORT in proc.stderr:
        workers = proc.stderr.split("Traceback (most recent call last)")[0]  # before torchrun's own report
        warnings.warn(f"torchrun worker aborted in C++ ({ABORT}); repeating the run once. "
                      f"The workers' stderr ended: {workers[-1500:]}", RuntimeWarning)
        proc = _torchrun_once(*args, timeout=timeout)
    return proc


def _torchrun_once(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    for name in distributed.ENV_VARS:
        env.pop(name, None)
    loopback = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    if loopback:
        env["GLOO_SOCKET_IFNAME"] = loopback[0]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


WORKER = '''
import json, sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

import snnconvert.training.checkpoint as checkpoint
from snnconvert import distributed
from snnconvert.training import TrainConfig, train


def blobs(n, seed):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])[y] + 0.5 * torch.randn(n, 2, generator=gen)
    return TensorDataset(x, y)


class Jittered(torch.utils.data.Dataset):
    """Blobs with per-item random jitter from the dataset's own generator (like the image datasets'
    augmentation): train() must reseed it per (seed, epoch, rank) for the resumed run to match."""

    augment = True

    def __init__(self, inner):
        self.inner, self.gen = inner, torch.Generator().manual_seed(0)

    def reseed(self, seed):
        self.gen.manual_seed(seed)

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        x, y = self.inner[i]
        return x + 0.1 * torch.randn(2, generator=self.gen), y


def net(bn, seed):
    torch.manual_seed(seed)
    if bn:
        return nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))


def phase(job, text):
    # on stderr, so that a crash in CI shows how far each rank got
    print(f"rank {job.rank}: {text}", file=sys.stderr, flush=True)


def main(out, job):
    saves, logs = [], []
    real_save = checkpoint.write_file  # every file train() writes goes through it
    checkpoint.write_file = lambda tensors, path, meta: (saves.append(path.name), real_save(tensors, path, meta))
    # each rank starts from a different init (seed = rank): DDP must start every rank from rank 0's
    # BatchNorm + dropout, sharded validation, checkpoints, and an interrupted + resumed run
    cfg = TrainConfig(epochs=4, lr=0.05, batch_size=32, schedule="constant", progress=False)
    data, val = Jittered(blobs(240, 0)), blobs(90, 1)
    phase(job, "joined")
    full = train(net(True, job.rank), data, cfg, val_set=val, checkpoint_dir=out / "full", log=logs.append)
    train(net(True, job.rank), data, replace(cfg, epochs=2), val_set=val, checkpoint_dir=out / "resumed")
    resumed = train(net(True, job.rank), data, cfg, val_set=val, checkpoint_dir=out / "resumed", resume=True)
    phase(job, "trained with BatchNorm")
    # no BatchNorm: plain global-batch SGD; 225 = 7 x 32 + 1 leaves rank 1 nothing in the last batch
    plain = train(net(False, job.rank), blobs(225, 2), TrainConfig(epochs=3, lr=0.1, batch_size=32, progress=False))
    tensors = {f"{name}.{k}": v for name, res in (("full", full), ("resumed", resumed), ("plain", plain))
               for k, v in res.model.state_dict().items()}
    save_file(tensors, str(out / f"rank{job.rank}.safetensors"))
    (out / f"rank{job.rank}.json").write_text(json.dumps({
        "world": job.world_size, "saves": saves, "logs": len(logs), "training": [full.model.training],
        "history": {"full": full.history, "resumed": resumed.history, "plain": plain.history}}))
    phase(job, "wrote results")


if __name__ == "__main__":
    with distributed.process_group() as job:
        main(Path(sys.argv[1]), job)
    phase(job, "left the process group")
'''


def _without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@multiprocess
def test_two_process_training_matches_across_ranks_and_resumes_exactly(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ddp = tmp_path / "ddp"
    ddp.mkdir()
    proc = torchrun(str(script), str(ddp))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for r in (0, 1):
        assert f"rank {r}: left the process group" in proc.stderr
    ranks = [load_file(ddp / f"rank{r}.safetensors") for r in (0, 1)]
    info = [json.loads((ddp / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in info] == [2, 2]

    # every rank ends with the same weights (and BatchNorm buffers) and the same global history
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert all(_without_seconds(info[0]["history"][k]) == _without_seconds(info[1]["history"][k])
               for k in info[0]["history"])
    # it learned, and an interrupted + resumed run is bit-identical to an uninterrupted one
    full = info[0]["history"]["full"]
    assert full[-1]["train_loss"] < full[0]["train_loss"] and full[-1]["val_acc"] > 0.9
    assert _without_seconds(info[0]["history"]["resumed"]) == _without_seconds(full)
    for key in [k for k in ranks[0] if k.startswith("full.")]:
        assert torch.equal(ranks[0][key], ranks[0]["resumed." + key[len("full."):]]), key
    # only rank 0 writes checkpoints and logs
    assert info[1]["saves"] == [] and info[1]["logs"] == 0
    assert "last.safetensors" in info[0]["saves"] and info[0]["logs"] == 4
    assert info[0]["training"] == [False]

    # without BatchNorm the 2-process run is global-batch SGD in one process, up to float rounding
    ns = runpy.run_path(str(script), run_name="worker")  # its blobs() and net(), without running main()
    reference, losses = plain_sgd(ns["net"](False, 0), ns["blobs"](225, 2), epochs=3, lr=0.1, batch_size=32)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(ranks[0]["plain." + key], value, rtol=1e-4, atol=1e-5)
    assert [h["train_loss"] for h in info[0]["history"]["plain"]] == pytest.approx(losses, rel=1e-4)


def plain_sgd(model, data, epochs, lr, batch_size):
    """What train() promises under DDP, in one process: SGD (momentum 0.9, weight decay 5e-4, cosine lr)
    on the mean loss of each global batch of randperm(n) from the (seed 0, epoch) generator."""
    from snnconvert.training import TrainConfig
    from snnconvert.training.loop import _epoch_seed

    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, progress=False)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    x, y = data.tensors
    losses = []
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(epoch)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(_epoch_seed(0, epoch)))
        total = 0.0
        for batch in order.split(batch_size):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        losses.append(total / len(y))
    return model, losses


@multiprocess
def test_evaluate_through_torchrun_equals_one_process(tmp_path):
    from torch.utils.data import TensorDataset

    from snnconvert.data import dataset_as_tensors, get_dataset
    from snnconvert.modelfile import save_model
    from snnconvert.models import create_model
    from snnconvert.training import TrainConfig, train

    x, y = dataset_as_tensors(get_dataset("digits", train=True))
    torch.manual_seed(0)
    model = train(create_model("digits_cnn", num_classes=10), TensorDataset(x[:256], y[:256]),
                  TrainConfig(epochs=2, lr=3e-3, optimizer="adamw", batch_size=64, progress=False)).model
    model_dir, snn_dir = tmp_path / "model", tmp_path / "snn"
    save_model(model, model_dir, "digits_cnn", 10, dataset="digits")
    assert cli.main(["convert", "--model-dir", str(model_dir), "--method", "rmp", "--calib-samples", "64",
                     "--calibration-steps", "8", "--quiet", "--out", str(snn_dir)]) == 0
    evaluate = ["evaluate", "--snn", str(snn_dir), "--model-dir", str(model_dir), "--T", "16", "--batch-size", "16",
                "--quiet"]
    assert cli.main([*evaluate, "--limit", "61", "--out", str(tmp_path / "one.json")]) == 0

    proc = torchrun("-m", "snnconvert.cli", *evaluate, "--limit", "61", "--out", str(tmp_path / "two.json"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.count("results written to") == 1  # rank 0 alone prints and writes
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["samples"] == 61
    assert two["accuracy"] == one["accuracy"]
    assert 0 < one["accuracy"][-1] < 1
    del one["seconds"], two["seconds"]
    assert two == one  # spikes, synops, ANN accuracy and energy too

    # an error raised on every rank ends every rank: 1 image cannot be split over 2 ranks
    proc = torchrun("-m", "snnconvert.cli", *evaluate, "--limit", "1", "--out", str(tmp_path / "three.json"),
                    timeout=120)
    assert proc.returncode != 0
    assert "cannot be shared by 2 processes" in proc.stderr + proc.stdout
    assert not (tmp_path / "three.json").exists()


def test_process_group_without_torchrun_is_a_no_op_and_lets_errors_through(monkeypatch):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    with distributed.process_group() as job:
        assert job == DistInfo() and not torch.distributed.is_initialized()
    with pytest.raises(ValueError, match="boom"), distributed.process_group():
        raise ValueError("boom")


ONE_RANK_FAILS = '''
import sys, time
import torch
from snnconvert import distributed

with distributed.process_group() as job:
    if job.rank == 1:
        raise ValueError("rank 1 failed alone")
    time.sleep(1)
    torch.distributed.all_reduce(torch.ones(1))  # never answered: rank 1 is gone
    print("rank 0 finished", file=sys.stderr)
'''


@multiprocess
def test_a_rank_that_fails_alone_ends_the_job_at_once(tmp_path):
    # process_group() must not wait at a barrier for the others when its body raised: the failing rank
    # exits, and torchrun ends the rank blocked in its collective
    script = tmp_path / "fails.py"
    script.write_text(ONE_RANK_FAILS)
    start = time.perf_counter()
    proc = torchrun(str(script), timeout=120)
    assert proc.returncode != 0
    assert "rank 1 failed alone" in proc.stderr and "rank 0 finished" not in proc.stderr
    assert time.perf_counter() - start < 60
