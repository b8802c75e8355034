"""Files that are loaded are validated: a saved SNN (snn.json + weights.safetensors), a model directory
(model.json + model.safetensors), a training checkpoint (last.safetensors) and weight files. A bad file
gives a CheckpointError naming the file, the key path and what was expected; never a raw exception,
never a silent load of NaN weights, a foreign device or a changed dtype."""
import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import snnconvert
from snnconvert import CheckpointError
from snnconvert.calibration import rule_from_config
from snnconvert.cli import main
from snnconvert.errors import SnnConvertError
from snnconvert.io.weights import read_state_dict
from snnconvert.methods import method_from_config
from snnconvert.models import create_model
from snnconvert.modelfile import load_model, read_card, save_model
from snnconvert.neurons import neuron_from_config
from snnconvert.training import TrainConfig, train
from snnconvert.training.checkpoint import LAST, load_checkpoint

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 4)).eval()


def small_snn(method: str = "snm") -> snnconvert.SpikingModel:
    return snnconvert.convert(small_net(), torch.randn(16, 1, 8, 8), method)


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def conv_key(desc: dict) -> str:
    return next(k for k, v in desc["layers"].items() if v["type"] == "Conv2d")


def neuron_key(desc: dict) -> str:
    return next(k for k, v in desc["layers"].items() if v["type"] == "neuron")


