"""SpikingModel: a converted network and the chunked time loop that runs it.

A chunk of K time steps is processed layer by layer: stateless layers (conv, linear, pooling,
folded batch norm, add, cat, upsample, ...) run once on the whole chunk with time folded into the
batch ([K*N, ...]); a neuron unfolds its input to [K, N, ...] and steps through it; neuron state
carries across chunks, so memory depends on K, never on T. With constant (direct) input the layers
before the first neuron are computed once per sample.
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..graph import ACTIVATION, FUNCTION, INPUT, LAYER, MAXPOOL, METHOD, OUTPUT, Program, map_refs
from ..graph.ops import SYNAPTIC_TYPES
from ..neurons import FusedStep, Negative, Reset, SpikingNeuron
from .encoding import Direct, Encoder
from .record import Recorder

_SIZE_NODES = {(METHOD, "size"), (METHOD, "dim"), (FUNCTION, "getattr")}


DEFAULT_CHUNK = 32  # steps per chunk of run() when no chunk_size is given


def check_count(value: Any, what: str, example: str) -> int:
    """`value` as an int >= 1 (anything with __index__: int, numpy or 0-dim integer tensors; never a
    bool), else ConfigError naming `what` and showing `example` of a right value."""
    try:
        n = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        n = None
    if n is None or n < 1:
        raise ConfigError(f"{what} must be an integer >= 1 (e.g. {example}), got {value!r}")
    return n


def check_steps(T: Any) -> int:
    """The number of time steps T as an int >= 1, else ConfigError."""
    return check_count(T, "the number of time steps T", "T=256")


class SpikingModel(nn.Module):
    """A converted SNN. `forward(x, T)` returns the mean output over T steps (the ANN's output shape).

    Attributes: `program` (nodes + layers, neurons at the former activations), `method` (a JSON-able
    description of how it was converted, for reports), `method_config` (methods.Method.config() of
    the method, None when unknown) and `default_T` (Fast-SNN: 2^b - 1), which may be None.
    """

    def __init__(self, program: Program, method: dict[str, Any] | None = None, default_T: int | None = None,
                 method_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.program = program
        self.method = dict(method or {})
        self.method_config = method_config
        self.default_T = default_T
        self._batch: dict[str, Any] | None = None  # the run in progress (input, static cache)
        self._fused: dict[tuple[Reset, Negative], FusedStep] = {}  # compiled steps, this model's own
        self._plan()

    def _plan(self) -> None:
        nodes = self.program.nodes
        self._stateful = {n.name for n in nodes if n.kind in (ACTIVATION, MAXPOOL)}
        static = {self.program.input_name}
        self._static_ok = True
        for n in nodes[1:]:
            if n.kind is OUTPUT or n.name in self._stateful:
                continue
            if all(r in static for r in n.refs()):
                static.add(n.name)
                if (n.kind, n.target) in _SIZE_NODES:
                    self._static_ok = False  # sizes of static values would be N, not K*N
        self._static_region = static
        last_use: dict[str, int] = {}
        for i, n in enumerate(nodes):
            for r in n.refs():
                last_use[r] = i
        self._last_use = last_use

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (its first parameter or buffer; CPU for none)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def neurons(self) -> dict[str, SpikingNeuron]:
        """Neuron modules by activation node name, in network order."""
        return {n.name: self.program.layers[n.target] for n in self.program.nodes if n.kind is ACTIVATION}

    @contextmanager
    def compiled_neurons(self, enabled: bool = True) -> Iterator["SpikingModel"]:
        """Inside the block every neuron's update runs as one torch.compile'd fused loop (about a
        second of compilation per neuron type on first use, then several times faster neuron
        updates; see benchmarks/results), or eagerly after one warning where compiling is not
        possible. On leaving it the neurons run eagerly again. The compiled steps are kept by this
        model (one per neuron type), so a later block reuses them; `enabled=False` is a block
        without them."""
        neurons = list(self.neurons().values())
        before = [n.fused_step for n in neurons]
        try:
            for n in neurons:
                key = (n.reset_mode, n.negative)
                if enabled and key not in self._fused:
                    self._fused[key] = FusedStep(*key)
                n.fused_step = self._fused[key] if enabled else None
            yield self
        finally:
            for n, step in zip(neurons, before):
                n.fused_step = step

    def reset(self) -> None:
        """Clear every neuron's (and spiking max pool's) state: the next call starts new samples."""
        for n in self.program.nodes:
            if n.name in self._stateful:
                self.program.layers[n.target].reset()

    def run(self, x: torch.Tensor, T: int, encoder: Encoder = Direct(), chunk_size: int | None = None,
            recorder: Recorder | None = None, generator: torch.Generator | None = None,
            stop_after: str | None = None, taps: dict[str, torch.Tensor | None] | None = None,
            given: Callable[[int, int], dict[str, torch.Tensor]] | None = None,
            given_names: frozenset[str] = frozenset(), capture: dict[str, list[torch.Tensor]] | None = None
            ) -> Iterator[torch.Tensor | None]:
        """Reset, then yield the output of each chunk of steps, [K, N, ...], until T steps have run.

        With `stop_after` a node name, each chunk stops after that node and yields None (used to
        calibrate a layer without running the layers after it). `taps` maps node names to running
        sums over time of their values ([N, ...], filled in place; start them at None).
        `given(t0, K)` supplies, for the nodes in `given_names`, their values in the chunk of steps
        t0+1..t0+K (time folded into the batch, [K*N, ...]): those nodes are not computed, and with
        `stop_after` only the nodes needed for it (and for `capture`) run. `capture` maps node names
        to lists that receive each chunk's value of the node ([K*N, ...])."""
        T = check_steps(T)
        if chunk_size is not None:
            chunk_size = check_count(chunk_size, "chunk_size (steps per chunk)", "chunk_size=32")
        needed = None
        if given is not None or capture is not None:
            roots = [stop_after or self.program.nodes[-1].name] + list(capture or ())
            needed = self.needed_for(roots, given_names)
        self.reset()
        if generator is None and hasattr(encoder, "seed"):  # a stochastic encoder: repeatable from its seed
            generator = torch.Generator(device=x.device).manual_seed(int(encoder.seed))
        K = chunk_size or min(T, DEFAULT_CHUNK)
        self._batch = {"x": x, "static": {}}
        t = 0
        while t < T:
            k = min(K, T - t)
            if len(self._batch["x"]) == 0:
                return
            yield self._run_chunk(self._batch["x"], t, k, encoder, self._batch["static"], recorder, generator,
                                  stop_after, taps=taps, needed=needed, given=None if given is None else given(t, k),
                                  capture=capture)
            t += k
        self._batch = None

    def needed_for(self, roots: list[str], given: frozenset[str] = frozenset()) -> set[str]:
        """Names of the nodes whose values `roots` depend on (roots included), not looking behind the
        nodes in `given` (whose values are supplied)."""
        by_name = {n.name: n for n in self.program.nodes}
        needed: set[str] = set()
        stack = list(roots)
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            if name not in given:
                stack.extend(by_name[name].refs())
        return needed

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the samples where `mask` [N] is False from a run in progress (between two chunks of
        `run`): their input, cached static values and neuron states go; the rest continue unchanged."""
        if getattr(self, "_batch", None) is None:
            raise ConfigError("keep() is only valid between the chunks of a run()")
        B = len(self._batch["x"])
        if mask.shape != (B,):
            raise ConfigError(f"keep() needs a boolean mask of shape ({B},), got {tuple(mask.shape)}")
        self._batch["x"] = self._batch["x"][mask]
        self._batch["static"] = {k: (v[mask] if isinstance(v, torch.Tensor) and v.dim() > 0 and len(v) == B else v)
                                 for k, v in self._batch["static"].items()}
        for n in self.program.nodes:
            if n.name in self._stateful:
                self.program.layers[n.target].keep(mask)

    def _run_chunk(self, x: torch.Tensor, t0: int, K: int, encoder: Encoder, static_cache: dict[str, Any],
                   recorder: Recorder | None, generator: torch.Generator | None,
                   stop_after: str | None = None, measure: dict[str, tuple[int, bool]] | None = None,
                   taps: dict[str, torch.Tensor | None] | None = None, needed: set[str] | None = None,
                   given: dict[str, torch.Tensor] | None = None,
                   capture: dict[str, list[torch.Tensor]] | None = None) -> torch.Tensor | None:
        B = x.shape[0]
        if recorder is not None:
            recorder.t0 = t0
        use_static = encoder.static and self._static_ok
        env: dict[str, Any] = {}
        is_static: set[str] = set()

        def folded(name: str) -> Any:
            v = env[name]
            if name in is_static and isinstance(v, torch.Tensor):
                return v.unsqueeze(0).expand(K, *v.shape).reshape(K * B, *v.shape[1:])
            return v

        for i, node in enumerate(self.program.nodes):
            if needed is not None and node.name not in needed:
                continue
            if given is not None and node.name in given:
                env[node.name] = given[node.name]
            elif node.kind is INPUT:
                if use_static:
                    env[node.name] = x
                    is_static.add(node.name)
                else:
                    seq = encoder.encode(x, t0, K, generator)
                    if seq.dim() == x.dim():  # a static encoder on a graph that cannot use it
                        seq = x.unsqueeze(0).expand(K, *x.shape)
                    env[node.name] = seq.reshape(K * B, *x.shape[1:])
            elif node.kind is OUTPUT:
                out = folded(node.args[0].name)
                return out.reshape(K, B, *out.shape[1:])
            elif node.name in self._stateful:
                src = node.args[0].name
                layer = self.program.layers[node.target]
                if src in is_static and node.kind is MAXPOOL:
                    env[node.name] = static_cache.setdefault(node.name, layer.static_forward(env[src]))
                    is_static.add(node.name)
                else:
                    z = env[src]
                    zk = z.unsqueeze(0).expand(K, *z.shape) if src in is_static else z.view(K, B, *z.shape[1:])
                    out = layer(zk)
                    if recorder is not None and node.kind is ACTIVATION:
                        unsigned = getattr(layer, "negative", None) is Negative.NONE
                        recorder.count_spikes(node.name, out, layer.threshold if unsigned else None)
                    env[node.name] = out.reshape(K * B, *out.shape[2:])
            elif use_static and node.name in self._static_region:
                if node.name not in static_cache:
                    args = map_refs(node.args, lambda r: env[r.name])
                    kwargs = map_refs(node.kwargs, lambda r: env[r.name])
                    static_cache[node.name] = self.program.call(node, args, kwargs)
                    if recorder is not None:
                        self._record_synapses(node, args[0], K, True, recorder)
                env[node.name] = static_cache[node.name]
                is_static.add(node.name)
            else:
                args = map_refs(node.args, lambda r: folded(r.name))
                kwargs = map_refs(node.kwargs, lambda r: folded(r.name))
                if recorder is not None:
                    analog = node.kind is LAYER and (
                        node.args[0].name in is_static or (encoder.static and node.name in self._static_region))
                    self._record_synapses(node, args[0] if args else None, K, analog, recorder)
                env[node.name] = self.program.call(node, args, kwargs)
            if taps is not None and node.name in taps:
                v = env[node.name]
                s = v * K if node.name in is_static else v.view(K, B, *v.shape[1:]).sum(0)
                taps[node.name] = s if taps[node.name] is None else taps[node.name] + s
            if capture is not None and node.name in capture:
                capture[node.name].append(folded(node.name))
            if measure is not None and isinstance(env.get(node.name), torch.Tensor):
                measure[node.name] = (env[node.name].numel() * env[node.name].element_size(), node.name in is_static)
            if node.name == stop_after:
                return None
            for r in node.refs():  # free values after their last use (static ones stay cached)
                if self._last_use.get(r) == i and r not in is_static:
                    env.pop(r, None)
        raise ConfigError("the program has no output node")

    def mean_values(self, x: torch.Tensor, T: int, names: list[str], encoder: Encoder = Direct(),
                    chunk_size: int | None = None) -> dict[str, torch.Tensor]:
        """Time averages over T steps of the named nodes' values (e.g. neuron firing rates x theta)."""
        taps: dict[str, torch.Tensor | None] = {n: None for n in names}
        for _ in self.run(x, T, encoder, chunk_size, taps=taps):
            pass
        return {k: v / T for k, v in taps.items() if v is not None}

    def step_bytes(self, x: torch.Tensor, encoder: Encoder = Direct()) -> int:
        """Bytes of all values one time step of batch x produces (an upper bound on live memory)."""
        sizes: dict[str, tuple[int, bool]] = {}
        self.reset()
        with torch.no_grad():
            self._run_chunk(x, 0, 1, encoder, {}, None, None, None, sizes)
        self.reset()
        return sum(b for b, _ in sizes.values())

    def peak_alive(self, sizes: dict[str, tuple[int, bool]]) -> int:
        """The most bytes of per-step values alive at once, given each node's (bytes, static) for one
        step (_run_chunk's `measure`): a value lives from its node to its last use, as run() frees it;
        a static value read by a stateless per-step node is copied out to every step there."""
        nodes = self.program.nodes
        dynamic = {n.name: (j, sizes[n.name][0]) for j, n in enumerate(nodes)
                   if n.name in sizes and not sizes[n.name][1]}
        peak = 0
        for i, node in enumerate(nodes):
            alive = sum(b for name, (j, b) in dynamic.items() if j <= i <= self._last_use.get(name, j))
            if node.name in dynamic and node.name not in self._stateful:
                alive += sum(sizes[r][0] for r in set(node.refs()) if r in sizes and sizes[r][1])
            peak = max(peak, alive)
        return peak

    def state_bytes(self) -> int:
        """Bytes of the tensors the neurons and spiking max pools hold between chunks right now (their
        state and step workspaces; 0 after reset())."""
        seen: dict[int, int] = {}
        for n in self.program.nodes:
            if n.name in self._stateful:
                layer = self.program.layers[n.target]
                held = [b for k, b in layer._buffers.items() if k in layer._non_persistent_buffers_set]
                held += [t for v in vars(layer).values() if not isinstance(v, (nn.Module, dict))
                         for t in (vars(v).values() if hasattr(v, "__dict__") else [v])]
                for t in held:
                    if isinstance(t, torch.Tensor):
                        storage = t.untyped_storage()
                        seen[storage.data_ptr()] = storage.nbytes()
        return sum(seen.values())

    def _record_synapses(self, node, x: Any, K: int, analog: bool, recorder: Recorder) -> None:
        """Count a conv/linear layer's work: MACs per image if its input is the constant analog
        signal, else the synaptic operations its nonzero (spike) inputs trigger at each step."""
        if node.kind is not LAYER or not isinstance(self.program.layers[node.target], SYNAPTIC_TYPES):
            return
        layer = self.program.layers[node.target]
        if analog:
            recorder.count_static(node.name, layer, x)
        else:
            recorder.count_synops(node.name, layer, x, K)

    def forward(self, x: torch.Tensor, T: int | None = None, encoder: Encoder = Direct(),
                chunk_size: int | None = None) -> torch.Tensor:
        """Mean output over T steps (T defaults to `default_T`). x: [N, ...] analog input."""
        if T is None:
            if self.default_T is None:
                raise ConfigError("T is required: this model has no default number of time steps")
            T = self.default_T
        total = None
        for out in self.run(x, T, encoder, chunk_size):
            s = out.sum(0)
            total = s if total is None else total + s
        return total / T
