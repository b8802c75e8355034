"""Command-line interface: parses arguments and calls the library; no logic of its own."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import SnnConvertError


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out, epochs=args.epochs, T=args.T, seed=args.seed, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="snnconvert", description="Convert trained ReLU networks into spiking "
                                "neural networks (baseline IF, RMP-SNN, SNM, Fast-SNN) and evaluate them.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="train a small CNN on scikit-learn digits, convert it with every method, "
                                    "print accuracy vs T, write results.json and a plot")
    d.add_argument("--out", default="snnconvert-demo", help="output directory (default: ./snnconvert-demo)")
    d.add_argument("--epochs", type=int, default=40, help="ANN training epochs (default 40)")
    d.add_argument("--T", type=int, default=256, help="time steps to simulate (default 256)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except SnnConvertError as e:
        print(f"snnconvert {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
