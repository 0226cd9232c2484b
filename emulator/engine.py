"""Exact, depth-first, event-driven engine of Speck's spiking-convolution cores.

The model, once (states and weights are integers; times in µs):

* An input ``(c, y, x)`` to a core updates every output neuron ``(f, oy, ox)`` whose window
  covers it, ``oy·s − p ≤ y < oy·s − p + k`` (same for x), in ``(oy, ox, f)`` order::

      v ← max(sat16(v + W[f, c, y − (oy·s − p), x − (ox·s − p)]), threshold_low)
      if v >= threshold_high:  v ← v − threshold_high  (or 0),  clamped again;  one spike

* Each spike, where it fires: a monitor row (``layer`` = the core layer's index, position before
  pooling), then the core's decimator, then destination 0, then destination 1: position
  ``(oy >> log2 p, ox >> log2 p)``, channel ``f + feature_shift``; a readout destination emits a row
  (``layer = READOUT_ADDRESS``) at once, a core destination queues an input to that core.
* Depth-first: every input event is fully propagated before the next one. After one input update,
  its queued core inputs are processed in the order they were queued (firing order, then
  destination order), each fully — with all its descendants — before the next (:data:`SPIKE_ORDER`).
* Slow clock: tick ``k = 1, 2, …`` happens at ``k · 1e6 / slow_clock_hz`` µs, before any input with
  ``t ≥`` that time. With ``leak``, a tick does ``v ← max(sat16(v + bias[f]), threshold_low)``
  on every neuron and never fires (:data:`LEAK_TICK_FIRES`).

Outputs: one ``SPIKE_DTYPE`` array in emission order holding both every core spike (monitor rows,
unless ``EngineParams.monitor`` is off) and every spike routed to the readout (after pooling and
shift). Every output carries the ``t`` of the input event that caused it (latency is another
module's job).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from emulator.config import READOUT, READOUT_ADDRESS, STATE_MIN, ChipConfig
from emulator.engine_kernel import (
    C_DROPPED,
    C_ROUTED,
    C_SPIKES,
    C_SYNOPS,
    C_UPDATES,
    DEST_CORE,
    DEST_NONE,
    DEST_READOUT,
    N_COUNTERS,
    run_events,
)
from emulator.slow_clock import ticks
from proto.events import SPIKE_DTYPE, Spikes

# --- the choices the documents leave open (speck-hardware.md §8) ---------------------------
SPIKE_RULE: Final = ">="
"""A neuron fires when ``v >= threshold_high`` (sinabs' rule; the datasheet's "exceeds" is untested)."""
ONE_SPIKE_PER_UPDATE: Final = True
"""At most one spike per update, even above 2θ: the remainder waits for the next input."""
ZERO_WEIGHT_UPDATES: Final = True
"""A covered neuron whose weight is 0 is still updated: read, clamped, may fire; counts as a synop."""
CLAMP_AFTER_RESET: Final = True
"""The threshold_low (and int16) clamp applies to every state write, the reset included."""
STATE_SATURATES: Final = True
"""States saturate at int16 ``[STATE_MIN, STATE_MAX]`` instead of wrapping."""
BELOW_LOW_INITIAL: Final = "kept until the neuron's next update"
"""A state initialised below threshold_low stays there until an update (input or leak) clamps it."""
SPIKE_ORDER: Final = "(oy, ox, f); monitor and readout rows at firing, routed inputs after the update"
"""One input update fires (and emits) its spikes by row, column, then channel (the kernel's
channel-last loop); the core inputs they route to are then run depth-first in that order. For a
DAG the states equal those of propagating each spike at once; only the output order differs."""
DESTINATION_ORDER: Final = (0, 1)
"""Destination 0 is served before destination 1 (its readout row first; its core input's subtree first)."""
DROP_OUT_OF_RANGE: Final = True
"""A routed spike outside its target core's input (pooling remainder, channel) is dropped and counted."""
DECIMATOR_PHASE: Final = "the N-th, 2N-th, … spike passes; the counter starts at 0"
"""Decimator: a per-layer counter of output spikes; spike number N passes and resets it."""
MONITOR_BEFORE_DECIMATOR: Final = True
"""Core output spikes are emitted (as the monitor sees them) before the decimator and pooling."""
LEAK_TICK_FIRES: Final = False
"""A leak tick only charges; a neuron pushed over threshold by the leak fires at its next input update."""
LEAK_TOUCHES_ZERO_BIAS: Final = True
"""A tick updates every neuron of a leaking layer, bias 0 included (it clamps states below threshold_low)."""
TICK_ORDER: Final = "layer index"
"""Cores tick in layer-index order (irrelevant to the result, since ticks never fire)."""
ACYCLIC_ONLY: Final = True
"""Destinations form a DAG (``ChipConfig`` refuses loops), so depth-first propagation always ends."""


_run_events: Callable[..., tuple[int, int, int, int]] = run_events  # the numba dispatcher, typed for mypy

MAX_OUTPUTS_PER_INPUT: Final = 1 << 22
"""Output rows reserved per input event when the net's own bound is larger: beyond it, ``step``
raises ``ValueError`` (the given state is untouched). Only huge, dense multi-layer nets reach it."""


_SPARE_ROWS: Final = 1 << 24
"""Output rows reserved beyond one per input (at most OUT_ROWS_PER_INPUT per input): reserved, never written, costs nothing."""
OUT_ROWS_PER_INPUT: Final = 16
"""Output rows reserved per input at first (pages never written cost nothing): a Speck-sized net
emits ~5 rows per input, and with 3 a third of the small (1 ms) batches needed a second kernel call."""


class EngineParams(NamedTuple):
    """A :class:`ChipConfig`'s core layers flattened into numba-friendly arrays (built once).

    Per layer ``L``: ``shape_in[L] = (c, h, w)``, ``shape_out[L] = (f, oh, ow)``, ``ksp[L] = (k, log2 s, p)``;
    channel-last: weights ``[c, ky, kx, f]`` with ``kx`` reversed (so that, with stride 1, one output
    row's neurons and their weights are two contiguous runs) flattened at ``weights[w_off[L]:]``, states
    ``[oy, ox, f]`` at ``v_off[L]``; biases at ``bias_off[L]``; destinations ``dest_kind[L, d]`` (DEST_*) and
    ``dest[L, d] = (target layer, log2 pooling, feature_shift)`` (strides and poolings are powers of
    two: the kernel divides by shifting).
    """

    shape_in: npt.NDArray[np.int64]
    shape_out: npt.NDArray[np.int64]
    ksp: npt.NDArray[np.int64]
    weights: npt.NDArray[np.int8]
    w_off: npt.NDArray[np.int64]
    v_off: npt.NDArray[np.int64]
    v0: npt.NDArray[np.int16]
    th_high: npt.NDArray[np.int64]
    th_low: npt.NDArray[np.int64]
    reset_zero: npt.NDArray[np.bool_]
    leak: npt.NDArray[np.bool_]
    bias: npt.NDArray[np.int64]
    bias_off: npt.NDArray[np.int64]
    decim_n: npt.NDArray[np.int64]
    dest_kind: npt.NDArray[np.int64]
    dest: npt.NDArray[np.int64]
    slow_clock_hz: float
    max_outputs_per_input: int = 0
    """:func:`outputs_per_input` of these params, computed once by :func:`build_params` (0: compute it)."""
    monitor: bool = True
    """Emit a monitor row for every core spike. ``False``: only the readout rows; the counts still count
    every spike (the chip service forwards no more, and most rows are monitor rows)."""


class EngineState(NamedTuple):
    """Membranes (flat int16, channel-last; see :func:`layer_state`), decimator counters, last tick index."""

    v: npt.NDArray[np.int16]
    decimator: npt.NDArray[np.int64]
    ticks: int


class EngineCounts(NamedTuple):
    """Counts of one :func:`step`, per core layer (int64 arrays), for the power model.

    ``synops``: neuron updates by an input (zero weights included); ``neuron_updates``: synops plus
    leak-tick updates; ``spikes``: core output spikes; ``routed``: spikes sent to a destination
    (after the decimator, one per destination, dropped ones included); ``dropped``: routed spikes
    outside their target's input; ``dropped_inputs``: input events outside their core's input.
    """

    synops: npt.NDArray[np.int64]
    neuron_updates: npt.NDArray[np.int64]
    spikes: npt.NDArray[np.int64]
    routed: npt.NDArray[np.int64]
    dropped: npt.NDArray[np.int64]
    dropped_inputs: int


def build_params(config: ChipConfig) -> EngineParams:
    """Flatten the config's core layers into :class:`EngineParams`."""
    layers = config.layers
    n = len(layers)
    shape_out = np.array([layer.output_shape for layer in layers], np.int64).reshape(n, 3)
    sizes = shape_out.prod(axis=1)
    dest_kind = np.full((n, 2), DEST_NONE, np.int64)
    dest = np.zeros((n, 2, 3), np.int64)
    for i, layer in enumerate(layers):
        for d, route in enumerate(layer.destinations):
            dest_kind[i, d] = DEST_READOUT if route.layer == READOUT else DEST_CORE
            target = READOUT_ADDRESS if route.layer == READOUT else int(route.layer)
            dest[i, d] = (target, _log2(route.pooling), route.feature_shift)
    zeros16 = [np.zeros(int(s), np.int16) for s in sizes]
    params = EngineParams(
        shape_in=np.array([layer.input_shape for layer in layers], np.int64).reshape(n, 3),
        shape_out=shape_out,
        ksp=np.array([(layer.kernel, _log2(layer.stride), layer.padding) for layer in layers], np.int64).reshape(n, 3),
        weights=np.concatenate(
            [np.asarray(layer.weights, np.int8).transpose(1, 2, 3, 0)[:, :, ::-1, :].ravel() for layer in layers]
            + [np.zeros(0, np.int8)]
        ),
        w_off=_offsets([layer.weights.size for layer in layers]),
        v_off=_offsets(list(sizes)),
        v0=np.concatenate(
            [
                z
                if layer.initial_state is None
                else np.asarray(layer.initial_state, np.int16).transpose(1, 2, 0).ravel()
                for z, layer in zip(zeros16, layers)
            ]
            + [np.zeros(0, np.int16)]
        ),
        th_high=np.array([layer.threshold_high for layer in layers], np.int64),
        th_low=np.array([max(layer.threshold_low, STATE_MIN) for layer in layers], np.int64),
        reset_zero=np.array([layer.reset == "zero" for layer in layers], np.bool_),
        leak=np.array([layer.leak for layer in layers], np.bool_),
        bias=np.concatenate(
            [
                np.zeros(layer.out_channels, np.int64) if layer.bias is None else np.asarray(layer.bias, np.int64)
                for layer in layers
            ]
            + [np.zeros(0, np.int64)]
        ),
        bias_off=_offsets([layer.out_channels for layer in layers]),
        decim_n=np.array([1 if layer.decimator is None else layer.decimator for layer in layers], np.int64),
        dest_kind=dest_kind,
        dest=dest,
        slow_clock_hz=float(config.slow_clock_hz),
    )
    return params._replace(max_outputs_per_input=outputs_per_input(params))


def _log2(power: int) -> int:
    """``log2`` of a stride or pooling (1, 2, 4, 8; ``ChipConfig`` refuses others)."""
    if power < 1 or power & (power - 1):
        raise ValueError(f"{power} is not a power of two")
    return power.bit_length() - 1


def _offsets(sizes: list[int]) -> npt.NDArray[np.int64]:
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)[:-1]]).astype(np.int64)


