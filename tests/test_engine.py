"""The chunked engine (time folded into the batch, static first layers, chunks of K steps) gives
exactly the spikes and outputs of a plain step-by-step loop written independently here."""
import pytest
import torch
from torch import nn

import snnconvert as sc
from snnconvert.graph import INPUT, OUTPUT, map_refs


def step_by_step(snn: sc.SpikingModel, x: torch.Tensor, T: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reference: every node evaluated at every step on [B, ...]; stateful layers get [1, B, ...]."""
    snn.reset()
    program = snn.program
    outs, spikes = [], {}
    for _ in range(T):
        env = {}
        for node in program.nodes:
            if node.kind == INPUT:
                env[node.name] = x
            elif node.kind == OUTPUT:
                outs.append(env[node.args[0].name])
            elif node.kind in ("activation", "maxpool"):
                y = program.layers[node.target](env[node.args[0].name].unsqueeze(0))[0]
                env[node.name] = y
                if node.kind == "activation":
                    spikes.setdefault(node.name, []).append(y)
            else:
                args = map_refs(node.args, lambda r: env[r.name])
                kwargs = map_refs(node.kwargs, lambda r: env[r.name])
                env[node.name] = program.call(node, args, kwargs)
    return torch.stack(outs), {k: torch.stack(v) for k, v in spikes.items()}


class Vgg(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                               nn.Linear(64, 10))

    def forward(self, x):
        return self.f(x)


class Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.down = nn.Conv2d(16, 12, 1, stride=2)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        s = torch.relu(self.stem(x))
        r = torch.relu(self.b(torch.relu(self.a(s))) + s)
        c = torch.cat([r, s], dim=1)
        d = torch.relu(self.down(c))
        return self.fc(nn.functional.adaptive_avg_pool2d(d, 1).flatten(1))


@pytest.mark.parametrize("net", [Vgg, Res])
@pytest.mark.parametrize("method,overrides", [("baseline", {}), ("rmp", {"calibration_steps": 8}),
                                              ("snm", {}), ("rmp", {"neuron": "signed_if", "v_init": 0.5,
                                                                    "granularity": "channel", "threshold": "max"})])
def test_chunked_engine_equals_step_by_step_loop(net, method, overrides):
    torch.manual_seed(0)
    model = net().eval()
    x = torch.randn(6, 3, 8, 8)
    snn = sc.convert(model, torch.randn(32, 3, 8, 8), method, **overrides)
    T = 23
    with torch.no_grad():
        ref_out, ref_spikes = step_by_step(snn, x, T)
        for chunk in (1, 3, 7, 23):
            out = torch.cat(list(snn.run(x, T, chunk_size=chunk)))
            assert torch.equal(out, ref_out), f"chunk {chunk}: outputs differ"
            rec = sc.simulation.record.Recorder()
            list(snn.run(x, T, chunk_size=chunk, recorder=rec))
            for k, s in ref_spikes.items():
                assert torch.equal(rec.spikes[k], (s != 0).flatten(1).sum(1).double()), f"chunk {chunk}: spikes of {k}"


def test_static_first_layer_is_computed_once_per_sample():
    torch.manual_seed(0)
    model = Vgg().eval()
    snn = sc.convert(model, torch.randn(16, 3, 8, 8), "rmp", calibration_steps=4)
    first = snn.program.layers[snn.program.nodes[1].target]
    calls = []
    first.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        list(snn.run(torch.randn(5, 3, 8, 8), 40, chunk_size=8))
    assert calls == [5]  # once, on the 5 samples, not 40 x 5
    calls.clear()
    with torch.no_grad():
        list(snn.run(torch.rand(5, 3, 8, 8), 16, encoder=sc.Poisson(seed=1), chunk_size=8))
    assert calls == [40, 40]  # Poisson input changes every step: time folded into the batch


@pytest.mark.parametrize("method,overrides", [("rmp", {"calibration_steps": 4}), ("snm", {})])
def test_compiled_neuron_updates_give_the_same_spikes(method, overrides):
    torch.manual_seed(0)
    snn = sc.convert(Vgg().eval(), torch.randn(32, 3, 8, 8), method, **overrides)
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        eager = torch.cat(list(snn.run(x, 20, chunk_size=7)))
        with snn.compiled_neurons():
            fused = torch.cat(list(snn.run(x, 20, chunk_size=7)))
    assert torch.equal(eager, fused)
    # compiling is scoped to the block: afterwards the caller's model runs eagerly again
    assert all(n.fused_step is None for n in snn.neurons().values())
