"""NIR export and import: the exported graph, run by snnconvert.import_nir and by independent simulators
(snnTorch, Norse, sinabs: each test skips when its reader is not installed), spikes like the SNN it came
from; what NIR cannot express is refused, naming the layer and the reason."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import snnconvert
from snnconvert import CheckpointError, ConfigError, ExportError, export_nir, import_nir
from snnconvert.interop.nir_export import _as_read
from snnconvert.interop.nir_format import FIRE_ABOVE

nir = pytest.importorskip("nir")
pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.load is being deprecated:DeprecationWarning")

T = 16
SHAPE = (1, 8, 8)


# ---- small networks --------------------------------------------------------------------------------

def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                         nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 3))


class Residual(nn.Module):
    """stem -> [conv-relu-conv] + shortcut (identity, or a 1x1 projection) -> relu -> global pool -> fc."""

    def __init__(self, projection: bool = False) -> None:
        super().__init__()
        self.stem, self.relu0 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.conv1, self.relu1, self.conv2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)
        self.proj = nn.Conv2d(4, 4, 1) if projection else None
        self.relu2, self.pool, self.fc = nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)

    def forward(self, x):
        h = self.relu0(self.stem(x))
        y = self.conv2(self.relu1(self.conv1(h))) + (h if self.proj is None else self.proj(h))
        return self.fc(torch.flatten(self.pool(self.relu2(y)), 1))


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1)
        self.relu_a, self.relu_b, self.relu = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.conv, self.fc = nn.Conv2d(5, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = torch.cat([self.relu_a(self.a(x)), self.relu_b(self.b(x))], dim=1)
        return self.fc(self.relu(self.conv(h)).flatten(1))


def inputs(n: int = 8) -> torch.Tensor:
    return torch.rand(n, *SHAPE)


def power_of_two(snn: snnconvert.SpikingModel) -> snnconvert.SpikingModel:
    """Every threshold rounded to a power of two: dividing by it is then exact in float32, so the folded
    network's float arithmetic is the SNN's, bit for bit."""
    for neuron in snn.neurons().values():
        neuron.threshold = torch.exp2(torch.round(torch.log2(neuron.threshold)))
    return snn


def baseline(model: nn.Module, granularity: str = "layer", exact: bool = True) -> snnconvert.SpikingModel:
    torch.manual_seed(1)
    snn = snnconvert.convert(model.eval(), inputs(64), "baseline", granularity=granularity)
    return power_of_two(snn) if exact else snn


# ---- running a network: snnconvert and each reader ------------------------------------------------------

def ours(snn, x: torch.Tensor, steps: int = T):
    """(outputs [T, N, ...] of each step, {neuron layer: spike counts over the steps [N, ...]})."""
    taps = {name: None for name in snn.neurons()}
    with torch.no_grad():
        outs = torch.cat(list(snn.run(x, steps, taps=taps)))
    return outs, {name: torch.round(taps[name] / n.threshold).long() for name, n in snn.neurons().items()}


def counting(counts: dict, name: str, reshape=None):
    def hook(module, args, out):
        spikes = (out[0] if isinstance(out, tuple) else out).detach()
        spikes = spikes if reshape is None else reshape(spikes)
        counts[name] = counts.get(name, 0) + spikes.long()
    return hook


def run_snntorch(path, x: torch.Tensor, steps: int = T, reset: str = "zero"):
    """snnTorch 1.0.0 reads nir.IF as Leaky(beta=0.9, reset by subtraction, init_hidden=False, which returns
    (spikes, membrane) where the next layer wants spikes, reset_delay=False, which subtracts twice while the
    potential stays above threshold): set up as NIR's IF (beta = 1, reset to zero), or with reset="subtract"
    as the soft-reset opt-in's readers; reset_delay=True (snnTorch's default) resets at the next step, the
    same spikes as resetting at once."""
    snntorch = pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(path))
    counts: dict = {}
    for name, m in list(net.named_children()):
        if isinstance(m, snntorch.Leaky):
            fixed = snntorch.Leaky(beta=1.0, threshold=float(m.threshold), reset_mechanism=reset, init_hidden=True)
            fixed.register_forward_hook(counting(counts, name))
            setattr(net, name, fixed)
    outs = []
    with torch.no_grad():
        for _ in range(steps):
            outs.append(net(x)[0])
    return torch.stack(outs), counts


def in_graph_order(net):
    """nirtorch's GraphExecutor (nirtorch.load, used by Norse and sinabs) runs nodes in depth-first order, so
    a node reached by two paths of unequal length (a residual block with a scaling node or projection, a
    concatenation) runs before one of its inputs: run them in an order where each follows its inputs."""
    order, done, pending = [], set(), list(net.execution_order)
    while pending:
        node = next(n for n in pending if all(s.name in done for s in net.graph.find_source_nodes_of(n)))
        order.append(node)
        done.add(node.name)
        pending.remove(node)
    net.execution_order = order
    return net


def run_norse(path, x: torch.Tensor, steps: int = T, reorder: bool = True):
    pytest.importorskip("norse")
    import norse.torch as norse
    from norse.torch.module.iaf import IAFCell

    net = norse.from_nir(nir.read(path))
    net = in_graph_order(net) if reorder else net
    counts: dict = {}
    for name, m in net.named_modules():
        if isinstance(m, IAFCell):
            m.register_forward_hook(counting(counts, name))
    outs, state = [], None
    with torch.no_grad():
        for _ in range(steps):
            out, state = net(x, state)
            outs.append(out)
    return torch.stack(outs), counts


def run_sinabs(path, x: torch.Tensor, steps: int = T, reset: str = "zero"):
    """sinabs 3.1.3 reads nir.IF as IAFSqueeze with several spikes per step, reset by subtraction and the
    potential clipped at -threshold: set up as NIR's IF (one spike, reset to zero, no clipping)."""
    sinabs = pytest.importorskip("sinabs")
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, MembraneSubtract, SingleSpike

    n = len(x)
    net = in_graph_order(sinabs.from_nir(nir.read(path), batch_size=n))
    counts: dict = {}
    for name, m in net.named_modules():
        if isinstance(m, sl.IAFSqueeze):
            m.spike_fn, m.min_v_mem = SingleSpike, None
            m.reset_fn = MembraneReset() if reset == "zero" else MembraneSubtract()
            m.register_forward_hook(counting(counts, name, lambda s: s.reshape(n, steps, *s.shape[1:]).sum(1)))
    with torch.no_grad():
        out, _ = net(x.unsqueeze(1).expand(n, steps, *x.shape[1:]).reshape(n * steps, *x.shape[1:]))
    return out.reshape(n, steps, *out.shape[1:]).transpose(0, 1), counts