def nest(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture(scope="module")
def snn_dir(tmp_path_factory) -> Path:
    """A saved SNN; tests copy it (`fresh_snn`) before changing it."""
    return snnconvert.save(small_snn(), tmp_path_factory.mktemp("snn") / "m")


@pytest.fixture
def fresh_snn(snn_dir, tmp_path) -> Path:
    return Path(shutil.copytree(snn_dir, tmp_path / "m"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_model(create_model("digits_cnn").eval(), tmp_path_factory.mktemp("ann") / "a", "digits_cnn", 10,
                      dataset="digits", history=[{"epoch": 1, "val_acc": 0.5}])


@pytest.fixture
def fresh_model(model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "a"))


# --- 7: NaN/Inf weights, stored devices and dtypes, card versions -----------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_saved_snn_with_non_finite_weights_is_refused(tmp_path, bad):
    snn = small_snn()
    conv = next(m for m in snn.program.layers.values() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = bad
    snnconvert.save(snn, tmp_path / "m")
    with pytest.raises(CheckpointError, match=r"weights\.safetensors.*'program\.layers\.\w+\.weight'.*NaN or infinite"):
        snnconvert.load(tmp_path / "m")


def test_a_model_directory_with_non_finite_weights_is_refused(tmp_path):
    model = create_model("digits_cnn").eval()
    with torch.no_grad():
        model.features[0].weight[0, 0, 0, 0] = float("nan")
    save_model(model, tmp_path / "a", "digits_cnn", 10)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*'features\.0\.weight'.*NaN or infinite"):
        load_model(tmp_path / "a")


@pytest.mark.parametrize("key, value", [("device", "meta"), ("device", "cuda"), ("dtype", "float64")])
def test_devices_and_dtypes_in_layer_configs_are_refused(fresh_snn, key, value):
    edit_json(fresh_snn / "snn.json", lambda d: d["layers"][conv_key(d)]["config"].update({key: value}))
    with pytest.raises(CheckpointError, match=rf"snn\.json: layers\[\"\w+\"\]\.config: unknown key.*'{key}'.*"
                                              r"devices and dtypes are not stored"):
        snnconvert.load(fresh_snn)


def test_a_loaded_snn_is_on_the_cpu_with_real_tensors(snn_dir):
    snn = snnconvert.load(snn_dir)
    tensors = list(snn.parameters()) + list(snn.buffers())
    assert tensors and all(t.device.type == "cpu" for t in tensors)


def test_model_card_versions(fresh_model):
    card = json.loads((fresh_model / "model.json").read_text())
    assert card["version"] in (1, 2)
    v1 = {k: v for k, v in card.items() if k != "weights_sha256"}
    (fresh_model / "model.json").write_text(json.dumps({**v1, "version": 1}))
    load_model(fresh_model)  # version-1 cards (no weights hash) still load
    for version in (99, "2", True, None):
        (fresh_model / "model.json").write_text(json.dumps({**card, "version": version}))
        with pytest.raises(CheckpointError, match=r"model\.json.*model card version .*reads versions 1, 2"):
            load_model(fresh_model)
    (fresh_model / "model.json").write_text(json.dumps({**card, "format": "something.else"}))
    with pytest.raises(CheckpointError, match="not a snnconvert model card"):
        read_card(fresh_model)


# --- 8: malformed structures ------------------------------------------------------------------------

SNN_JSON_CASES = [
    (lambda d: d.update(layers=[1]), r"snn\.json: layers must be an object"),
    (lambda d: d.update(nodes={"a": 1}), r"snn\.json: nodes must be a list"),
    (lambda d: d["layers"].update({conv_key(d): "conv"}), r'layers\["\w+"\] must be an object'),
    (lambda d: d["layers"][conv_key(d)]["config"].update(kernel_size="3"),
     r'layers\["\w+"\]\.config\.kernel_size must be an integer or a list of 2 integers, got \'3\''),
    (lambda d: d["layers"][conv_key(d)]["config"].pop("in_channels"),
     r'layers\["\w+"\]\.config\.in_channels is missing; expected an integer'),
    (lambda d: d["layers"][conv_key(d)]["config"].update(bias="yes"), r"config\.bias must be true or false"),
    (lambda d: d["layers"][conv_key(d)]["config"].update(padding_mode="mirror"), r"padding_mode must be one of"),
    (lambda d: d["layers"][conv_key(d)]["config"].update(out_channels=-2), r"Conv2d\(.*\) cannot be built"),
    (lambda d: d["layers"][neuron_key(d)].update(v_init="0.5"), r'layers\["\w+"\]\.v_init must be a finite number'),
    (lambda d: d["layers"][neuron_key(d)].update(kind=["snm"]), r'layers\["\w+"\]\.kind must be a string'),
    (lambda d: d["layers"][neuron_key(d)].update(v_init=3.0), r"v_init is a fraction of the threshold"),
    (lambda d: d["nodes"].__setitem__(1, "conv"), r"nodes\[1\] must be an object"),
    (lambda d: d["nodes"][1].pop("target"), r"nodes\[1\]\.target is missing; expected a string"),
    (lambda d: d["nodes"][1].update(args=[1, 2]), r"nodes\[1\]\.args must be an encoded tuple"),
    (lambda d: d["nodes"][1].update(args={"tuple": [{"ref": 3}]}), r"nodes\[1\]\.args\.tuple\[0\]\.ref must be a string"),
    (lambda d: d["nodes"][1].update(args={"slice": [1]}), r"args\.slice must be a list of 3 values"),
    (lambda d: d["nodes"][1].update(kwargs={"dict": []}), r"nodes\[1\]\.kwargs\.dict must be an object"),
    (lambda d: d["nodes"][1].update(args={"tuple": json.loads(nest(200))}), r"snn\.json nests values more than 64"),
    (lambda d: d.update(method_config=[1]), r"method_config must be an object"),
    (lambda d: d["method_config"].update(scale="1"), r"method_config\.scale must be a finite number, got '1'"),
    (lambda d: d["method_config"].update(granularity=["layer"]), r"method_config\.granularity must be a string"),
    (lambda d: d["method_config"]["rule"].update(q=1), r"method_config\.rule: unknown key.*'q'"),
    (lambda d: d["method_config"].update(rule="max"), r"method_config\.rule must be an object"),
    (lambda d: d.update(default_T="8"), r"default_T must be an integer >= 1, got '8'"),
    (lambda d: d.update(method=[]), r"snn\.json: method must be an object"),
]


@pytest.mark.parametrize("change, message", SNN_JSON_CASES)
def test_malformed_snn_json_names_the_file_the_key_and_what_was_expected(fresh_snn, change, message):
    edit_json(fresh_snn / "snn.json", change)
    with pytest.raises(CheckpointError, match=message):
        snnconvert.load(fresh_snn)


@pytest.mark.parametrize("text", [nest(100000), "[" * 100000, '{"a": ' * 5000 + "1" + "}" * 5000, nest(65),
                                  "[" + "9" * 5000 + "]"])
def test_deeply_nested_or_huge_json_is_a_checkpoint_error(fresh_snn, fresh_model, text):
    (fresh_snn / "snn.json").write_text(text)
    with pytest.raises(CheckpointError, match=r"snn\.json"):
        snnconvert.load(fresh_snn)
    (fresh_model / "model.json").write_text(text)
    with pytest.raises(CheckpointError, match=r"model\.json"):
        load_model(fresh_model)


CARD_CASES = [
    (lambda c: c.pop("arch"), r"model\.json: arch is missing; expected a string"),
    (lambda c: c.update(arch=["digits_cnn"]), r"model\.json: arch must be a string"),
    (lambda c: c.update(arch="lenet"), r"model\.json: arch: unknown model 'lenet'"),
    (lambda c: c.update(num_classes="10"), r"num_classes must be an integer >= 1, got '10'"),
    (lambda c: c.update(model_kwargs=[]), r"model_kwargs must be an object"),
    (lambda c: c.update(model_kwargs={"input_size": "8"}), r"model_kwargs\.input_size must be an integer, got '8'"),
    (lambda c: c.update(model_kwargs={"depth": 3}), r"model_kwargs: unknown key.*'depth'.*options of model 'digits_cnn'"),
    (lambda c: c.update(model_kwargs={"input_size": 6}), r"model 'digits_cnn' cannot be built.*multiple of 4"),
    (lambda c: c.update(model_kwargs={"input_size": 4 * 10 ** 9}), r"(cannot be built|does not match the model)"),
    (lambda c: c.update(bits="3"), r"model\.json: bits must be an integer >= 1"),
    (lambda c: c.update(bits=99), r"cannot be built.*bits"),
    (lambda c: c.update(holdout={"images": "5", "seed": 0}), r"holdout\.images must be an integer >= 1"),
    (lambda c: c.update(dataset=3), r"model\.json: dataset must be a string"),
]


@pytest.mark.parametrize("change, message", CARD_CASES)
def test_malformed_model_json_names_the_file_the_key_and_what_was_expected(fresh_model, change, message):
    edit_json(fresh_model / "model.json", change)
    with pytest.raises(CheckpointError, match=message):
        load_model(fresh_model)


@pytest.mark.parametrize("config", [None, [], "snm", 3, {"kind": []}, {"kind": "snm"}, {"kind": "snm", "v_init": "0"},
                                    {"kind": "lif", "v_init": 0.0}, {"kind": "snm", "v_init": float("nan")},
                                    {"kind": "snm", "v_init": True}, json.loads(nest(60))])
def test_neuron_from_config_on_malformed_input_is_a_checkpoint_error(config):
    with pytest.raises(CheckpointError, match="bad neuron description"):
        neuron_from_config(config, torch.tensor(1.0))


GOOD_METHOD = snnconvert.resolve_method("rmp").config()


@pytest.mark.parametrize("change", [
    lambda c: None, lambda c: [c], lambda c: "rmp", lambda c: {**c, "rule": None}, lambda c: {**c, "rule": []},
    lambda c: {**c, "rule": {"rule": "percentile"}}, lambda c: {**c, "rule": {"rule": "percentile", "q": "99"}},
    lambda c: {**c, "rule": {"rule": {"x": 1}}}, lambda c: {**c, "granularity": 1}, lambda c: {**c, "neuron": 5},
    lambda c: {**c, "target_T": 0}, lambda c: {**c, "potential": "yes"}, lambda c: {**c, "v_init": [0]},
    lambda c: {k: v for k, v in c.items() if k != "name"}, lambda c: {**c, "extra": 1},
])
def test_method_and_rule_from_config_on_malformed_input_are_checkpoint_errors(change):
    with pytest.raises(CheckpointError, match="bad method description"):
        method_from_config(change(copy.deepcopy(GOOD_METHOD)))


def test_rule_from_config_names_the_field():
    with pytest.raises(CheckpointError, match=r"bad threshold rule description: steps must be an integer, got 'x'"):
        rule_from_config({"rule": "layer_input_max", "steps": "x"})
    assert method_from_config(copy.deepcopy(GOOD_METHOD)) == snnconvert.resolve_method("rmp")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, TrainConfig]:
    """A training checkpoint (AdamW: tuple betas, tensor state) of a tiny MLP."""
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 3, (16,)))
    config = TrainConfig(epochs=1, lr=0.01, batch_size=8, optimizer="adamw", progress=False)
    out = tmp_path_factory.mktemp("ckpt")
    train(mlp(), data, config, checkpoint_dir=out)
    return out / LAST, config


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def resume(path: Path, config: TrainConfig) -> list:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return load_checkpoint(path, model, optimizer, config)