def tick_index(t: npt.NDArray[np.uint64] | int, slow_clock_hz: float) -> npt.NDArray[np.int64]:
    """Index of the last slow-clock tick at or before ``t`` µs (see :mod:`emulator.slow_clock`)."""
    return ticks(t, slow_clock_hz)


def init_state(params: EngineParams, t0: int = 0) -> EngineState:
    """The configured initial membranes, decimator counters at 0, ticks up to ``t0`` µs done."""
    return EngineState(
        v=params.v0.copy(),
        decimator=np.zeros(params.shape_in.shape[0], np.int64),
        ticks=int(tick_index(t0, params.slow_clock_hz)),
    )


def layer_state(state: EngineState, params: EngineParams, layer: int) -> npt.NDArray[np.int16]:
    """The membranes of one core layer as an ``[f, oh, ow]`` view of ``state.v`` (stored ``[oy, ox, f]``)."""
    f, oh, ow = (int(d) for d in params.shape_out[layer])
    start = int(params.v_off[layer])
    return state.v[start : start + f * oh * ow].reshape(oh, ow, f).transpose(2, 0, 1)


def outputs_per_input(params: EngineParams) -> int:
    """An upper bound on the output rows one input event can cause (capped at MAX_OUTPUTS_PER_INPUT).

    ``spikes[L] ≤ inputs[L] · fired[L]`` with ``inputs[L] = 1 + Σ spikes[S]`` over the layers S routing
    to L; relaxed ``n`` times (the destinations form a DAG); each spike is one monitor row plus one
    row per readout destination.
    """
    n = params.shape_in.shape[0]
    k, shift = params.ksp[:, 0], params.ksp[:, 1]
    fired = [int(f) for f in params.shape_out[:, 0] * ((k >> shift) + 1) ** 2]
    spikes = [0] * n
    for _ in range(n):
        inputs = [1] * n
        for src in range(n):
            for d in range(2):
                if params.dest_kind[src, d] == DEST_CORE:
                    inputs[int(params.dest[src, d, 0])] += spikes[src]
        spikes = [min(inputs[i] * fired[i], MAX_OUTPUTS_PER_INPUT) for i in range(n)]
    rows = sum(spikes[i] * (1 + int(np.sum(params.dest_kind[i] == DEST_READOUT))) for i in range(n))
    return min(rows, MAX_OUTPUTS_PER_INPUT)