READERS = {"snntorch": (run_snntorch, "avg"), "norse": (run_norse, "sum"), "sinabs": (run_sinabs, "sum")}


def assert_same(expected, got, outputs_atol: float = 0):
    """Identical spike counts in every neuron layer; the readout of every step equal (bit for bit by default)."""
    (out_a, counts_a), (out_b, counts_b) = expected, got
    assert set(counts_b) == set(counts_a)
    for name in counts_a:
        assert torch.equal(counts_a[name], counts_b[name]), f"spike counts of {name} differ"
    assert out_a.shape == out_b.shape
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=outputs_atol)


def grouped() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.ReLU(),
                         nn.AvgPool2d(4), nn.Flatten(), nn.Linear(24, 3))


def unequal_shortcut() -> snnconvert.SpikingModel:
    """The residual block with the shortcut's ends at different thresholds (a scaling node on the shortcut)."""
    snn = baseline(Residual())
    neurons = snn.neurons()
    neurons["relu2"].threshold = neurons["relu0"].threshold * 2
    return snn


NETS = {"mlp": lambda: baseline(mlp()), "cnn_avgpool": lambda: baseline(cnn()),
        "residual": unequal_shortcut, "projection": lambda: baseline(Residual(projection=True)),
        "concat": lambda: baseline(Concat()), "grouped_conv": lambda: baseline(grouped()),
        "channel_thresholds": lambda: baseline(cnn(), "channel")}


