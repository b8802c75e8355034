"""convert(): ANN (or quantized ANN) + calibration data -> SpikingModel."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..batches import iter_batches
from ..calibration.calibrate import Calibration, calibrate, run_checked
from ..calibration.granularity import Granularity
from ..calibration.observers import MaxObserver
from ..calibration.rules import LayerInputMax, LearnedClip
from ..errors import CalibrationError
from ..methods import Method, make_neuron, resolve_method
from ..simulation.engine import SpikingModel
from ..simulation.pooling import SpikingMaxPool
from .graph import MAXPOOL, Program, trace


def convert(model: nn.Module, calibration_data: Any = None, method: str | Method = "rmp", *,
            leaf_modules: tuple[type[nn.Module], ...] = (), batch_size: int = 256, progress: bool = False,
            **overrides: Any) -> SpikingModel:
    """Convert a ReLU network into a spiking one; the input model is not modified.

    method: "baseline" | "rmp" | "snm" | "fastsnn" (a preset), overridable field by field:
    neuron=, threshold= (rule name, rule object or a number), percentile=, granularity=,
    scale=, v_init=, calibration_steps= (rmp). calibration_data: a tensor [N, ...], (x, y), a
    Dataset or a DataLoader; not needed for fastsnn (thresholds are learned) or a fixed threshold.
    Every ReLU becomes a neuron; the last layer does not spike (it accumulates); max pooling
    becomes spike-gated max pooling; dropout and identity are removed; batch norm is folded.
    """
    m = resolve_method(method, **overrides)
    program = trace(model, leaf_modules)
    needs_data = not isinstance(m.rule, LearnedClip) and type(m.rule).__name__ != "Fixed"
    if needs_data and calibration_data is None:
        raise CalibrationError(f"method {m.name!r} with rule '{m.rule.describe()}' needs calibration_data "
                               "(a tensor of inputs, a Dataset or a DataLoader)")
    default_T = _quantized_steps(program) if isinstance(m.rule, LearnedClip) else None
    if isinstance(m.rule, LayerInputMax):
        # calibrate() checks the data against the model itself; the spiking pass below does not
        x0, _ = next(iter_batches(calibration_data, batch_size, "calibration data"))
        with torch.no_grad():
            run_checked(program, x0)
        placeholder = Calibration({n.name: torch.tensor(1.0) for n in program.activation_nodes()},
                                  m.rule.describe(), m.granularity.value, m.scale, 0)
        snn = _build(program, placeholder, m, default_T)
        calib = _layer_input_max(snn, calibration_data, m, batch_size, progress)
    else:
        calib = calibrate(program, calibration_data, m.rule, m.granularity, m.scale, batch_size)
        snn = _build(program, calib, m, default_T)
    snn.method.update(calibration_samples=calib.samples)
    for p in snn.parameters():  # an inference artefact: no autograd graph through T steps
        p.requires_grad_(False)
    return snn.eval()


def _quantized_steps(program: Program) -> int | None:
    bits = [getattr(program.layers[n.target], "bits", None) for n in program.activation_nodes()]
    bits = [b for b in bits if b is not None]
    return (2 ** max(bits) - 1) if bits else None


def _build(program: Program, calib: Calibration, m: Method, default_T: int | None) -> SpikingModel:
    """Replace activations by neurons (thresholds from `calib`) and max pools by spike-gated pools."""
    for node in program.activation_nodes():
        program.layers[node.target] = make_neuron(m.neuron, calib.thresholds[node.name], m.v_init)
    for node in program.nodes:
        if node.kind == MAXPOOL and not isinstance(program.layers[node.target], SpikingMaxPool):
            program.layers[node.target] = SpikingMaxPool(program.layers[node.target])
    return SpikingModel(program, m.to_dict(), default_T)


class _InputMaxProbe(nn.Module):
    """Stands in for a neuron while its threshold is measured: records max of its input, emits nothing."""

    def __init__(self, granularity: Granularity, name: str) -> None:
        super().__init__()
        self.observer = MaxObserver(granularity)
        self.name = name

    def reset(self) -> None:
        pass

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.observer.update(z.reshape(-1, *z.shape[2:]), self.name)
        return torch.zeros_like(z)


def _layer_input_max(snn: SpikingModel, data: Any, m: Method, batch_size: int, progress: bool) -> Calibration:
    """RMP / Spike-Norm threshold balancing: neuron layers in network order; layer l's threshold is the
    maximum of its per-step input z_l(t) with layers < l spiking at their final thresholds."""
    steps = m.rule.steps  # type: ignore[union-attr]
    thresholds: dict[str, torch.Tensor] = {}
    samples = 0
    nodes = [n for n in snn.program.activation_nodes()]
    for node in tqdm(nodes, desc="threshold balancing", disable=not progress):
        neuron = snn.program.layers[node.target]
        probe = _InputMaxProbe(m.granularity, node.name)
        snn.program.layers[node.target] = probe
        samples = 0
        with torch.no_grad():
            for x, _ in iter_batches(data, batch_size, "calibration data"):
                for _ in snn.run(x, steps, stop_after=node.name):
                    pass
                samples += len(x)
        raw = probe.observer.compute()
        top = raw.max()
        thr = torch.where(raw > 0, raw, top) if top > 0 else torch.ones_like(raw)
        thresholds[node.name] = thr * m.scale
        neuron.threshold = thresholds[node.name].clone()
        snn.program.layers[node.target] = neuron
    return Calibration(thresholds, m.rule.describe(), m.granularity.value, m.scale, samples)