SCRATCH_MAX_INPUTS: Final = 8192
"""Batches up to this many inputs write their outputs into a reused per-thread buffer, then copy the
rows written. The output buffer reserves room for the worst case (``max_outputs_per_input``, up to
64 MB); allocating that per call meant an mmap and munmap per batch, a fixed cost that dominated the
small batches of a live pipeline. Bigger batches allocate their own (the copy would cost more)."""
_SCRATCH = threading.local()


def _scratch(rows: int) -> npt.NDArray[np.uint64]:
    """A ``(≥ rows, 2)`` uint64 buffer reused by this thread (contents undefined)."""
    buf: npt.NDArray[np.uint64] | None = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.shape[0] < rows:
        buf = np.empty((rows, 2), np.uint64)
        _SCRATCH.buf = buf
    return buf[:rows]


def _kernel_params(p: EngineParams) -> tuple[npt.NDArray[np.generic] | bool, ...]:
    """The params arrays in :func:`emulator.engine_kernel.run_events`' order."""
    return (p.shape_in, p.shape_out, p.ksp, p.weights, p.w_off, p.v_off, p.th_high, p.th_low, p.reset_zero,
            p.leak, p.bias, p.bias_off, p.decim_n, p.dest_kind, p.dest, p.monitor)  # fmt: skip


