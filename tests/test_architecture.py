"""The layers import one way: a module never imports (at any place in the file, lazily or for type
checking) a module of a higher layer. ARCHITECTURE.md describes the same table."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "snnconvert"

# Bottom up. A module may import its own layer and the layers below it, nothing above.
LAYERS: list[set[str]] = [
    {"errors", "registry", "schema", "batches", "files", "evaluation", "distributed"},  # foundation
    {"graph"},        # the model IR: Program, NodeKind, op table, activation matcher, trace()
    {"neurons"},      # neuron kinds (registry), the neuron step, spike-gated max pooling
    {"simulation"},   # the engine (SpikingModel), simulate(), recording, results, early exit
    {"diagnosis"},    # diagnose(): per-layer error of an SNN against its ANN over time
    {"calibration"},  # threshold rules (registry), statistics, balancing on the spiking network
    {"methods"},      # presets: neuron kind + rule + granularity + scale + v_init
    {"conversion"},   # convert(): ANN -> SpikingModel
    {"finetune"},     # SNN stages after conversion (Fast-SNN layer-wise fine-tuning)
    {"io"},           # save/load of spiking models, weight files
    {"interop"},      # exchange formats: NIR export and import
    {"data", "models", "report"},  # datasets, the model zoo, tables and plots
    {"training"},     # ANN training (config, one epoch loop, evaluation, checkpoints)
    {"quantization"},  # Fast-SNN QANNs: QuantReLU, quantize(), progressive training
    {"modelfile"},    # a trained ANN/QANN directory (card + weights)
    {"demo", "cli"},  # the applications on top
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def component(module: str) -> str | None:
    """The top-level part of an snnconvert module name ('snnconvert.graph.trace' -> 'graph')."""
    parts = module.split(".")
    return parts[1] if parts[0] == "snnconvert" and len(parts) > 1 else None


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved against `package`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "snnconvert":  # `from .. import distributed`: the names are the modules
                found += [(node.lineno, f"snnconvert.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def violations(src: Path, rank: dict[str, int]) -> list[str]:
    """Every import of a higher layer (and every module missing from the table) under `src`."""
    out = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent).with_suffix("")
        module = ".".join(rel.parts)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        own = component(module.removesuffix(".__init__"))
        if own is None:  # the package's own __init__: the public facade over every layer
            continue
        if own not in rank:
            out.append(f"{rel}: '{own}' is in no layer; add it to the table (and to ARCHITECTURE.md)")
            continue
        for line, target in imported_modules(path, package):
            other = component(target)
            if other is not None and other in rank and rank[other] > rank[own]:
                out.append(f"{rel}:{line}: layer '{own}' imports higher layer '{other}' ({target})")
    return out


def test_no_lower_layer_imports_a_higher_one():
    assert violations(SRC, RANK) == []


def test_the_check_finds_an_upward_import(tmp_path):
    pkg = tmp_path / "snnconvert"
    (pkg / "graph").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "graph" / "__init__.py").write_text("")
    (pkg / "graph" / "trace.py").write_text("def f():\n    from ..quantization.quantizer import QuantReLU\n")
    (pkg / "neurons.py").write_text("from . import conversion\nfrom .graph import trace\n")
    (pkg / "newthing.py").write_text("")
    found = violations(pkg, RANK)
    assert any("graph/trace:2: layer 'graph' imports higher layer 'quantization'" in v for v in found)
    assert any("neurons:1: layer 'neurons' imports higher layer 'conversion'" in v for v in found)
    assert any("'newthing' is in no layer" in v for v in found)
    assert len(found) == 3


@pytest.mark.parametrize("name", sorted(RANK))
def test_every_layer_in_the_table_exists(name):
    assert (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()
