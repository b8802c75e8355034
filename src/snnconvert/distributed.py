"""Data-parallel helpers for `torchrun --nproc_per_node N`: process group, sharding, exact reductions.

init_from_env() reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK; without them every function here
is a single-process no-op (rank 0 of 1). Backend: gloo on CPU; with CUDA, NCCL for CUDA tensors and
gloo for CPU tensors ("cpu:gloo,cuda:nccl"), so small CPU reductions work on GPU machines too.

Failures: an error raised on every rank (bad arguments, missing files) ends every rank. An error on
one rank only leaves the others blocked in their next collective until torchrun, which stops all
workers as soon as one exits with an error, ends them; outside torchrun they wait at most the
process-group timeout (SNNCONVERT_DIST_TIMEOUT seconds, default PyTorch's).
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import torch
from torch import nn

from .errors import ConfigError

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
TIMEOUT_ENV = "SNNCONVERT_DIST_TIMEOUT"


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job and the device it should compute on.

    device: cuda:LOCAL_RANK under torchrun on a CUDA machine, else cpu (also for a plain single process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch with torchrun "
                          "or unset RANK, WORLD_SIZE and LOCAL_RANK") from None


def init_from_env() -> DistInfo:
    """Join the torchrun job described by the environment (idempotent); single process without it."""
    present = [k for k in ENV_VARS if k in os.environ]
    if not present:
        if _initialized():  # the caller set up the group itself
            rank, world = rank_and_world()
            return DistInfo(rank, world, rank, torch.device("cpu"))
        return DistInfo()
    if len(present) < len(ENV_VARS):
        missing = [k for k in ENV_VARS if k not in present]
        raise ConfigError(f"{', '.join(present)} set but {', '.join(missing)} missing; launch with "
                          "`torchrun --nproc_per_node N ...` or unset all of RANK, WORLD_SIZE and LOCAL_RANK")
    rank, world, local_rank = (_env_int(k) for k in ENV_VARS)
    if world < 1 or not 0 <= rank < world or local_rank < 0:
        raise ConfigError(f"inconsistent torchrun environment RANK={rank} WORLD_SIZE={world} "
                          f"LOCAL_RANK={local_rank}; need 0 <= RANK < WORLD_SIZE")
    if not torch.distributed.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run a single process (plain python) "
                          "or install a PyTorch build with distributed support")
    device = torch.device("cpu")
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                              "use --nproc_per_node <= the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not _initialized():
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, rank=rank, world_size=world, **_timeout())
    return DistInfo(rank, world, local_rank, device)


def _timeout() -> dict[str, timedelta]:
    """{"timeout": ...} from SNNCONVERT_DIST_TIMEOUT (seconds), {} (PyTorch's default) when unset."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return {}
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={value!r} must be a number of seconds > 0, e.g. 600")
    return {"timeout": timedelta(seconds=seconds)}


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, (0, 1) without one."""
    if not _initialized():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that prints and writes files."""
    return rank_and_world()[0] == 0


def barrier() -> None:
    if _initialized():
        torch.distributed.barrier()


def cleanup(wait: bool = False) -> None:
    """Leave the process group (no-op without one).

    wait=True first waits at a barrier for every rank, so no rank closes its connections while a peer
    is still working or exchanging with it; use it only on the success path (a rank that failed alone
    must exit at once so that torchrun ends the others).
    """
    if _initialized():
        try:
            if wait:
                torch.distributed.barrier()
        finally:
            torch.distributed.destroy_process_group()


@contextmanager
def process_group() -> Iterator[DistInfo]:
    """init_from_env() for the body of a `with`; on leaving it, cleanup(wait=True) when the body
    finished (return included) and cleanup(wait=False) when it raised."""
    info = init_from_env()
    try:
        yield info
    except BaseException:
        cleanup(wait=False)
        raise
    cleanup(wait=True)


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Rank `rank`'s contiguous share of range(n): every index on exactly one rank, no padding.

    Shares differ in size by at most one (lower ranks get the extra ones), in index order.
    """
    for name, value in (("n", n), ("rank", rank), ("world", world)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"shard_indices: {name} must be an int, got {value!r}")
    if n < 0 or world < 1 or not 0 <= rank < world:
        raise ConfigError(f"shard_indices needs n >= 0 and 0 <= rank < world, got n={n}, rank={rank}, world={world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return list(range(start, start + base + (rank < extra)))


def batch_shards(order: Sequence[int], batch_size: int, rank: int, world: int) -> Iterator[tuple[list[int], int]]:
    """Split each global batch order[i:i + batch_size] across ranks: yields (this rank's dataset
    indices, the global batch's size). Every rank yields the same number of items; a rank's list is
    empty only in a last batch with fewer samples than ranks."""
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        yield [batch[i] for i in shard_indices(len(batch), rank, world)], len(batch)


def _all_reduce(tensor: torch.Tensor, op: str) -> torch.Tensor:
    """Reduce `tensor` in place over all ranks with op "sum", "max" or "min"; unchanged in one process."""
    if _initialized() and torch.distributed.get_world_size() > 1:
        reduce_op = getattr(torch.distributed.ReduceOp, op.upper())
        if torch.distributed.get_backend() == "nccl" and not tensor.is_cuda:  # NCCL alone cannot reduce CPU tensors
            moved = tensor.cuda()
            torch.distributed.all_reduce(moved, op=reduce_op)
            tensor.copy_(moved.cpu())
        else:
            torch.distributed.all_reduce(tensor, op=reduce_op)
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all ranks in place and return it (unchanged in a single process)."""
    return _all_reduce(tensor, "sum")


def all_reduce_scalar(value: float, op: str) -> float:
    """`value` reduced over all ranks with op "sum", "max" or "min" (itself in one process)."""
    return float(_all_reduce(torch.tensor([value], dtype=torch.float64), op).item())


# --------------------------------------------------------------------------- training


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` (already on `device`); rank 0's weights are broadcast."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics are otherwise per-rank)."""
    if _initialized() and torch.distributed.get_world_size() > 1:
        for buf in model.buffers():
            torch.distributed.broadcast(buf, src=0)
