"""Engine throughput: synaptic ops/s of ``emulator.engine.step`` against a hand-written numba kernel.

Run: ``python -m bench.emulator [--events N] [--reps R]`` from the repository root (as a module:
this file's name would shadow the ``emulator`` package if run as a script). The net is the one of baselines.md:
2×128×128 → conv 8 ch 3×3 s1 p1 → IF θ64 subtract → 2×2 sum-pool → conv 16 ch 3×3 p1 → IF θ128;
int weights in [−4, 6]; membranes uniform in [0, θ); uniform random input events. The peer is a
minimal depth-first kernel specialised to this net (constant shapes, channel-last like the engine;
no monitor output, clamps, decimator or generic routing), run on the same events in the same
process; both start from the same state, and their synop counts and final states are checked equal.
The engine is timed through its public ``step`` (input conversion, state copy and the output array
of every spike included); the peer's timing is its loop alone. Rows are medians over ``R``
alternating runs (compile excluded); ``ratio`` = peer time / engine time.

Then the real-time factor of the whole chip (:class:`emulator.chip.Chip`: noise filter, DVS layer,
cores, readout, latency stamps, power) with the paper's 5-core Speck net (``emulator.default_net``)
on every DVS128 recording in ``shared/data/real``: recording duration / wall time, warm numba cache,
65 536-event steps as ``speck-edge emulate`` runs them.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from emulator.config import STATE_MIN
from emulator.engine import EngineParams, EngineState, init_state, layer_state, step
from emulator.engine_kernel import DEST_CORE, DEST_NONE
from proto.events import SPIKE_DTYPE, Spikes

SIDE, C_IN, F1, F2, K = 128, 2, 8, 16, 3
TH1, TH2 = 64, 128
I32 = npt.NDArray[np.int32]


@njit(cache=True)
def hand_kernel(ev_c: I32, ev_y: I32, ev_x: I32, w1: I32, v1: I32, w2: I32, v2: I32) -> tuple[int, int, int]:
    """Depth-first, channel-last (states ``[y, x, f]``, weights ``[c, ky, kx, f]``): each layer-1 spike
    is pooled and fed to layer 2 at once. Returns (synops, layer-1 spikes, layer-2 spikes)."""
    h1, w1_ = v1.shape[0], v1.shape[1]
    h2, w2_ = v2.shape[0], v2.shape[1]
    synops = spikes1 = spikes2 = 0
    for i in range(ev_c.shape[0]):
        c, y, x = ev_c[i], ev_y[i], ev_x[i]
        for oy in range(max(0, y - 1), min(h1, y + 2)):
            for ox in range(max(0, x - 1), min(w1_, x + 2)):
                for f in range(F1):
                    synops += 1
                    v = v1[oy, ox, f] + w1[c, y - oy + 1, x - ox + 1, f]
                    if v >= TH1:
                        v -= TH1
                        spikes1 += 1
                        py, px = oy // 2, ox // 2
                        for qy in range(max(0, py - 1), min(h2, py + 2)):
                            for qx in range(max(0, px - 1), min(w2_, px + 2)):
                                for g in range(F2):
                                    synops += 1
                                    u = v2[qy, qx, g] + w2[f, py - qy + 1, px - qx + 1, g]
                                    if u >= TH2:
                                        u -= TH2
                                        spikes2 += 1
                                    v2[qy, qx, g] = u
                    v1[oy, ox, f] = v
    return synops, spikes1, spikes2


class Net(NamedTuple):
    """The baselines.md net's arrays (int8 weights, int16 membranes)."""

    w1: npt.NDArray[np.int8]
    w2: npt.NDArray[np.int8]
    v1: npt.NDArray[np.int16]
    v2: npt.NDArray[np.int16]


def make_net(rng: np.random.Generator) -> Net:
    half = SIDE // 2
    return Net(
        w1=rng.integers(-4, 7, size=(F1, C_IN, K, K)).astype(np.int8),
        w2=rng.integers(-4, 7, size=(F2, F1, K, K)).astype(np.int8),
        v1=rng.integers(0, TH1, size=(F1, SIDE, SIDE)).astype(np.int16),
        v2=rng.integers(0, TH2, size=(F2, half, half)).astype(np.int16),
    )


