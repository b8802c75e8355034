"""diagnose(): per-layer errors against the ANN, checked against hand computations."""
import math

import pytest
import torch
from torch import nn

import snnconvert as sc
from snnconvert.diagnosis import checkpoints, diagnose


def one_neuron_net() -> nn.Module:
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 2))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[2].bias.copy_(torch.tensor([0.0, 0.2]))
    return net.eval()


def test_checkpoints():
    assert checkpoints(1) == [1] and checkpoints(8) == [1, 2, 4, 8] and checkpoints(10) == [1, 2, 4, 8, 10]


def test_one_neuron_by_hand():
    net = one_neuron_net()
    x = torch.tensor([[0.3], [1.5], [0.0]])
    y = torch.tensor([0, 0, 1])
    snn = sc.convert(net, None, "rmp", threshold=1.0)  # soft reset, theta = 1, V(0) = 0
    d = diagnose(snn, net, (x, y), 8)
    (la,) = d.layers
    # input 0.3: V = 0.3, 0.6, 0.9, 1.2 -> spike at t = 4, then 0.5, 0.8, 1.1 -> spike at t = 7
    # input 1.5 (clipped at theta = 1): a spike every step; input 0: silent
    spikes = {0.3: [0, 0, 0, 1, 0, 0, 1, 0], 1.5: [1] * 8, 0.0: [0] * 8}
    a = torch.tensor([0.3, 1.5, 0.0], dtype=torch.float64)
    for j, t in enumerate(d.steps):
        mean = torch.tensor([sum(spikes[v][:t]) / t for v in (0.3, 1.5, 0.0)], dtype=torch.float64)
        assert la.relative_error[j] == pytest.approx(float((mean - a).norm() / a.norm()))
        cos = [1.0 if m > 0 else 0.0 for m in mean[:2]] + [1.0]  # one neuron: cos is 1, 0 or (both zero) 1
        assert la.cosine[j] == pytest.approx(sum(cos) / 3)
    assert la.clipped == pytest.approx(1 / 3) and la.silent == pytest.approx(1 / 3)
    assert la.firing_rate == pytest.approx((2 + 8 + 0) / (3 * 8)) and la.first_spike_step == 1
    # at T = 8 the means are 0.25, 1, 0: outputs (0.25, -0.05), (1, -0.8), (0, 0.2): all correct
    assert d.snn_accuracy == 1.0 and la.accuracy_spiking_up_to_here == 1.0
    assert d.ann_accuracy == 1.0 and d.samples == 3 and d.T == 8
    assert "err@8" in d.table() and math.isfinite(d.to_dict()["layers"][0]["relative_error"][-1])


def test_deeper_net_errors_shrink_with_t_and_hybrid_accuracy_ends_at_the_snn():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.rand(40, 1, 6, 6)
    with torch.no_grad():
        y = net(x).argmax(1)
    snn = sc.convert(net, x, "snm")
    before = [p.clone() for p in net.parameters()]
    d = diagnose(snn, net, (x, y), 32, batch_size=16)
    assert [la.name for la in d.layers] == [n.name for n in snn.program.activation_nodes()]
    for la in d.layers:
        assert la.relative_error[-1] < la.relative_error[0]
    assert d.layers[-1].accuracy_spiking_up_to_here == pytest.approx(d.snn_accuracy)
    assert d.snn_accuracy == pytest.approx(sc.simulate(snn, (x, y), 32).accuracy[-1])
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # the ANN is unchanged
    unlabelled = diagnose(snn, net, x, 4)
    assert unlabelled.ann_accuracy is None and unlabelled.layers[0].accuracy_spiking_up_to_here is None


def test_bad_input_is_named():
    net = one_neuron_net()
    snn = sc.convert(net, None, "rmp", threshold=1.0)
    with pytest.raises(sc.ConfigError, match="time steps"):
        diagnose(snn, net, torch.rand(4, 1), 0)
    with pytest.raises(sc.ConfigError, match="does not fit"):
        diagnose(snn, net, torch.rand(4, 3), 4)
    with pytest.raises(sc.ConfigError, match="SpikingModel"):
        diagnose(net, net, torch.rand(4, 1), 4)
    other = nn.Sequential(nn.Linear(1, 2))
    with pytest.raises(sc.ConfigError, match="converted from"):
        diagnose(snn, other, torch.rand(4, 1), 4)