def _input_words(inputs: Spikes) -> npt.NDArray[np.uint64]:
    """The inputs as ``(n, 2)`` uint64 words: ``[t, layer | channel << 16 | x << 32 | y << 48]`` (the
    pad byte is masked off by the kernel). No copy for a contiguous ``SPIKE_DTYPE`` array."""
    if inputs.dtype != SPIKE_DTYPE:
        converted = np.zeros(len(inputs), SPIKE_DTYPE)
        for name in SPIKE_DTYPE.names or ():
            converted[name] = inputs[name]
        inputs = converted
    return np.ascontiguousarray(inputs).view(np.uint64).reshape(-1, 2)


def step(state: EngineState, inputs: Spikes, params: EngineParams) -> tuple[EngineState, Spikes, EngineCounts]:
    """Run ``inputs`` (``SPIKE_DTYPE``, ``layer`` = target core layer, time-ordered) through the cores.

    An input earlier than the last tick runs without ticking (ticks never go back). Inputs outside
    their core's input are dropped and counted. Pure: the given state is not modified. Returns the new state, the output spikes (see the
    module docstring) and this step's counts.
    """
    v, decim = state.v.copy(), state.decimator.copy()
    words = _input_words(inputs)
    n = words.shape[0]
    per_input = params.max_outputs_per_input or outputs_per_input(params)  # (a Python loop: 0.2 ms a call)
    # SPIKE_DTYPE rows as two words each; pages never written cost nothing (np.empty touches none;
    # ndarray.resize would zero-fill the new rows, and that dominated whole runs)
    rows_needed = n + min(OUT_ROWS_PER_INPUT * n, _SPARE_ROWS) + per_input + 2
    out = _scratch(rows_needed) if n <= SCRATCH_MAX_INPUTS else np.empty((rows_needed, 2), np.uint64)
    counts = np.zeros((params.shape_in.shape[0], N_COUNTERS), np.int64)
    i, n_out, tick, dropped_inputs = 0, 0, state.ticks, 0
    while True:
        i, n_out, tick, dropped_inputs = _run_events(
            words,
            params.slow_clock_hz,
            v,
            decim,
            tick,
            *_kernel_params(params),
            out,
            n_out,
            i,
            per_input,
            counts,
            dropped_inputs,
        )
        if i == n:
            break
        bigger = np.empty((2 * out.shape[0] + per_input + 2, 2), np.uint64)
        bigger[:n_out] = out[:n_out]
        out = bigger
    # keep the rows written: a copy when most of the buffer went unused (so it can be freed) or when it
    # is the reused scratch buffer (the next call overwrites it)
    rows = out[:n_out].copy() if n_out < out.shape[0] // 2 or n <= SCRATCH_MAX_INPUTS else out[:n_out]
    spikes = rows.view(SPIKE_DTYPE).reshape(n_out)
    result = EngineCounts(
        synops=counts[:, C_SYNOPS].copy(),
        neuron_updates=counts[:, C_UPDATES].copy(),
        spikes=counts[:, C_SPIKES].copy(),
        routed=counts[:, C_ROUTED].copy(),
        dropped=counts[:, C_DROPPED].copy(),
        dropped_inputs=int(dropped_inputs),
    )
    return EngineState(v=v, decimator=decim, ticks=int(tick)), spikes, result


__all__ = [
    "EngineCounts",
    "EngineParams",
    "EngineState",
    "build_params",
    "init_state",
    "layer_state",
    "step",
    "tick_index",
]