# ---- exact cases -----------------------------------------------------------------------------------

@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("reader", READERS)
def test_hard_reset_export_spikes_the_same_in_other_simulators(tmp_path, net, reader):
    run, pooling = READERS[reader]
    snn = NETS[net]()
    path = tmp_path / "net.nir"
    export_nir(snn, path, input_shape=SHAPE, pooling=pooling)
    x = inputs()
    assert_same(ours(snn, x), run(path, x))


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("pooling", ["avg", "sum"])
def test_export_then_import_nir_simulates_the_original(tmp_path, net, pooling):
    snn = NETS[net]()
    path = tmp_path / "net.nir"
    export_nir(snn, path, input_shape=SHAPE, pooling=pooling)
    back = import_nir(path)
    x = inputs()
    assert_same(ours(snn, x), ours(back, x))
    assert back.method["input_shape"] == list(SHAPE) and back.method["nir_reset"] == "zero"
    assert all(n.reset_mode.value == "hard" and n.threshold.numel() == 1 for n in back.neurons().values())


def test_thresholds_that_are_not_powers_of_two_round_trip_on_these_nets(tmp_path):
    """Dividing by theta rounds in float32; on these inputs no potential lands within that rounding of a
    threshold, so the spike counts are still the SNN's (exact in general only for powers of two)."""
    snn = baseline(cnn(), "channel", exact=False)
    path = tmp_path / "net.nir"
    export_nir(snn, path, input_shape=SHAPE)
    x = inputs(64)
    assert_same(ours(snn, x), ours(import_nir(path), x), outputs_atol=1e-6)