def engine_params(net: Net) -> EngineParams:
    """Flat engine params built by hand: conv1's 128 × 128 output is beyond Speck's 64 × 64 limit,
    so ``ChipConfig`` refuses this (baselines.md) net. ``threshold_low`` is int16's minimum, as the
    peer has no lower clamp."""
    half = SIDE // 2
    i64 = partial(np.array, dtype=np.int64)
    return EngineParams(
        shape_in=i64([(C_IN, SIDE, SIDE), (F1, half, half)]),
        shape_out=i64([(F1, SIDE, SIDE), (F2, half, half)]),
        ksp=i64([(K, 0, 1), (K, 0, 1)]),  # (k, log2 stride, padding)
        weights=np.concatenate(  # [c, ky, kx reversed, f], the engine's layout
            [net.w1.transpose(1, 2, 3, 0)[:, :, ::-1, :].ravel(), net.w2.transpose(1, 2, 3, 0)[:, :, ::-1, :].ravel()]
        ),
        w_off=i64([0, net.w1.size]),
        v_off=i64([0, net.v1.size]),
        v0=np.concatenate([net.v1.transpose(1, 2, 0).ravel(), net.v2.transpose(1, 2, 0).ravel()]),
        th_high=i64([TH1, TH2]),
        th_low=i64([STATE_MIN, STATE_MIN]),
        reset_zero=np.zeros(2, np.bool_),
        leak=np.zeros(2, np.bool_),
        bias=np.zeros(F1 + F2, np.int64),
        bias_off=i64([0, F1]),
        decim_n=i64([1, 1]),
        dest_kind=i64([(DEST_CORE, DEST_NONE), (DEST_NONE, DEST_NONE)]),
        dest=i64([[(1, 1, 0), (0, 0, 0)], [(0, 0, 0), (0, 0, 0)]]),  # (target, log2 pooling, shift)
        slow_clock_hz=1000.0,
    )


def random_inputs(n: int, rng: np.random.Generator) -> Spikes:
    ev = np.zeros(n, SPIKE_DTYPE)
    ev["t"] = np.arange(n)
    ev["channel"], ev["y"], ev["x"] = rng.integers(0, C_IN, n), rng.integers(0, SIDE, n), rng.integers(0, SIDE, n)
    return ev


def run_engine(state: EngineState, ev: Spikes, params: EngineParams) -> tuple[float, int, EngineState]:
    start = time.perf_counter()
    new, _, counts = step(state, ev, params)
    return time.perf_counter() - start, int(counts.synops.sum()), new


def run_hand(net: Net, ev: Spikes) -> tuple[float, int, I32, I32]:
    v1, v2 = (np.ascontiguousarray(a.transpose(1, 2, 0), np.int32) for a in (net.v1, net.v2))
    w1, w2 = (np.ascontiguousarray(a.transpose(1, 2, 3, 0), np.int32) for a in (net.w1, net.w2))
    cols = [ev[name].astype(np.int32) for name in ("channel", "y", "x")]
    start = time.perf_counter()
    synops, _, _ = hand_kernel(cols[0], cols[1], cols[2], w1, v1, w2, v2)
    return time.perf_counter() - start, synops, v1, v2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="input events per run")
    parser.add_argument("--reps", type=int, default=5, help="alternating runs per implementation")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    net = make_net(rng)
    ev = random_inputs(args.events, rng)
    params = engine_params(net)
    state = init_state(params)
    run_engine(state, ev[:1000], params)  # compile (or load the cache) outside the timings
    run_hand(net, ev[:1000])
    engine_s, hand_s = [], []
    for _ in range(args.reps):
        dt, syn_e, new = run_engine(state, ev, params)
        engine_s.append(dt)
        dt, syn_h, v1, v2 = run_hand(net, ev)
        hand_s.append(dt)
    same = (
        syn_e == syn_h
        and np.array_equal(layer_state(new, params, 0), v1.transpose(2, 0, 1))
        and np.array_equal(layer_state(new, params, 1), v2.transpose(2, 0, 1))
    )
    te, th = float(np.median(engine_s)), float(np.median(hand_s))
    print(f"{args.events} events, {syn_e / args.events:.1f} synops/event, same result: {same}")
    print(f"{'implementation':<22} {'M synops/s':>11} {'M events/s':>11} {'ratio':>6}")
    print(f"{'hand-written numba':<22} {syn_h / th / 1e6:>11.1f} {args.events / th / 1e6:>11.2f} {1.0:>6.2f}")
    print(f"{'emulator.engine.step':<22} {syn_e / te / 1e6:>11.1f} {args.events / te / 1e6:>11.2f} {th / te:>6.2f}")


def realtime_factors(chunk_events: int = 65_536) -> None:
    """Event-time span / wall time of the whole chip on each DVS128 recording of the corpus."""
    from pathlib import Path

    from emulator.chip import Chip
    from emulator.default_net import speck_net
    from emulator.io import read_recording

    real = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
    files = sorted(real.glob("*/*.aedat"))
    if not files:
        print(f"no DVS128 recordings under {real}: real-time factors skipped")
        return
    config = speck_net()
    print(
        f"\n{'recording (speck_net, 5 cores)':<44} {'events':>8} {'synops/ev':>9} {'span s':>7} {'wall s':>7} {'x real time':>11}"
    )
    for path in files:
        events, _ = read_recording(path)
        Chip.from_config(config).step(events[:1000])  # compile or load numba's cache outside the timing
        chip = Chip.from_config(config)
        synops = 0
        started = time.perf_counter()
        for i in range(0, len(events), chunk_events):
            synops += chip.step(events[i : i + chunk_events]).telemetry.synops
        wall = time.perf_counter() - started
        span = (int(events["t"][-1]) - int(events["t"][0])) / 1e6
        print(
            f"{path.name:<44} {len(events):>8} {synops / len(events):>9.0f} {span:>7.2f} {wall:>7.2f} {span / wall:>11.1f}"
        )


if __name__ == "__main__":
    main()
    realtime_factors()
