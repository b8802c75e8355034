"""RMP threshold balancing from recorded spikes gives, bit for bit, the thresholds of re-running the
network from the input for every layer (an independent reference loop below), on chains, residual
and concatenating graphs, for every granularity, signed and unsigned neurons, and when the spike
cache does not fit its budget."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import snnconvert as sc
from snnconvert.calibration.balancing import cut_after, pack_bits, unpack_bits
from snnconvert.calibration.observers import MaxObserver
from snnconvert.calibration.statistics import floor_dead
from snnconvert.graph import map_refs

from torch import nn

from test_engine import Res


class Vgg(nn.Module):
    """Five neuron layers (max pooling, batch norm, average pooling, a hidden linear layer): every
    pass from the third on starts from recorded spikes."""

    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                               nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                               nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.f(x)


def reference_thresholds(model, x, steps, granularity, scale, neuron, batch_size):
    """Layer by layer, run the SNN from the input with every earlier layer at its final threshold and
    take the max of the layer's per-step input over images and steps (the algorithm as specified)."""
    snn = sc.convert(model, x, "baseline", neuron=neuron, granularity=granularity, threshold=1.0)
    program = snn.program
    out = {}
    for node in program.activation_nodes():
        obs = MaxObserver(sc.Granularity(granularity))
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            snn.reset()
            for t in range(steps):  # one step at a time, no chunking, no static shortcut
                env = {}
                for n in program.nodes:
                    if n.kind == "input":
                        env[n.name] = xb
                    elif n.kind == "output":
                        break
                    else:
                        args = map_refs(n.args, lambda r: env[r.name])
                        if n.name == node.name:
                            obs.update(args[0], n.name)
                            break
                        if n.kind in ("activation", "maxpool"):
                            env[n.name] = program.layers[n.target](args[0].unsqueeze(0))[0]
                        else:
                            env[n.name] = program.call(n, args, map_refs(n.kwargs, lambda r: env[r.name]))
        out[node.name] = floor_dead(obs.compute()) * scale
        program.layers[node.target].threshold = out[node.name].clone()
    return out


CASES = [(Vgg, "layer", "if_soft", False), (Vgg, "channel", "if_soft", False), (Vgg, "neuron", "snm", False),
         (Res, "layer", "if_soft", False), (Res, "channel", "signed_if", False), (Res, "neuron", "if_soft", False),
         # channels-last activations (as oneDNN returns for some convs): convs sum in another order
         # for another layout, so recorded spikes must come back in the layout they were written in
         (Vgg, "layer", "if_soft", True), (Res, "channel", "if_soft", True)]


@pytest.mark.parametrize("net,granularity,neuron,channels_last", CASES)
@pytest.mark.parametrize("cache_mb", [1024.0, 0.007, 0.0])  # all fit, some fit, none
def test_balancing_equals_re_running_from_the_input(net, granularity, neuron, channels_last, cache_mb):
    torch.manual_seed(0)
    model = net().eval()
    x = torch.randn(20, 3, 8, 8)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    rule = sc.LayerInputMax(steps=10, cache_mb=cache_mb)
    snn = sc.convert(model, x, "rmp", threshold=rule, granularity=granularity, neuron=neuron, scale=0.5,
                     batch_size=8)  # 3 batches, the last one short
    expected = reference_thresholds(model, x, 10, granularity, 0.5, neuron, 8)
    got = {k: n.threshold for k, n in snn.neurons().items()}
    assert got.keys() == expected.keys()
    for k in got:
        assert torch.equal(got[k], expected[k]), k


def test_the_cut_holds_the_skip_connection():
    snn = sc.convert(Res().eval(), torch.randn(4, 3, 8, 8), "snm")
    names = [n.name for n in snn.program.activation_nodes()]  # stem, a, block output, down
    assert cut_after(snn.program, names[0]) == [names[0]]
    assert cut_after(snn.program, names[1]) == [names[0], names[1]]  # the residual add still reads the stem
    assert cut_after(snn.program, names[2]) == [names[0], names[2]]  # the cat reads the stem too
    assert cut_after(snn.program, names[3]) == [names[3]]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(1, 4))
def test_bit_packing_round_trips(bits, rows):
    b = torch.tensor(bits * rows).view(rows, len(bits))
    packed = pack_bits(b)
    assert packed.dtype == torch.uint8 and packed.numel() == (b.numel() + 7) // 8
    assert torch.equal(unpack_bits(packed, b.shape).bool(), b)


def test_cache_budget_must_be_non_negative():
    with pytest.raises(sc.ConfigError, match="cache_mb"):
        sc.LayerInputMax(cache_mb=-1)