class Constant(nn.Module):
    """One input feature into one neuron layer of 3 neurons with weights 1/4, 1/2 and 1, then a readout."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.relu, self.out = nn.Linear(1, 3, bias=False), nn.ReLU(), nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor([[0.25], [0.5], [1.0]]))
            self.out.weight.fill_(1.0)

    def forward(self, x):
        return self.out(self.relu(self.hidden(x)))


def threshold_exact_snn(theta: float = 0.5) -> snnconvert.SpikingModel:
    return snnconvert.convert(Constant(), torch.ones(4, 1), "baseline", threshold=theta)


def test_potentials_that_reach_the_threshold_exactly_fire_in_every_reader(tmp_path):
    """Input 1 and theta = 1/2: the neurons get theta/2, theta and 2 theta per step, so their potentials hit
    theta exactly. snnconvert fires on V >= theta: every 2nd step, every step, every step (the residue is lost
    in the hard reset). NIR fires on v > v_threshold; the file's v_threshold, the float32 just below 1, gives
    the same spikes in every reader (with v_threshold = 1 the first neuron would fire every 3rd step)."""
    snn = threshold_exact_snn()
    x = torch.ones(1, 1)
    expected = torch.tensor([[T // 2, T, T]])
    _, counts = ours(snn, x)
    assert torch.equal(counts["relu"], expected)
    for pooling in ("avg", "sum"):
        export_nir(snn, tmp_path / f"{pooling}.nir", input_shape=[1], pooling=pooling)
    assert torch.equal(ours(import_nir(tmp_path / "avg.nir"), x)[1]["relu"], expected)
    for reader, (run, pooling) in READERS.items():
        try:
            _, got = run(tmp_path / f"{pooling}.nir", x)
        except pytest.skip.Exception:
            continue
        assert torch.equal(got["relu"], expected), reader
    graph = nir.read(tmp_path / "avg.nir")
    assert np.all(graph.nodes["relu"].v_threshold == FIRE_ABOVE) and float(FIRE_ABOVE) == 1 - 2 ** -24
    assert np.all(graph.nodes["relu"].v_reset == 0) and np.all(graph.nodes["relu"].r == 1)


def test_a_threshold_of_one_would_fire_late_which_the_readers_show(tmp_path):
    """The test above can fail: with v_threshold = 1, Norse's IF (v > 1) fires the theta/2 neuron every 3rd
    step."""
    pytest.importorskip("norse")
    path = tmp_path / "net.nir"
    export_nir(threshold_exact_snn(), path, input_shape=[1], pooling="sum")
    graph = nir.read(path)
    graph.nodes["relu"].v_threshold = np.ones(3, np.float32)
    nir.write(tmp_path / "one.nir", graph)
    _, counts = run_norse(tmp_path / "one.nir", torch.ones(1, 1))
    assert counts["relu"].tolist() == [[T // 3, T // 2, T]]


def test_per_channel_thresholds_fold_into_weights_and_every_if_node_fires_at_one(tmp_path):
    snn = NETS["channel_thresholds"]()
    thresholds = [n.threshold.flatten() for n in snn.neurons().values()]
    assert all(len(set(t.tolist())) > 1 for t in thresholds)  # really per channel
    path = tmp_path / "net.nir"
    export_nir(snn, path, input_shape=SHAPE)
    graph = nir.read(path)
    ifs = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    assert len(ifs) == 2 and all(np.all(n.v_threshold == FIRE_ABOVE) for n in ifs)
    conv0, conv1 = (snn.program.layers[k] for k in ("0", "3"))
    theta0, theta1 = thresholds
    w0 = conv0.weight.detach() / theta0.view(-1, 1, 1, 1)  # rows divided by the neuron they feed
    w1 = conv1.weight.detach() * theta0.view(1, -1, 1, 1) / theta1.view(-1, 1, 1, 1)  # columns times the spikes'
    torch.testing.assert_close(torch.from_numpy(graph.nodes["_0"].weight), w0)
    torch.testing.assert_close(torch.from_numpy(graph.nodes["_3"].weight), w1)
    torch.testing.assert_close(torch.from_numpy(graph.nodes["_0"].bias), conv0.bias.detach() / theta0)


def test_identity_shortcut_between_equal_thresholds_needs_no_scaling_node(tmp_path):
    """With one threshold for both ends of the shortcut, the block is plain fan-in, which nirtorch's
    depth-first GraphExecutor (Norse) runs right without reordering; unequal thresholds add a scaling node."""
    torch.manual_seed(1)
    equal = snnconvert.convert(Residual().eval(), inputs(16), "baseline", threshold=0.5)
    export_nir(equal, tmp_path / "equal.nir", input_shape=SHAPE, pooling="sum")
    assert not any(name.endswith("_scale") for name in nir.read(tmp_path / "equal.nir").nodes)
    unequal = NETS["residual"]()
    export_nir(unequal, tmp_path / "unequal.nir", input_shape=SHAPE, pooling="sum")
    assert "relu2_scale" in nir.read(tmp_path / "unequal.nir").nodes
    pytest.importorskip("norse")
    x = inputs()
    assert_same(ours(equal, x), run_norse(tmp_path / "equal.nir", x, reorder=False))


def test_file_records_the_semantics_in_its_metadata(tmp_path):
    path = tmp_path / "net.nir"
    result = export_nir(NETS["cnn_avgpool"](), path, input_shape=SHAPE)
    meta = nir.read(path).metadata
    assert meta["format"] == "snnconvert.nir" and meta["reset"] == "zero" and "dt = 1" in meta["time"]
    assert result.reset == "zero" and result.loss is None and "exact" in result.summary()
    kinds = {type(n).__name__ for n in nir.read(path).nodes.values()}
    assert kinds == {"Input", "Conv2d", "IF", "AvgPool2d", "Flatten", "Affine", "Output"}


# ---- the soft-reset opt-in -------------------------------------------------------------------------------

def soft_snn(method: str = "rmp") -> snnconvert.SpikingModel:
    torch.manual_seed(1)
    model = cnn().eval()
    x = inputs(64)
    extra = {"target_T": 8} if method == "calibrated" else {}
    return snnconvert.convert(model, x, method, **extra)


@pytest.mark.parametrize("method", ["rmp", "calibrated"])
def test_soft_reset_is_refused_by_default_saying_why(tmp_path, method):
    with pytest.raises(ExportError, match=r"node '_1' \(if_soft neuron\).*resets by subtraction.*allow_soft_reset"):
        export_nir(soft_snn(method), tmp_path / "net.nir", input_shape=SHAPE)
    assert not (tmp_path / "net.nir").exists()


def test_soft_reset_opt_in_records_the_reset_and_measures_the_readers(tmp_path):
    snn = soft_snn("calibrated")
    x = inputs(32)
    y = torch.randint(0, 3, (32,))
    path = tmp_path / "net.nir"
    result = export_nir(snn, path, input_shape=SHAPE, allow_soft_reset=True, data=(x, y), T=8)
    graph = nir.read(path)
    assert graph.metadata["reset"] == "subtract" and result.reset == "subtract"
    ifs = {k: n for k, n in graph.nodes.items() if isinstance(n, nir.IF)}
    assert all(n.metadata["reset"] == "subtract" and "v0" in n.metadata for n in ifs.values())
    lo = result.loss
    assert lo.T == 8 and lo.samples == 32 and graph.metadata["accuracy"]["zero_readers"] == pytest.approx(lo.zero_readers)
    text = result.summary()
    assert "readers that reset to zero" in text and "NOT exact" in text
    # snnconvert reads the metadata back: the same soft-reset network, initial potentials included
    back = import_nir(path)
    assert all(n.reset_mode.value == "soft" and n.v_offset is not None for n in back.neurons().values())
    assert_same(ours(snn, x), ours(back, x), outputs_atol=1e-5)


def test_soft_reset_readers_compute_what_the_measurement_says(tmp_path):
    """snnTorch set to subtract computes the SNN from V(0) = 0; Norse (reset to zero) the hard-reset variant."""
    snn = power_of_two(soft_snn("rmp"))
    export_nir(snn, tmp_path / "avg.nir", input_shape=SHAPE, allow_soft_reset=True)
    export_nir(snn, tmp_path / "sum.nir", input_shape=SHAPE, allow_soft_reset=True, pooling="sum")
    x = inputs()
    expect_subtract, expect_zero = ours(_as_read(snn, hard=False), x), ours(_as_read(snn, hard=True), x)
    ran = 0
    for run, path, expected in ((lambda p, x: run_snntorch(p, x, reset="subtract"), "avg.nir", expect_subtract),
                                (lambda p, x: run_sinabs(p, x, reset="subtract"), "sum.nir", expect_subtract),
                                (run_norse, "sum.nir", expect_zero)):
        try:
            got = run(tmp_path / path, x)
        except pytest.skip.Exception:
            continue
        assert_same(expected, got)
        ran += 1
    if not ran:
        pytest.skip("no NIR reader installed")


# ---- refusals --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("neuron", ["snm", "signed_if"])
def test_signed_neurons_are_refused(tmp_path, neuron):
    snn = snnconvert.convert(cnn().eval(), inputs(16), "baseline", neuron=neuron)
    with pytest.raises(ExportError, match=rf"node '_1' \({neuron} neuron\).*negative spikes"):
        export_nir(snn, tmp_path / "n.nir", input_shape=SHAPE, allow_soft_reset=True)


def test_spike_gated_max_pooling_is_refused(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 3))
    snn = snnconvert.convert(model.eval(), inputs(16), "baseline")
    with pytest.raises(ExportError, match=r"node '_2' \(SpikingMaxPool '_2'\).*spike-gated max pooling.*no max pooling"):
        export_nir(snn, tmp_path / "n.nir", input_shape=SHAPE)


def test_neuron_wise_thresholds_after_a_convolution_are_refused(tmp_path):
    snn = snnconvert.convert(cnn().eval(), inputs(16), "baseline", granularity="neuron")
    with pytest.raises(ExportError, match=r"node '_1'.*neuron-wise thresholds.*granularity 'channel'"):
        export_nir(snn, tmp_path / "n.nir", input_shape=SHAPE)
    export_nir(snnconvert.convert(mlp().eval(), inputs(16), "baseline", granularity="neuron"), tmp_path / "m.nir",
               input_shape=SHAPE)  # after a linear layer they fold, one per feature


def test_an_initial_potential_is_refused_without_the_opt_in(tmp_path):
    snn = snnconvert.convert(cnn().eval(), inputs(16), "baseline", v_init=0.5)
    with pytest.raises(ExportError, match=r"node '_1'.*start at V\(0\).*no initial potential"):
        export_nir(snn, tmp_path / "n.nir", input_shape=SHAPE)


class Doubling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Linear(128, 3)

    def forward(self, x):
        return self.fc((self.relu(self.conv(x)) * 2).flatten(1))


def test_an_operation_without_a_nir_node_is_refused_by_name(tmp_path):
    snn = snnconvert.convert(Doubling().eval(), inputs(16), "baseline")
    with pytest.raises(ExportError, match=r"node 'mul' \(function mul\).*NIR has no node for it"):
        export_nir(snn, tmp_path / "n.nir", input_shape=SHAPE)


def test_padded_pooling_cannot_be_sum_pooling(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(3, 2, padding=1), nn.Flatten(),
                          nn.Linear(32, 3))
    snn = power_of_two(snnconvert.convert(model.eval(), inputs(16), "baseline"))
    with pytest.raises(ExportError, match=r"node '_2'.*ignore the padding; use pooling='avg'"):
        export_nir(snn, tmp_path / "n.nir", input_shape=SHAPE, pooling="sum")
    export_nir(snn, tmp_path / "avg.nir", input_shape=SHAPE)
    x = inputs()
    assert_same(ours(snn, x), ours(import_nir(tmp_path / "avg.nir"), x))


def test_export_needs_an_input_shape_when_none_is_recorded(tmp_path):
    with pytest.raises(ConfigError, match=r"input_shape=\[C, H, W\]"):
        export_nir(NETS["mlp"](), tmp_path / "n.nir")
    with pytest.raises(ConfigError, match="cannot run on inputs of shape"):
        export_nir(NETS["mlp"](), tmp_path / "n.nir", input_shape=[3, 4, 4])


# ---- reading files ---------------------------------------------------------------------------------------

def test_bad_files_give_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        import_nir(tmp_path / "missing.nir")
    (tmp_path / "junk.nir").write_bytes(b"not hdf5 at all")
    with pytest.raises(CheckpointError, match="junk.nir' is not a NIR graph"):
        import_nir(tmp_path / "junk.nir")


def lif_graph() -> "nir.NIRGraph":
    ones = np.ones(3, np.float32)
    return nir.NIRGraph.from_list(nir.Input(np.array([2])), nir.Affine(np.ones((3, 2), np.float32), np.zeros(3, np.float32)),
                                  nir.LIF(tau=ones, r=ones, v_leak=0 * ones, v_threshold=ones), nir.Output(np.array([3])))


def test_unsupported_nodes_and_parameters_are_refused_by_name(tmp_path):
    nir.write(tmp_path / "lif.nir", lif_graph())
    with pytest.raises(CheckpointError, match=r"node 'lif' \(LIF\): snnconvert reads Input, Output, .* IF nodes only"):
        import_nir(tmp_path / "lif.nir")
    ones = np.ones(3, np.float32)
    graph = nir.NIRGraph.from_list(nir.Input(np.array([2])), nir.Affine(np.ones((3, 2), np.float32), np.zeros(3, np.float32)),
                                   nir.IF(r=2 * ones, v_threshold=ones), nir.Output(np.array([3])))
    nir.write(tmp_path / "r.nir", graph)
    with pytest.raises(CheckpointError, match=r"node 'if' \(IF\): r = \[2\.\]"):
        import_nir(tmp_path / "r.nir")


def test_a_graph_from_another_tool_runs_on_snnconverts_engine(tmp_path):
    """A hand-written NIR graph (Linear without bias, IF with threshold 1.5, SumPool2d): v > 1.5 with input
    1 per step fires at steps 2, 4, ...; the sum pool adds the four 0/1 spikes of each window."""
    w = np.ones((1, 1, 1, 1), np.float32)
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([1, 2, 2])),
               "conv": nir.Conv2d(input_shape=(2, 2), weight=w, stride=1, padding=0, dilation=1, groups=1,
                                  bias=np.zeros(1, np.float32)),
               "if": nir.IF(r=np.ones((1, 2, 2), np.float32), v_threshold=np.full((1, 2, 2), 1.5, np.float32)),
               "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
               "flat": nir.Flatten(input_type={"input": np.array([1, 1, 1])}, start_dim=0, end_dim=-1),
               "lin": nir.Linear(weight=np.full((1, 1), 0.5, np.float32)),
               "out": nir.Output(np.array([1]))},
        edges=[("in", "conv"), ("conv", "if"), ("if", "pool"), ("pool", "flat"), ("flat", "lin"), ("lin", "out")])
    nir.write(tmp_path / "foreign.nir", graph)
    snn = import_nir(tmp_path / "foreign.nir")
    outs, counts = ours(snn, torch.ones(1, 1, 2, 2), 6)
    assert torch.equal(counts["if"], torch.full((1, 1, 2, 2), 3))
    assert outs.flatten().tolist() == [0, 2, 0, 2, 0, 2]  # 0.5 * (4 spikes of 1) every 2nd step
    assert math.isclose(snn.neurons()["if"].threshold.item(), 1.5, rel_tol=1e-6)
    graph.nodes["if"].v_threshold = np.array([[[1.0, 1.5], [1.5, 1.5]]], np.float32)
    nir.write(tmp_path / "mixed.nir", graph)
    with pytest.raises(CheckpointError, match=r"node 'if' \(IF\): its v_threshold differs between neurons"):
        import_nir(tmp_path / "mixed.nir")


# ---- the command line ----------------------------------------------------------------------------------

def test_cli_export_exact_refused_and_opted_in(tmp_path, capsys):
    from snnconvert import cli
    from snnconvert.data.registry import DataRecord, dataset_info

    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(64, 10)).eval()
    record = DataRecord.of(dataset_info("digits", None), None).to_dict()
    for method in ("baseline", "rmp"):
        snn = snnconvert.convert(model, inputs(64), method)
        snn.method["data"] = record
        snnconvert.save(snn, tmp_path / method)
    out = tmp_path / "b.nir"
    assert cli.main(["export", "--snn", str(tmp_path / "baseline"), "--format", "nir", "--out", str(out)]) == 0
    assert "hard reset, exact" in capsys.readouterr().out
    x = inputs()
    assert_same(ours(snnconvert.load(tmp_path / "baseline"), x), ours(import_nir(out), x), outputs_atol=1e-6)
    assert cli.main(["export", "--snn", str(tmp_path / "rmp"), "--out", str(tmp_path / "r.nir")]) == 1
    err = capsys.readouterr().err
    assert "resets by subtraction" in err and "--allow-soft-reset writes it" in err and "Traceback" not in err
    assert cli.main(["export", "--snn", str(tmp_path / "rmp"), "--out", str(tmp_path / "r.nir"), "--allow-soft-reset",
                     "--T", "8", "--limit", "40"]) == 0
    text = capsys.readouterr().out
    assert "on 40 digits test images at T=8" in text and "readers that reset to zero as NIR's IF says" in text
    assert cli.main(["export", "--snn", str(tmp_path / "baseline"), "--out", str(tmp_path / "baseline" / "snn.json")]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
