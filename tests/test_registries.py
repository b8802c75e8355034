"""Neuron kinds, threshold rules and methods as types with one registry each: names resolve however
they are spelt, unknown names say what was meant, configs round-trip, the CLI offers what the
registries hold, and compiling neurons is scoped to a call."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import snnconvert as sc
from snnconvert import cli
from snnconvert.calibration import RULES, Fixed, LayerInputMax, Percentile, resolve_rule, rule_from_config
from snnconvert.errors import CheckpointError, ConfigError
from snnconvert.methods import METHODS, method_from_config
from snnconvert.neurons import NEURONS, build_neuron, neuron_from_config
from snnconvert.registry import Registry


@st.composite
def spellings(draw, name: str) -> str:
    """The same name in any case, with '-' or '_' between its parts and spaces around it."""
    parts = name.split("_")
    joined = parts[0] + "".join(draw(st.sampled_from("-_")) + p for p in parts[1:])
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in joined)
    pad = draw(st.sampled_from(["", " "]))
    return pad + cased + pad


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_registered_name_resolves_however_it_is_spelt(data):
    for registry in (NEURONS, RULES):
        for name in registry.names():
            assert registry.resolve(data.draw(spellings(name))) == name


def test_unknown_names_suggest_the_closest_and_list_all():
    for registry, wrong, meant in ((NEURONS, "sigend_if", "signed_if"), (RULES, "percentil", "percentile"),
                                   (METHODS, "rnp", "rmp")):
        with pytest.raises(ConfigError, match=f"did you mean '{meant}'") as err:
            registry.get(wrong)
        assert all(n in str(err.value) for n in registry.names())


def test_a_name_is_registered_once_and_aliases_follow():
    r: Registry[int] = Registry("thing")
    r.add("one_thing", 1, aliases=("uno",))
    assert r.get("One-Thing") == 1 and r.get("UNO") == 1 and "uno" in r and "two" not in r
    with pytest.raises(ConfigError, match="already registered"):
        r.add("one-thing", 2)
    with pytest.raises(ConfigError, match="already registered"):
        r.add("dos", 2, aliases=("uno",))


@pytest.mark.parametrize("kind", NEURONS.names(aliases=True))
def test_neuron_config_round_trip_rebuilds_the_same_neuron(kind):
    thr = torch.rand(3, 1, 1) + 0.5
    a = build_neuron(kind, thr, 0.25)
    b = neuron_from_config(json.loads(json.dumps(a.config())), a.threshold)
    assert type(b) is type(a) and b.kind == a.kind == NEURONS.resolve(kind) and b.v_init == a.v_init
    z = torch.randn(16, 4, 3, 5, 5)  # [T, N, C, H, W]
    assert torch.equal(a(z), b(z))


def test_bad_neuron_configs_are_checkpoint_errors():
    for cfg in ({"kind": "lif", "v_init": 0.0}, {"v_init": 0.0}, {"kind": "snm", "v_init": "x"}):
        with pytest.raises(CheckpointError, match="bad neuron description"):
            neuron_from_config(cfg, torch.tensor(1.0))


@settings(max_examples=40, deadline=None)
@given(st.one_of(
    st.floats(0.01, 100.0).map(Percentile),
    st.integers(1, 512).map(LayerInputMax),
    st.floats(1e-3, 1e3).map(Fixed),
    st.sampled_from([sc.Max(), sc.LearnedClip()]),
))
def test_rule_config_round_trips(rule):
    cfg = json.loads(json.dumps(rule.config()))
    assert RULES.resolve(cfg["rule"]) == rule.name
    assert rule_from_config(cfg) == rule


def test_rules_resolve_from_names_numbers_and_objects():
    assert resolve_rule("percentile") == Percentile(99.9) and resolve_rule("Percentile", 99.0) == Percentile(99.0)
    assert resolve_rule(0.5) == Fixed(0.5) and resolve_rule(sc.Max()) == sc.Max()
    assert resolve_rule("layer-input-max") == LayerInputMax()
    with pytest.raises(ConfigError, match="needs a value"):
        resolve_rule("fixed")
    with pytest.raises(ConfigError, match="unknown threshold rule"):
        resolve_rule(object())


@pytest.mark.parametrize("name", METHODS.names())
def test_method_config_round_trips(name):
    m = METHODS.get(name)
    assert method_from_config(json.loads(json.dumps(m.config()))) == m
    tweaked = sc.resolve_method(name, scale=0.5, granularity="channel")
    assert method_from_config(json.loads(json.dumps(tweaked.config()))) == tweaked


def test_method_names_ignore_case_dashes_and_underscores():
    assert sc.resolve_method("Fast-SNN") is METHODS.get("fastsnn") and sc.resolve_method("fast_snn").name == "fastsnn"


def _choices(parser, command: str, flag: str) -> list[str]:
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return list(next(a for a in sub._actions if flag in a.option_strings).choices)


def test_cli_choices_come_from_the_registries():
    parser = cli.build_parser()
    assert _choices(parser, "convert", "--method") == METHODS.names()
    assert _choices(parser, "convert", "--neuron") == NEURONS.names(aliases=True)
    assert _choices(parser, "convert", "--granularity") == [g.value for g in sc.Granularity]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def test_compiling_neurons_in_simulate_is_scoped_to_the_call():
    model = _net()
    x = torch.randn(12, 1, 6, 6)
    y = model(x).argmax(-1)
    snn = sc.convert(model, x, "snm")
    eager = sc.simulate(snn, (x, y), 12, progress=False)
    fused = sc.simulate(snn, (x, y), 12, progress=False, compile=True)
    assert fused.accuracy == eager.accuracy and fused.layers == eager.layers
    assert all(n.fused_step is None for n in snn.neurons().values())  # the caller's model is unchanged
    with snn.compiled_neurons():
        assert all(n.fused_step is not None for n in snn.neurons().values())
        with snn.compiled_neurons(False):  # a block may turn it off again
            assert all(n.fused_step is None for n in snn.neurons().values())
    assert all(n.fused_step is None for n in snn.neurons().values())


def test_without_a_working_compiler_simulate_warns_once_and_runs_eagerly(monkeypatch):
    """Where Inductor cannot compile (no C++ compiler), the fused step's first call fails: one
    warning, then the eager step, with the same results."""
    import snnconvert.neurons.functional as functional

    def broken_compile(fn, **kw):
        def run(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return run

    model = _net()
    x = torch.randn(12, 1, 6, 6)
    y = model(x).argmax(-1)
    snn = sc.convert(model, x, "snm")
    eager = sc.simulate(snn, (x, y), 12, progress=False, compile=False)
    monkeypatch.setattr(functional.torch, "compile", broken_compile)
    fresh = sc.convert(model, x, "snm")
    with pytest.warns(RuntimeWarning, match="compiled neuron updates are unavailable") as caught:
        result = sc.simulate(fresh, (x, y), 12, progress=False)
    assert len([w for w in caught if "unavailable" in str(w.message)]) == 1
    assert result.accuracy == eager.accuracy and result.layers == eager.layers
    with pytest.raises(ConfigError, match="compile must be"):
        sc.simulate(fresh, (x, y), 4, compile="yes")
