"""Run `snnconvert ARGS` in this process and SIGKILL it at a chosen point (for test_faults.py).

    python fault_driver.py [--kill-in-batch N] [--kill-before-rename-to NAME [--occurrence K]] -- ARGS...

--kill-in-batch N: inside the N-th training batch of the run (counting across epochs and stages),
after its forward pass. --kill-before-rename-to NAME: right before snnconvert.files renames a file
onto one whose name is NAME, the K-th time (default 1). The kill is a real SIGKILL: no cleanup,
no `finally`, no atomic-write error path runs. One thread, so results are comparable bit for bit
with a run in the test process.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Proxy:
    """Forwards every attribute to `target` except those given as keyword arguments."""

    def __init__(self, target: Any, **override: Any) -> None:
        self._target, self._override = target, override

    def __getattr__(self, name: str) -> Any:
        return self._override.get(name) or getattr(self._target, name)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--kill-in-batch", type=int)
    p.add_argument("--kill-before-rename-to")
    p.add_argument("--occurrence", type=int, default=1)
    opts, rest = p.parse_known_args()
    args = rest[1:] if rest[:1] == ["--"] else rest
    torch.set_num_threads(1)

    from snnconvert import cli, files
    from snnconvert.training import loop

    if opts.kill_in_batch:
        seen = [0]

        def cross_entropy(*a: Any, **k: Any) -> Any:
            seen[0] += 1
            if seen[0] == opts.kill_in_batch:
                die()
            return torch.nn.functional.cross_entropy(*a, **k)

        loop.F = _Proxy(torch.nn.functional, cross_entropy=cross_entropy)
    if opts.kill_before_rename_to:
        renames = [0]

        def replace(src: Any, dst: Any) -> None:
            if Path(dst).name == opts.kill_before_rename_to:
                renames[0] += 1
                if renames[0] == opts.occurrence:
                    die()
            os.replace(src, dst)

        files.os = _Proxy(os, replace=replace)
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
