"""Threshold rules: what statistic of the calibration data a layer's threshold comes from.

Each rule is a type with a registry name (RULES), `describe()` for reports, `config()` /
`rule_from_config()` for saving, and `thresholds(job)`: the final (floored, scaled) threshold of
every activation. Adding a rule is a new class registered here; nothing dispatches on rule types.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch

from ..batches import iter_batches
from ..errors import CalibrationError, ConfigError
from ..graph import Program
from ..registry import Registry
from ..schema import Doc, as_doc, type_hints
from .balancing import DEFAULT_CACHE_MB, balance_thresholds
from .datafree import datafree_thresholds
from .granularity import Granularity
from .observers import HistogramObserver, default_bins
from .search import search_thresholds
from .statistics import activation_statistics, floor_dead, run_checked

if TYPE_CHECKING:
    from ..simulation import SpikingModel


@dataclass(frozen=True)
class CalibrationJob:
    """What a rule may use: the traced ANN, the data, how thresholds are shared and scaled, and (for
    rules measured on the spiking network) `build_spiking(thresholds)`, which returns the SNN built
    from `program` with the given thresholds."""

    program: Program
    data: Any
    granularity: Granularity
    scale: float
    batch_size: int = 256
    build_spiking: "Callable[[dict[str, torch.Tensor]], SpikingModel] | None" = None
    progress: bool = False


class ThresholdRule(ABC):
    """Base of the threshold rules (frozen dataclasses)."""

    name: ClassVar[str]
    needs_data: ClassVar[bool] = True  # False: thresholds come from the model alone

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable description (recorded in the converted model's method)."""

    @abstractmethod
    def thresholds(self, job: CalibrationJob) -> tuple[dict[str, torch.Tensor], int]:
        """({activation node name: threshold, scaled and > 0}, calibration samples used)."""

    def default_steps(self, program: Program) -> int | None:
        """The number of time steps the thresholds are made for, if the rule implies one."""
        return None

    def config(self) -> dict[str, Any]:
        """{"rule": registry name, **fields}; rule_from_config() rebuilds the rule."""
        return {"rule": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]


RULES: Registry[type[ThresholdRule]] = Registry("threshold rule")


def _registered(cls: type[ThresholdRule]) -> type[ThresholdRule]:
    return RULES.add(cls.name, cls)


def _from_statistics(job: CalibrationJob, percentile: float | None) -> tuple[dict[str, torch.Tensor], int]:
    stats, samples = activation_statistics(job.program, job.data, job.granularity, percentile, job.batch_size)
    return {k: floor_dead(v) * job.scale for k, v in stats.items()}, samples


@_registered
@dataclass(frozen=True)
class Max(ThresholdRule):
    """theta = maximum of the ANN activation a_l over the calibration data (Diehl 2015; SNM per neuron)."""

    name: ClassVar[str] = "max"

    def describe(self) -> str:
        return "max"

    def thresholds(self, job: CalibrationJob) -> tuple[dict[str, torch.Tensor], int]:
        return _from_statistics(job, None)


@_registered
@dataclass(frozen=True)
class Percentile(ThresholdRule):
    """theta = q-th percentile of the positive ANN activations (Rueckauer 2017), from a fixed-bin histogram."""

    q: float
    name: ClassVar[str] = "percentile"

    def __post_init__(self) -> None:
        if not (0.0 < self.q <= 100.0):
            raise ConfigError(f"percentile must be in (0, 100], got {self.q}")

    def describe(self) -> str:
        return f"percentile {self.q:g}"

    def thresholds(self, job: CalibrationJob) -> tuple[dict[str, torch.Tensor], int]:
        return _from_statistics(job, self.q)


@_registered
@dataclass(frozen=True)
class LayerInputMax(ThresholdRule):
    """RMP-SNN threshold balancing (Spike-Norm style): layer by layer, with every earlier layer
    already converted and spiking, theta_l = maximum over images and `steps` time steps of the
    weighted input z_l(t) the layer's neurons receive (V_in^max). `cache_mb` bounds the memory for
    the recorded spikes that let each layer's pass start where the previous one ended (0: every
    pass re-runs the network from the input; same thresholds, more time; see balancing.py)."""

    steps: int = 32
    cache_mb: float = DEFAULT_CACHE_MB
    name: ClassVar[str] = "layer_input_max"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"LayerInputMax needs steps >= 1 (an int), got {self.steps!r}")
        if not self.cache_mb >= 0:
            raise ConfigError(f"LayerInputMax needs cache_mb >= 0, got {self.cache_mb}")

    def describe(self) -> str:
        return f"layer input max over {self.steps} steps (layer by layer)"

    def thresholds(self, job: CalibrationJob) -> tuple[dict[str, torch.Tensor], int]:
        if job.build_spiking is None:
            raise ConfigError("the layer_input_max rule measures the spiking network layer by layer: "
                              "use snnconvert.convert(model, data, method='rmp')")
        # the data is checked against the ANN first: the spiking pass would fail less readably
        x0, _ = next(iter_batches(job.data, job.batch_size, "calibration data"))
        with torch.no_grad():
            run_checked(job.program, x0)
        snn = job.build_spiking({n.name: torch.tensor(1.0) for n in job.program.activation_nodes()})
        return balance_thresholds(snn, job.data, self.steps, job.granularity, job.scale, job.batch_size,
                                  job.progress, self.cache_mb)


