import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    # One thread: the tensors here are tiny, and 2 OpenMP threads on 2 (possibly shared) cores were
    # measured up to 7x slower for them.
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
