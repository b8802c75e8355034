"""save()/load(): exact round trips, a closed file format, and every kind of bad directory refused."""
import json
import os
import pickle
import stat

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnconvert
from snnconvert import CheckpointError
from snnconvert.errors import OutputError
from snnconvert.neurons import SpikingMaxPool


class Net(nn.Module):
    """Conv + folded BN, a BN that stays (after an add), max pool, cat, upsample, view(size), linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn_add = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(8, 2, 1)
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(2 * 2 * 2, 3)

    def forward(self, x):
        a = F.relu(self.bn1(self.conv1(x)))
        b = self.bn_add(self.conv2(a) + a).relu()
        p = self.pool(b)
        y = torch.cat([self.up(p), a], dim=1)
        y = self.gap(F.relu(self.head(y)))
        return self.fc(y.view(y.size(0), -1))


def model_and_data():
    torch.manual_seed(0)
    model = Net()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval(), torch.randn(24, 1, 8, 8)


CONVERSIONS = {
    "if_hard": ("baseline", {}),
    "if_soft": ("rmp", {"calibration_steps": 8}),
    "snm_per_neuron": ("snm", {}),
    "signed_if": ("baseline", {"neuron": "signed_if", "v_init": 0.5, "granularity": "channel"}),
}
NEURON_TYPES = {"if_hard": snnconvert.IFNeuron, "if_soft": snnconvert.IFNeuron,
                "snm_per_neuron": snnconvert.SNMNeuron, "signed_if": snnconvert.SignedIFNeuron}


@pytest.mark.parametrize("kind", list(CONVERSIONS))
def test_round_trip_gives_identical_outputs(kind, tmp_path):
    model, x = model_and_data()
    method, overrides = CONVERSIONS[kind]
    snn = snnconvert.convert(model, x, method, **overrides)
    neurons = list(snn.neurons().values())
    assert all(type(n) is NEURON_TYPES[kind] for n in neurons)
    if kind == "snm_per_neuron":
        assert neurons[0].threshold.shape == (4, 8, 8)
    assert any(isinstance(m, SpikingMaxPool) for m in snn.modules())
    snnconvert.save(snn, tmp_path / "m")
    loaded = snnconvert.load(tmp_path / "m")
    assert isinstance(loaded, snnconvert.SpikingModel)
    assert loaded.method == snn.method and loaded.default_T == snn.default_T
    assert [(n.name, n.kind, n.target, n.args, n.kwargs) for n in loaded.program.nodes] == \
           [(n.name, n.kind, n.target, n.args, n.kwargs) for n in snn.program.nodes]
    for a, b in zip(neurons, loaded.neurons().values()):
        assert type(a) is type(b) and a.v_init == b.v_init
        assert getattr(a, "reset_mode", None) == getattr(b, "reset_mode", None)
        assert torch.equal(a.threshold, b.threshold)
    with torch.no_grad():
        assert torch.equal(snn(x[:6], 20), loaded(x[:6], 20))
    a = snnconvert.simulate(snn, (x, torch.zeros(24, dtype=torch.long)), 10)
    b = snnconvert.simulate(loaded, (x, torch.zeros(24, dtype=torch.long)), 10)
    assert a.accuracy == b.accuracy and a.synops_per_step == b.synops_per_step


def test_the_directory_holds_two_plain_files(tmp_path):
    model, x = model_and_data()
    snn = snnconvert.convert(model, x, "snm")
    out = snnconvert.save(snn, tmp_path / "a" / "b")  # parents are created
    assert sorted(os.listdir(out)) == ["snn.json", "weights.safetensors"]
    desc = json.loads((out / "snn.json").read_text())
    assert desc["format"] == "snnconvert.spiking_model" and desc["method"]["name"] == "snm"
    snnconvert.save(snn, out)  # saving again over it leaves no temporary files either
    assert sorted(os.listdir(out)) == ["snn.json", "weights.safetensors"]
    # files get the ordinary permissions (umask), not the 0600 of a temporary file
    probe = tmp_path / "probe"
    probe.write_text("x")
    for name in ("snn.json", "weights.safetensors"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == stat.S_IMODE(os.stat(probe).st_mode)


def test_nothing_is_pickled(tmp_path, monkeypatch):
    model, x = model_and_data()
    snn = snnconvert.convert(model, x, "snm")

    def forbidden(*a, **k):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "dump", "dumps"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch, "save", forbidden)
    snnconvert.save(snn, tmp_path)
    with torch.no_grad():
        assert torch.equal(snnconvert.load(tmp_path)(x[:2], 5), snn(x[:2], 5))
    raw = (tmp_path / "weights.safetensors").read_bytes()
    assert not raw.startswith(b"\x80") and not raw.startswith(b"PK")  # neither a pickle nor a torch zip
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])  # safetensors: a JSON header, then raw tensor bytes
    assert any(k.endswith("threshold") for k in header)


@pytest.fixture
def saved(tmp_path):
    model, x = model_and_data()
    snn = snnconvert.convert(model, x, "snm")
    return snnconvert.save(snn, tmp_path / "m")


def edit_json(directory, change):
    path = directory / "snn.json"
    desc = json.loads(path.read_text())
    change(desc)
    path.write_text(json.dumps(desc))


def test_missing_directory_or_files(tmp_path, saved):
    with pytest.raises(CheckpointError, match="not found"):
        snnconvert.load(tmp_path / "nowhere")
    (saved / "weights.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights.safetensors.*not found"):
        snnconvert.load(saved)
    (tmp_path / "only_json").mkdir()
    (tmp_path / "only_json" / "weights.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="snn.json.*not found"):
        snnconvert.load(tmp_path / "only_json")


def test_corrupt_json(saved):
    (saved / "snn.json").write_text('{"format": "snnconvert.spiking_model", "version": 1, "layers": {')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        snnconvert.load(saved)
    (saved / "snn.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        snnconvert.load(saved)
    (saved / "snn.json").write_text("[1, 2, 3]")
    with pytest.raises(CheckpointError, match="not a snnconvert spiking model"):
        snnconvert.load(saved)


def test_other_version(saved):
    edit_json(saved, lambda d: d.update(version=99))
    with pytest.raises(CheckpointError, match="version 99"):
        snnconvert.load(saved)


def test_weights_changed_after_saving(saved):
    raw = bytearray((saved / "weights.safetensors").read_bytes())
    raw[-1] ^= 0x01  # one bit of one weight
    (saved / "weights.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="does not match"):
        snnconvert.load(saved)


def test_weights_replaced_by_garbage_with_a_matching_hash(saved):
    import hashlib

    garbage = b"this is not safetensors"
    (saved / "weights.safetensors").write_bytes(garbage)
    edit_json(saved, lambda d: d.update(weights_sha256=hashlib.sha256(garbage).hexdigest()))
    with pytest.raises(CheckpointError, match="safetensors"):
        snnconvert.load(saved)


def first_layer_key(desc, type_name):
    return next(k for k, v in desc["layers"].items() if v["type"] == type_name)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["layers"][first_layer_key(d, "Conv2d")].update(type="Sequential"), "an allowed layer type"),
    (lambda d: d["layers"][first_layer_key(d, "Conv2d")].update(type="os.system"), "an allowed layer type"),
    (lambda d: d["layers"][first_layer_key(d, "SpikingMaxPool")].update(pool="os.system"), "pool must be one of"),
    (lambda d: next(n for n in d["nodes"] if n["kind"] == "function").update(target="os.system"),
     "not an allowed function"),
    (lambda d: next(n for n in d["nodes"] if n["kind"] == "method").update(target="__reduce__"),
     "not allowed"),
    (lambda d: next(n for n in d["nodes"] if n["kind"] == "layer").update(kind="eval"), r"nodes\[\d+\]\.kind must be one of"),
    (lambda d: next(n for n in d["nodes"] if n["kind"] == "layer").update(target="missing"), "does not define"),
    # a neuron node pointing at a conv layer: the kinds must match
    (lambda d: next(n for n in d["nodes"] if n["kind"] == "activation").update(
        target=first_layer_key(d, "Conv2d")), "needs a neuron"),
    (lambda d: d["nodes"][2].update(args={"tuple": [{"ref": "later"}]}), "not an earlier node"),
    (lambda d: d["nodes"].insert(1, {"name": "cls", "kind": "function", "target": "getattr",
                                     "args": {"tuple": [{"ref": d["nodes"][0]["name"]}, "__class__"]},
                                     "kwargs": {"dict": {}}}), "attribute that is not allowed"),
    (lambda d: d["layers"][first_layer_key(d, "Conv2d")]["config"].update(in_channels=3), "has shape"),
    (lambda d: d["layers"][first_layer_key(d, "Conv2d")]["config"].update(evil=1), "unknown key.*'evil'"),
    (lambda d: d.pop("nodes"), "nodes is missing"),
])
def test_disallowed_or_inconsistent_descriptions(saved, change, message):
    edit_json(saved, change)
    with pytest.raises(CheckpointError, match=message):
        snnconvert.load(saved)


def test_save_refuses_what_is_not_a_spiking_model(tmp_path):
    with pytest.raises(CheckpointError, match="SpikingModel"):
        snnconvert.save(nn.Linear(2, 2), tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    model, x = model_and_data()
    with pytest.raises(OutputError, match="cannot be written"):
        snnconvert.save(snnconvert.convert(model, x, "snm"), blocker / "sub")


V1_NEURON_TYPES = {"if_hard": ("IFNeuron", "hard"), "if_soft": ("IFNeuron", "soft"), "snm": ("SNMNeuron", None),
                   "signed_if": ("SignedIFNeuron", None)}


@pytest.mark.parametrize("kind", list(CONVERSIONS))
def test_version_1_files_still_load(kind, tmp_path):
    """Version 1 named neurons by class (and IF's reset); version 2 by registry kind."""
    model, x = model_and_data()
    method, overrides = CONVERSIONS[kind]
    snn = snnconvert.convert(model, x, method, **overrides)
    snnconvert.save(snn, tmp_path / "m")

    def to_v1(desc):
        desc["version"] = 1
        desc.pop("method_config")
        for layer in desc["layers"].values():
            if layer["type"] == "neuron":
                cls, reset = V1_NEURON_TYPES[layer.pop("kind")]
                layer["type"] = cls
                if reset:
                    layer["reset"] = reset

    edit_json(tmp_path / "m", to_v1)
    loaded = snnconvert.load(tmp_path / "m")
    assert [n.kind for n in loaded.neurons().values()] == [n.kind for n in snn.neurons().values()]
    assert loaded.method_config is None
    with torch.no_grad():
        assert torch.equal(loaded(x[:4], 16), snn(x[:4], 16))


def test_saved_method_config_is_checked_on_load(saved):
    assert snnconvert.load(saved).method_config == snnconvert.resolve_method("snm").config()
    edit_json(saved, lambda d: d["method_config"]["rule"].update(rule="os.system"))
    with pytest.raises(CheckpointError, match=r"method_config\.rule\.rule: unknown threshold rule 'os.system'"):
        snnconvert.load(saved)
