"""The numba hot loop of :mod:`emulator.engine`: depth-first propagation with an explicit stack.

Everything here works on flat, channel-last arrays (states ``[oy, ox, f]``, weights ``[c, ky, kx, f]``
flipped along ``kx`` (see ``EngineParams``): with stride 1, the neurons of one output
row covered by an input and their weights are then two contiguous runs, one vectorised loop); :class:`emulator.engine.EngineParams` gives the
layout, :mod:`emulator.engine` the semantics and every named choice.

The stack holds routed core inputs ``(layer, c, y, x)``. Popping one updates the covered neurons;
each spike is handled where it fires (monitor row, decimator, readout rows, routed inputs pushed);
the inputs pushed by one update are then reversed in place so that they pop in the order they were
pushed. Each layer appears at most once on a depth-first path (the destinations form a DAG), which
bounds the stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

from emulator.config import READOUT_ADDRESS, STATE_MAX, STATE_MIN
from emulator.slow_clock_kernel import tick_at

DEST_NONE, DEST_CORE, DEST_READOUT = 0, 1, 2
"""Kinds of destination slot in ``EngineParams.dest_kind``."""
C_SYNOPS, C_UPDATES, C_SPIKES, C_ROUTED, C_DROPPED = 0, 1, 2, 3, 4
"""Columns of the per-layer counter array."""
N_COUNTERS = 5

I64 = npt.NDArray[np.int64]
_U16, _U32, _U48 = np.uint64(16), np.uint64(32), np.uint64(48)
_MASK8, _MASK16 = np.uint64(0xFF), np.uint64(0xFFFF)


@intrinsic
def _sat_add16(typingctx: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """``int16 + int16`` saturating at int16's ends, as one LLVM ``sadd.sat`` (``STATE_SATURATES``).

    Numba widens every integer sum to int64, which made the membrane loop run 8 lanes wide; kept in
    int16 it runs 32 wide (``vpaddsw``): the engine went from 0.70× to 0.96× the hand-written kernel.
    """
    sig = types.int16(types.int16, types.int16)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: list[ir.Value]) -> ir.Value:
        i16 = ir.IntType(16)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i16, [i16, i16]), "llvm.sadd.sat.i16")
        return builder.call(fn, args)

    return sig, codegen


sat_add16: Callable[[np.int16, np.int16], np.int16] = _sat_add16  # type: ignore[assignment]  # typed for callers


@njit(cache=True, inline="always")
def spike_word(layer: int, channel: int, y: int, x: int) -> np.uint64:
    """The second 8 bytes of a little-endian ``SPIKE_DTYPE`` row: layer, pad, channel, x, y."""
    return np.uint64(layer) | (np.uint64(channel) << _U16) | (np.uint64(x) << _U32) | (np.uint64(y) << _U48)


@njit(cache=True)
def leak_ticks(
    v: npt.NDArray[np.int16],
    n_ticks: int,
    leak: npt.NDArray[np.bool_],
    bias: I64,
    bias_off: I64,
    shape_out: I64,
    v_off: I64,
    th_low: I64,
    counts: I64,
) -> None:
    """Apply ``n_ticks`` slow-clock ticks to every leaking layer, in layer order, in place.

    One tick: ``v = max(sat16(v + b), low)``. After the first tick ``v >= low``, so the next
    ``n − 1`` ticks only move ``v`` monotonically and saturate at one end: closed form.
    """
    if n_ticks <= 0:
        return
    for layer in range(leak.shape[0]):
        if not leak[layer]:
            continue
        nf, oh, ow = shape_out[layer, 0], shape_out[layer, 1], shape_out[layer, 2]
        lo = th_low[layer]
        for j in range(oh * ow):
            base = v_off[layer] + j * nf  # states [oy, ox, f]
            for f in range(nf):
                b = bias[bias_off[layer] + f]
                vv = min(max(np.int64(v[base + f]) + b, STATE_MIN), STATE_MAX)
                vv = max(vv, lo)
                if b >= 0:
                    vv = min(vv + (n_ticks - 1) * b, STATE_MAX)
                else:
                    vv = max(vv + (n_ticks - 1) * b, lo)
                v[base + f] = vv
        counts[layer, C_UPDATES] += n_ticks * nf * oh * ow


@njit(cache=True)
def run_events(
    ev: npt.NDArray[np.uint64],
    slow_clock_hz: float,
    v: npt.NDArray[np.int16],
    decim: I64,
    ticks: int,
    shape_in: I64,
    shape_out: I64,
    ksp: I64,
    wflip: npt.NDArray[np.int8],
    w_off: I64,
    v_off: I64,
    th_high: I64,
    th_low: I64,
    reset_zero: npt.NDArray[np.bool_],
    leak: npt.NDArray[np.bool_],
    bias: I64,
    bias_off: I64,
    decim_n: I64,
    dest_kind: I64,
    dest: I64,
    monitor: bool,
    out: npt.NDArray[np.uint64],
    n_out: int,
    first: int,
    out_per_input: int,
    counts: I64,
    dropped_inputs: int,
) -> tuple[int, int, int, int]:
    """Process events ``first…`` in order, in place on ``v``, ``decim``, ``out`` (``SPIKE_DTYPE`` rows as
    two words, see :func:`spike_word`, from ``n_out`` on) and ``counts[layer, counter]``.

    ``monitor=False`` leaves out the monitor rows (every core spike): a caller that only needs the
    readout rows and the counts saves writing most of the rows.

    Stops before an event when ``out`` has less than ``out_per_input + 2`` free rows (the caller grows it
    and calls again: an array never reassigned inside the kernel keeps its loops 2× faster).
    Returns ``(next event, n_out, ticks, dropped_inputs)``.

    One function on purpose: a numba call that passes arrays costs far more than these loop bodies
    (measured: a no-op routing call per spike made the engine 2× slower), so update, spike and
    route are written inline, each under its own comment.
    """
    n_layers = shape_in.shape[0]
    max_fired = shape_out[:, 0] * ((ksp[:, 0] >> ksp[:, 1]) + 1) ** 2  # bound on the spikes of one update
    # a depth-first path visits each layer once; each of its updates leaves ≤ 2 routed inputs a spike
    stack = np.empty((1 + 2 * np.sum(max_fired), 4), np.int64)
    # without a leaking layer a tick changes nothing but the count of ticks done: ticks only go
    # forward and the tick index grows with t, so the last count is that of the latest input
    any_leak = np.any(leak)
    t_max, seen = np.uint64(0), False
    for i in range(first, ev.shape[0]):
        # + 2: the per-spike guard below reserves 3 rows
        limit = n_out + out_per_input + 2  # this input's rows must end below it
        if limit > out.shape[0]:
            if seen:
                ticks = max(ticks, int(tick_at(np.uint64(t_max), np.uint64(slow_clock_hz))))
            return i, n_out, ticks, dropped_inputs
        t, word = ev[i, 0], ev[i, 1]
        if any_leak:
            tick = int(tick_at(np.uint64(t), np.uint64(slow_clock_hz)))
            if tick > ticks:
                leak_ticks(v, tick - ticks, leak, bias, bias_off, shape_out, v_off, th_low, counts)
                ticks = tick
        else:
            t_max, seen = max(t_max, t), True
        layer = np.int64(word & _MASK8)
        c, x, y = np.int64((word >> _U16) & _MASK16), np.int64((word >> _U32) & _MASK16), np.int64(word >> _U48)
        if layer >= n_layers or c >= shape_in[layer, 0] or y >= shape_in[layer, 1] or x >= shape_in[layer, 2]:
            dropped_inputs += 1
            continue
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = layer, c, y, x
        sp = 1
        while sp > 0:  # --- one input (layer, c, y, x): update every neuron whose window covers it
            sp -= 1
            usp = np.uint64(sp)  # unsigned indices: no negative-index wraparound checks
            layer, c, y, x = stack[usp, 0], stack[usp, 1], stack[usp, 2], stack[usp, 3]
            start = sp
            k, sh, p = ksp[layer, 0], ksp[layer, 1], ksp[layer, 2]  # stride = 1 << sh
            nf, oh, ow = shape_out[layer, 0], shape_out[layer, 1], shape_out[layer, 2]
            oy_lo, oy_hi = max(0, -((k - 1 - y - p) >> sh)), min(oh - 1, (y + p) >> sh)  # ceil, floor
            ox_lo, ox_hi = max(0, -((k - 1 - x - p) >> sh)), min(ow - 1, (x + p) >> sh)
            th, lo, zero = th_high[layer], th_low[layer], reset_zero[layer]
            lo16 = np.int16(min(max(lo, STATE_MIN), STATE_MAX))  # ChipConfig keeps thresholds in int16
            for oy in range(oy_lo, oy_hi + 1):
                ky = y + p - (oy << sh)
                sx = ox_lo
                while sx <= ox_hi:  # stride 1: the whole row is one run (states and flipped weights contiguous)
                    ex = ox_hi if sh == 0 else sx
                    kx = x + p - (sx << sh)
                    uw = np.uint64(w_off[layer] + ((c * k + ky) * k + k - 1 - kx) * nf)  # flipped [c, ky, k-1-kx, f]
                    uv = np.uint64(v_off[layer] + (oy * ow + sx) * nf)  # states [oy, ox, f]
                    # pass 1, branch-free (vectorised): v = max(sat16(v + w), low); the largest new state
                    top = lo16
                    for j in range((ex - sx + 1) * nf):  # all in int16 (see sat_add16)
                        uj = np.uint64(j)
                        s: np.int16 = sat_add16(v[uv + uj], np.int16(wflip[uw + uj]))
                        s = s if s > lo16 else lo16  # noqa: FURB136 (max() measured slower: 0.89× vs 0.95×)
                        v[uv + uj] = s
                        top = top if top > s else s  # noqa: FURB136
                    sx, ox0 = ex + 1, sx
                    if top < th:  # no spike: the common case
                        continue
                    # pass 2: the neurons that fire, in (ox, f) order (spikes never touch states)
                    for ox in range(ox0, ex + 1):
                        ub = uv + np.uint64((ox - ox0) * nf)
                        for f in range(nf):
                            uf = ub + np.uint64(f)
                            vv = int(v[uf])
                            if vv < th:  # SPIKE_RULE: fires when v >= threshold_high
                                continue
                            vv = 0 if zero else vv - th
                            vv = min(max(vv, lo, STATE_MIN), STATE_MAX)  # CLAMP_AFTER_RESET
                            v[uf] = vv
                            # --- the spike: monitor row, decimator, destinations (≤ 3 rows)
                            if n_out + 3 > limit:
                                raise ValueError("one input caused more output rows than MAX_OUTPUTS_PER_INPUT")
                            if monitor:
                                uo = np.uint64(n_out)
                                out[uo, 0], out[uo, 1] = t, spike_word(layer, f, oy, ox)
                                n_out += 1
                            counts[layer, C_SPIKES] += 1
                            decim[layer] += 1
                            if decim[layer] >= decim_n[layer]:  # DECIMATOR_PHASE: the N-th, 2N-th, … passes
                                decim[layer] = 0
                                for d in range(2):  # DESTINATION_ORDER
                                    dk = dest_kind[layer, d]
                                    if dk == DEST_NONE:
                                        continue
                                    counts[layer, C_ROUTED] += 1
                                    target, sh2 = dest[layer, d, 0], dest[layer, d, 1]  # pooling = 1 << sh2
                                    c2, y2, x2 = f + dest[layer, d, 2], oy >> sh2, ox >> sh2
                                    if dk == DEST_READOUT:
                                        uo = np.uint64(n_out)
                                        out[uo, 0], out[uo, 1] = t, spike_word(READOUT_ADDRESS, c2, y2, x2)
                                        n_out += 1
                                    elif (
                                        c2 < shape_in[target, 0]
                                        and y2 < shape_in[target, 1]
                                        and x2 < shape_in[target, 2]
                                    ):
                                        usp = np.uint64(sp)
                                        stack[usp, 0], stack[usp, 1], stack[usp, 2], stack[usp, 3] = target, c2, y2, x2
                                        sp += 1
                                    else:
                                        counts[layer, C_DROPPED] += 1
            n = nf * max(0, oy_hi - oy_lo + 1) * max(0, ox_hi - ox_lo + 1)
            counts[layer, C_SYNOPS] += n
            counts[layer, C_UPDATES] += n
            lo_i, hi_i = start, sp - 1  # the routed inputs pushed above pop in the order they were pushed
            while lo_i < hi_i:
                for col in range(4):
                    stack[lo_i, col], stack[hi_i, col] = stack[hi_i, col], stack[lo_i, col]
                lo_i += 1
                hi_i -= 1
    if seen:
        ticks = max(ticks, int(tick_at(np.uint64(t_max), np.uint64(slow_clock_hz))))
    return ev.shape[0], n_out, ticks, dropped_inputs