@_registered
@dataclass(frozen=True)
class ErrorMinimising(ThresholdRule):
    """theta minimises the expected squared error between the ANN activation and its clipped, T-level
    quantised rate at `steps` time steps with V(0) = v_init * theta (Li et al. 2021's threshold search;
    see search.py). Made for soft-reset neurons run for about `steps` steps."""

    steps: int = 16
    v_init: float = 0.5
    name: ClassVar[str] = "error_min"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"the error-minimising threshold search needs a target T >= 1 (an int), got {self.steps!r}")
        if not 0.0 <= self.v_init <= 1.0:
            raise ConfigError(f"v_init must be in [0, 1] for the threshold search, got {self.v_init}")

    def describe(self) -> str:
        return f"error-minimising search for T={self.steps}, V(0)={self.v_init:g} theta"

    def default_steps(self, program: Program) -> int | None:
        return self.steps

    def thresholds(self, job: CalibrationJob) -> tuple[dict[str, torch.Tensor], int]:
        maxima, samples = activation_statistics(job.program, job.data, job.granularity, None, job.batch_size)
        names = list(maxima)
        hists = {k: HistogramObserver(job.granularity, maxima[k], default_bins(maxima[k].numel())) for k in names}
        with torch.no_grad():
            for x, _ in iter_batches(job.data, job.batch_size, "calibration data"):
                _, cap = run_checked(job.program, x, names)
                for k in names:
                    hists[k].update(cap[k])
        return {k: floor_dead(search_thresholds(hists[k], self.steps, self.v_init)) * job.scale for k in names}, samples


@_registered
@dataclass(frozen=True)
class BatchNormStatistics(ThresholdRule):
    """Data-free: theta = mean + k std per channel of each activation's input, known from the batch
    norm before it (datafree.py); the layer granularity takes the largest channel's."""

    k: float = 3.0
    name: ClassVar[str] = "bn_stats"
    needs_data: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.k > 0:
            raise ConfigError(f"bn_stats needs k > 0 (thresholds at mean + k std), got {self.k}")

    def describe(self) -> str:
        return f"data-free: batch-norm mean + {self.k:g} std"

    def thresholds(self, job: CalibrationJob) -> tuple[dict[str, torch.Tensor], int]:
        raw = datafree_thresholds(job.program, self.k)
        if job.granularity is Granularity.LAYER:
            raw = {n: t.max() for n, t in raw.items()}
        return {n: floor_dead(t) * job.scale for n, t in raw.items()}, 0


@_registered
@dataclass(frozen=True)
class LearnedClip(ThresholdRule):
    """theta = the learned clipping value alpha of each QuantReLU (Fast-SNN)."""

    name: ClassVar[str] = "learned"
    needs_data: ClassVar[bool] = False

    def describe(self) -> str:
        return "learned clip alpha"

    def default_steps(self, program: Program) -> int | None:
        """T = 2^b - 1 for b-bit quantized activations (the largest b), None for a float model."""
        bits = [getattr(program.layers[n.target], "bits", None) for n in program.activation_nodes()]
        bits = [b for b in bits if b is not None]
        return (2 ** max(bits) - 1) if bits else None

    def thresholds(self, job: CalibrationJob) -> tuple[dict[str, torch.Tensor], int]:
        out = {}
        for n in job.program.activation_nodes():
            alpha = getattr(job.program.layers[n.target], "alpha", None)
            if alpha is None:
                raise CalibrationError(
                    f"activation '{n.name}' is a plain ReLU: the learned-clip rule needs a quantized ANN "
                    "(snnconvert.quantize(model, bits)) whose activations are QuantReLU")
            out[n.name] = alpha.detach().clone().float().abs().clamp_min(1e-4) * job.scale
        return out, 0


@_registered
@dataclass(frozen=True)
class Fixed(ThresholdRule):
    """theta = a given value for every layer."""

    value: float
    name: ClassVar[str] = "fixed"
    needs_data: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.value > 0:
            raise ConfigError(f"a fixed threshold must be > 0, got {self.value}")

    def describe(self) -> str:
        return f"fixed {self.value:g}"

    def thresholds(self, job: CalibrationJob) -> tuple[dict[str, torch.Tensor], int]:
        return {n.name: torch.tensor(self.value) * job.scale for n in job.program.activation_nodes()}, 0


def resolve_rule(value: object, percentile: float | None = None) -> ThresholdRule:
    """A rule object, a rule name (percentile= sets the q of "percentile", default 99.9), or a number
    (a fixed threshold)."""
    if isinstance(value, ThresholdRule):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Fixed(float(value))
    if isinstance(value, str) and value in RULES:
        cls = RULES.get(value)
        if cls is Percentile:
            return Percentile(99.9 if percentile is None else percentile)
        try:
            return cls()
        except TypeError:
            raise ConfigError(f"threshold rule {value!r} needs a value: pass a number instead") from None
    names = RULES.names()
    raise ConfigError(f"unknown threshold rule {value!r}; use one of {names}, a number, "
                      "or a rule object (Max(), Percentile(99.9), LayerInputMax(steps), LearnedClip(), Fixed(v))")


def rule_from_config(config: Mapping[str, Any] | Doc) -> ThresholdRule:
    """Rebuild a rule from `ThresholdRule.config()` (or a schema.Doc of it, so that messages name its file
    and key path); CheckpointError naming the malformed key and what it should be."""
    doc = as_doc(config, "bad threshold rule description")
    name = doc["rule"]
    try:
        cls = RULES.get(name.as_str())
    except ConfigError as e:
        raise name.error(str(e)) from None
    params = [f for f in dataclasses.fields(cls) if f.init]
    doc.check_keys(["rule", *(f.name for f in params)])
    hints = type_hints(cls)
    values = {f.name: doc[f.name].as_type(hints.get(f.name, Any)) for f in params
              if not doc[f.name].missing or (f.default is dataclasses.MISSING
                                             and f.default_factory is dataclasses.MISSING)}
    try:
        return cls(**values)
    except (ConfigError, TypeError, ValueError) as e:
        raise doc.error(f"cannot build the {cls.name!r} rule: {e}") from None