@pytest.mark.parametrize("key, value, message", [
    ("config", "[]", r"metadata 'config': the top level must be an object"),
    ("config", '{"epochs": "1"}', r"metadata 'config': epochs must be an integer, got '1'"),
    ("history", "{}", r"metadata 'history': the top level must be a list"),
    ("history", '[{"val_acc": "0.5"}]', r"metadata 'history': \[0\]\.val_acc must be a finite number"),
    ("optimizer_param_groups", '"x"', r"metadata 'optimizer_param_groups': the top level must be a list"),
    ("optimizer_param_groups", "[]", r"must be a list of 1 parameter group"),
    ("optimizer_param_groups", '[{"params": [0, 1, 2, 3], "lr": "0.1"}]', r"\[0\]\.lr must be an integer or a finite"),
    ("optimizer_param_groups", '[{"params": [0, 1, 2, 3], "betas": [0.9]}]', r"\[0\]\.betas must be a list of 2"),
    ("optimizer_state_scalars", '{"x": {}}', r'metadata \'optimizer_state_scalars\': \["x"\]: the key must be a parameter'),
    ("optimizer_state_scalars", '{"0": {"step": "1"}}', r"must be true or false or an integer or a finite number or null"),
    ("data", "[1]", r"metadata 'data': the top level must be an object"),
    ("config", nest(100000), r"metadata 'config' nests values more than 64"),
    ("history", "not json", r"metadata 'history' is not valid JSON"),
])
def test_malformed_training_checkpoint_metadata(checkpoint, tmp_path, key, value, message):
    path, config = checkpoint
    tensors, meta = read_checkpoint(path)
    save_file(tensors, str(tmp_path / LAST), metadata={**meta, key: value})
    with pytest.raises(CheckpointError, match=message):
        resume(tmp_path / LAST, config)
    assert len(resume(path, config)) == 1  # the original still loads


def test_a_training_checkpoint_with_non_finite_tensors_is_refused(checkpoint, tmp_path):
    path, config = checkpoint
    tensors, meta = read_checkpoint(path)
    key = next(k for k in tensors if k.startswith("optim."))
    tensors[key] = torch.full_like(tensors[key], float("inf"))
    save_file(tensors, str(tmp_path / LAST), metadata=meta)
    with pytest.raises(CheckpointError, match=rf"{LAST}: tensor '{re.escape(key)}' holds NaN or infinite"):
        resume(tmp_path / LAST, config)


def test_cli_reports_a_malformed_snn_json(fresh_snn, capsys):
    edit_json(fresh_snn / "snn.json", lambda d: d["layers"][conv_key(d)]["config"].update(kernel_size="3"))
    assert main(["evaluate", "--snn", str(fresh_snn), "--T", "2", "--limit", "4", "--out",
                 str(fresh_snn.parent / "results.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("snnconvert evaluate: error: ") and "snn.json" in err
    assert 'config.kernel_size must be an integer or a list of 2 integers' in err


# --- 10: stored floating dtypes are kept ------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_snn_keeps_its_floating_dtype_through_save_and_load(tmp_path, dtype):
    snn = small_snn("baseline").to(dtype)
    snnconvert.save(snn, tmp_path / "m")
    loaded = snnconvert.load(tmp_path / "m")
    assert {t.dtype for t in loaded.parameters()} == {dtype}
    assert all(t.dtype == dtype for n, t in loaded.named_buffers() if t.is_floating_point())
    assert all(isinstance(p, nn.Parameter) for p in loaded.parameters())
    assert {n for n, _ in loaded.named_parameters()} == {n for n, _ in snn.named_parameters()}
    assert {n for n, _ in loaded.named_buffers()} == {n for n, _ in snn.named_buffers()}
    x = torch.randn(3, 1, 8, 8, dtype=dtype)
    with torch.no_grad():
        assert torch.equal(loaded(x, 4), snn(x, 4))


def test_a_model_file_keeps_its_floating_dtype(tmp_path):
    model = create_model("digits_cnn").double().eval()
    save_model(model, tmp_path / "a", "digits_cnn", 10)
    loaded, _ = load_model(tmp_path / "a")
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in loaded.parameters())
    assert {n for n, _ in loaded.named_buffers()} == {n for n, _ in model.named_buffers()}
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# --- 12: pickled checkpoints --------------------------------------------------------------------------

def test_a_pickled_checkpoint_is_refused_with_how_to_convert_it(tmp_path):
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "full.pth")
    with pytest.raises(CheckpointError) as e:
        read_state_dict(tmp_path / "full.pth")
    message = str(e.value)
    assert "full.pth" in message and "torch.nn.modules.linear.Linear" in message
    assert "never unpickles arbitrary objects" in message and "model.state_dict()" in message
    assert "safetensors" in message and "will likely succeed" not in message and "weights_only=False" not in message


# --- property-based: round trips of random programs ------------------------------------------------

@st.composite
def programs(draw) -> tuple[nn.Module, int]:
    """(a small random chain of conv / relu / avgpool, then flatten and linear layers with at least one
    ReLU, its number of input channels)."""
    torch.manual_seed(draw(st.integers(0, 2 ** 16)))
    c_in = channels = draw(st.integers(1, 2))
    size = 8
    layers: list[nn.Module] = [nn.ReLU()] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        if size >= 2 and draw(st.booleans()):
            layers.append(nn.AvgPool2d(2))
            size //= 2
        else:
            k, out = draw(st.sampled_from([1, 3])), draw(st.integers(1, 4))
            layers += [nn.Conv2d(channels, out, k, padding=k // 2, bias=draw(st.booleans())), nn.ReLU()]
            channels = out
    hidden = draw(st.integers(2, 5))
    layers += [nn.Flatten(), nn.Linear(channels * size * size, hidden)]
    if draw(st.booleans()) or not any(isinstance(m, nn.ReLU) for m in layers):
        layers += [nn.ReLU(), nn.Linear(hidden, 3)]
    return nn.Sequential(*layers).eval(), c_in


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=programs(), neuron=st.sampled_from(["if_hard", "if_soft", "snm", "signed_if"]),
       threshold=st.one_of(st.sampled_from(["max", "percentile"]), st.floats(0.05, 4.0)),
       v_init=st.sampled_from([0.0, 0.5]), granularity=st.sampled_from(["layer", "channel", "neuron"]),
       seed=st.integers(0, 1000), T=st.integers(1, 6))
def test_random_programs_round_trip_exactly(tmp_path, program, neuron, threshold, v_init, granularity, seed, T):
    model, c_in = program
    x = torch.randn(8, c_in, 8, 8, generator=torch.Generator().manual_seed(seed))
    snn = snnconvert.convert(model, x, "baseline", neuron=neuron, threshold=threshold, v_init=v_init,
                             granularity=granularity)
    snnconvert.save(snn, tmp_path / "m")
    loaded = snnconvert.load(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded(x[:4], T), snn(x[:4], T))
    assert [n.config() for n in loaded.neurons().values()] == [n.config() for n in snn.neurons().values()]


# --- property-based: fuzzing the parsers --------------------------------------------------------------

WORDS = ["neuron", "Conv2d", "Linear", "Flatten", "AvgPool2d", "SpikingMaxPool", "MaxPool2d", "ref", "tuple", "dict",
         "slice", "input", "output", "layer", "activation", "function", "method", "getattr", "add", "view", "max",
         "snm", "if_hard", "layer", "channel", "digits_cnn", "resnet20", "params", "lr", "0", "x", "", "__class__"]
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 20),
                         st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WORDS), st.text(max_size=4))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=3), inner, max_size=3)),
    max_leaves=6)


def paths(value, prefix=()):
    """Every key path inside a JSON value (the root is ())."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


@st.composite
def mutated(draw, doc):
    """`doc` with one random change: a sub-value replaced by a random JSON value, deleted, wrapped in a
    list or in an object, nested deeply, or a key added."""
    doc = copy.deepcopy(doc)
    path = draw(st.sampled_from(list(paths(doc))))
    op = draw(st.sampled_from(["replace", "replace", "delete", "wrap", "wrap_dict", "deep", "add_key"]))
    if not path:
        return draw(JSON_VALUES) if op in ("replace", "delete") else [doc] if op == "wrap" else {"x": doc}
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    key, old = path[-1], parent[path[-1]]
    if op == "delete":
        del parent[key]
    elif op == "add_key" and isinstance(old, dict):
        old[draw(st.sampled_from(WORDS))] = draw(JSON_VALUES)
    else:
        parent[key] = {"replace": lambda: draw(JSON_VALUES), "wrap": lambda: [old], "wrap_dict": lambda: {"tuple": old},
                       "deep": lambda: f"{DEEP}{draw(st.integers(60, 100000))}",
                       "add_key": lambda: draw(JSON_VALUES)}[op]()
    return doc


def loads_or_library_error(load, *args) -> None:
    try:
        load(*args)
    except SnnConvertError:
        pass


DEEP = "@deeply nested lists: "  # a string `mutated` puts where dump() writes that many nested lists


def dump(doc) -> str:
    """`doc` as JSON text, each DEEP marker replaced by its nested lists (too deep to build as Python values)."""
    return re.sub(rf'"{DEEP}(\d+)"', lambda m: nest(int(m.group(1))), json.dumps(doc, allow_nan=True))


def fuzz_description(directory, name: str, load, tmp_path, data) -> None:
    """A copy of `directory` whose JSON file `name` is mutated (the weights, and so their hash, stay)
    loads or gives a library error."""
    good = json.loads((directory / name).read_text())
    d = tmp_path / "fuzz"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(directory, d)
    (d / name).write_text(dump(data.draw(mutated(good))))
    loads_or_library_error(load, d)


@FUZZ
@given(data=st.data())
def test_fuzzed_snn_json_loads_or_gives_a_library_error(snn_dir, tmp_path, data):
    fuzz_description(snn_dir, "snn.json", snnconvert.load, tmp_path, data)


@FUZZ
@given(data=st.data())
def test_fuzzed_model_json_loads_or_gives_a_library_error(model_dir, tmp_path, data):
    fuzz_description(model_dir, "model.json", load_model, tmp_path, data)


@FUZZ
@given(data=st.data())
def test_fuzzed_training_checkpoint_metadata_loads_or_gives_a_library_error(checkpoint, tmp_path, data):
    path, config = checkpoint
    tensors, meta = read_checkpoint(path)
    key = data.draw(st.sampled_from(sorted(meta)))
    try:
        value = dump(data.draw(mutated(json.loads(meta[key]))))
    except json.JSONDecodeError:  # format, version: plain strings
        value = data.draw(st.sampled_from(WORDS) | st.text(max_size=6))
    save_file(tensors, str(tmp_path / LAST), metadata={**meta, key: value})
    loads_or_library_error(resume, tmp_path / LAST, config)

