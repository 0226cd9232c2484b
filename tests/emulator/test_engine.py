"""The event-driven engine against an independent plain-Python reference, and each named choice."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from numba import njit

from emulator import engine
from emulator.config import (
    READOUT,
    READOUT_ADDRESS,
    READOUT_INPUT_SHAPES,
    STATE_MAX,
    STATE_MIN,
    ChipConfig,
    CoreLayer,
    Destination,
    ReadoutConfig,
)
from emulator.engine import build_params, init_state, layer_state, step
from emulator.engine_kernel import sat_add16
from proto.events import SPIKE_DTYPE, Spikes
from tests.emulator.reference_engine import Reference

N_CONFIGS = 220
Rng = np.random.Generator


# --- random configs and streams ----------------------------------------------------------------
def _layer_geometry(rng: Rng, c: int, h: int, w: int) -> tuple[int, int, int, int]:
    """(f, k, s, p) with an output of at least 1 × 1."""
    p = int(rng.integers(0, 3))
    k = int(rng.integers(1, min(5, h + 2 * p, w + 2 * p) + 1))
    return int(rng.integers(1, 5)), k, int(rng.choice([1, 2, 4])), p


def _fits(routed: tuple[int, int, int], limit: tuple[int, int, int]) -> bool:
    return all(0 < r <= m for r, m in zip(routed, limit, strict=True))


def random_config(rng: Rng) -> ChipConfig:
    """1–3 layers in a chain (destination slot random) plus random skip/readout destinations."""
    n = int(rng.integers(1, 4))
    mode = int(rng.integers(0, 4))
    shapes: list[tuple[int, int, int]] = [(int(rng.integers(1, 5)), int(rng.integers(1, 13)), int(rng.integers(1, 13)))]
    geoms: list[tuple[int, int, int, int]] = []
    chain: list[Destination] = []
    for i in range(n):
        c, h, w = shapes[i]
        f, k, s, p = _layer_geometry(rng, c, h, w)
        geoms.append((f, k, s, p))
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if i + 1 < n:
            pool = int(rng.choice([q for q in (1, 2) if oh // q >= 1 and ow // q >= 1]))
            shift = int(rng.integers(0, 2))
            extra = rng.integers(0, 2, size=3)
            shapes.append((f + shift + int(extra[0]), oh // pool + int(extra[1]), ow // pool + int(extra[2])))
            chain.append(Destination(i + 1, pooling=pool, feature_shift=shift))
    layers = []
    for i in range(n):
        (c, h, w), (f, k, s, p) = shapes[i], geoms[i]
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        dests = [chain[i]] if i < len(chain) else []
        extra_dests = [Destination(READOUT, pooling=q, feature_shift=sh) for q in (1, 2, 4) for sh in (0, 1)]
        extra_dests += [Destination(j, pooling=q) for j in range(i + 2, n) for q in (1, 2)]
        for d in [d for d in extra_dests if rng.random() < 0.3]:
            target = READOUT_INPUT_SHAPES[mode] if d.layer == READOUT else shapes[int(d.layer)]
            if len(dests) < 2 and _fits((f + d.feature_shift, oh // d.pooling, ow // d.pooling), target):
                dests.append(d)
        if rng.random() < 0.5:
            dests.reverse()
        high = int(rng.choice([int(rng.integers(1, 20)), int(rng.integers(100, 32768))]))
        low = int(
            rng.choice([-1, int(rng.integers(-20, 0)), -32768, int(rng.integers(1, high + 1)) if high > 1 else -1])
        )
        low = low if low < high and low != 0 else -1
        wmax = 127 if high > 1000 else 8
        layers.append(
            CoreLayer(
                name=f"l{i}",
                input_shape=(c, h, w),
                weights=rng.integers(-wmax, wmax + 1, size=(f, c, k, k)).astype(np.int8),
                threshold_high=high,
                threshold_low=low,
                bias=rng.integers(-3, 4, size=f).astype(np.int16) if rng.random() < 0.7 else None,
                stride=s,
                padding=p,
                reset="zero" if rng.random() < 0.5 else "subtract",
                leak=bool(rng.random() < 0.4),
                decimator=int(rng.choice([2, 4])) if rng.random() < 0.25 else None,
                destinations=tuple(dests),
                initial_state=rng.integers(max(low - 10, -32768), min(3 * high, 32767), size=(f, oh, ow)).astype(
                    np.int16
                )
                if rng.random() < 0.8
                else None,
            )
        )
    hz = float(rng.choice([1000.0, 250.0, 3000.0, 7.0]))
    return ChipConfig(layers=tuple(layers), readout=ReadoutConfig(address_mode=mode), slow_clock_hz=hz)


def random_events(rng: Rng, config: ChipConfig) -> Spikes:
    """Time-ordered inputs, mostly to layer 0, a few to other layers, ~3% out of range."""
    n = int(rng.integers(10, 200))
    ev = np.zeros(n, SPIKE_DTYPE)
    ev["t"] = np.cumsum(rng.integers(0, 1500, size=n))
    layers = np.where(rng.random(n) < 0.8, 0, rng.integers(0, len(config.layers), size=n))
    ev["layer"] = layers
    for j, i in enumerate(layers):
        c, h, w = config.layers[int(i)].input_shape
        ev["channel"][j], ev["y"][j], ev["x"][j] = rng.integers(0, c), rng.integers(0, h), rng.integers(0, w)
    bad = rng.random(n) < 0.03
    ev["x"][bad] += 200
    return ev


def _rows(spikes: Spikes) -> list[tuple[int, int, int, int, int]]:
    return [(int(s["t"]), int(s["layer"]), int(s["channel"]), int(s["y"]), int(s["x"])) for s in spikes]


def _run_reference(config: ChipConfig, events: Spikes) -> Reference:
    ref = Reference(config)
    ref.run(_rows(events))
    return ref


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_engine_matches_reference_spike_for_spike(seed: int) -> None:
    rng = np.random.default_rng(seed)
    config = random_config(rng)
    events = random_events(rng, config)
    params = build_params(config)
    state, out, counts = step(init_state(params), events, params)
    ref = _run_reference(config, events)
    assert _rows(out) == ref.out
    for i in range(len(config.layers)):
        assert layer_state(state, params, i).tolist() == ref.v[i]
    assert counts.synops.tolist() == ref.synops
    assert counts.neuron_updates.tolist() == ref.updates
    assert counts.spikes.tolist() == ref.spikes
    assert counts.routed.tolist() == ref.routed
    assert counts.dropped.tolist() == ref.dropped
    assert counts.dropped_inputs == ref.dropped_inputs
    assert state.decimator.tolist() == ref.decim
    assert state.ticks == ref.tick
    # batch by batch == all at once
    cuts = np.sort(rng.integers(0, len(events) + 1, size=3))
    s, parts = init_state(params), []
    for part in np.split(events, cuts):
        s, o, _ = step(s, part, params)
        parts.append(o)
    assert _rows(np.concatenate(parts)) == ref.out
    assert np.array_equal(s.v, state.v) and s.ticks == state.ticks


def test_without_monitor_rows_only_the_readout_rows_remain() -> None:
    readout_rows = 0
    for seed in range(N_CONFIGS):
        rng = np.random.default_rng(seed)
        config = random_config(rng)
        events = random_events(rng, config)
        params = build_params(config)
        full_state, full, full_counts = step(init_state(params), events, params)
        quiet_state, quiet, quiet_counts = step(init_state(params), events, params._replace(monitor=False))
        assert _rows(quiet) == _rows(full[full["layer"] == READOUT_ADDRESS]), seed
        assert np.array_equal(quiet_state.v, full_state.v) and quiet_state.ticks == full_state.ticks
        for name in ("synops", "neuron_updates", "spikes", "routed", "dropped"):
            assert np.array_equal(getattr(quiet_counts, name), getattr(full_counts, name)), (seed, name)
        readout_rows += len(quiet)
    assert readout_rows > 100  # many configs route to the readout: the comparison is not of empties


def test_random_configs_cover_every_feature() -> None:
    """The generator really exercises readouts, drops, decimators, leak and both resets."""
    seen: dict[str, int] = dict.fromkeys(["readout", "drop", "decim", "leak", "zero", "subtract", "3 layers"], 0)
    for seed in range(N_CONFIGS):
        rng = np.random.default_rng(seed)
        config = random_config(rng)
        layers = config.layers
        seen["readout"] += any(d.layer == READOUT for layer in layers for d in layer.destinations)
        seen["decim"] += any(layer.decimator for layer in layers)
        seen["leak"] += any(layer.leak for layer in layers)
        seen["zero"] += any(layer.reset == "zero" for layer in layers)
        seen["subtract"] += any(layer.reset == "subtract" for layer in layers)
        seen["3 layers"] += len(layers) == 3
        params = build_params(config)
        seen["drop"] += int(step(init_state(params), random_events(rng, config), params)[2].dropped.sum() > 0)
    assert min(seen.values()) >= 10, seen


# --- hand-written cases, one per documented choice --------------------------------------------
def _one(weight: int, high: int, v0: int, low: int = -1, reset: str = "subtract", **kw: object) -> CoreLayer:
    """A 1-channel 1×1 layer: one input updates one neuron with ``weight``."""
    return CoreLayer(
        name="one",
        input_shape=(1, 1, 1),
        weights=np.full((1, 1, 1, 1), weight, np.int8),
        threshold_high=high,
        threshold_low=low,
        reset=reset,  # type: ignore[arg-type]
        initial_state=np.full((1, 1, 1), v0, np.int16),
        **kw,  # type: ignore[arg-type]
    )


def _events(*rows: tuple[int, int, int, int, int]) -> Spikes:
    """Inputs from ``(t, layer, channel, y, x)`` rows."""
    ev = np.zeros(len(rows), SPIKE_DTYPE)
    for j, (t, layer, c, y, x) in enumerate(rows):
        ev[j] = (t, layer, c, x, y)  # field order: t, layer, channel, x, y
    return ev


def _run(layers: tuple[CoreLayer, ...], rows: list[tuple[int, int, int, int, int]], hz: float = 1000.0) -> tuple[
    engine.EngineState, list[tuple[int, int, int, int, int]], engine.EngineCounts, engine.EngineParams
]:  # fmt: skip
    params = build_params(ChipConfig(layers=layers, slow_clock_hz=hz))
    state, out, counts = step(init_state(params), _events(*rows), params)
    return state, _rows(out), counts, params


def test_spike_rule_is_greater_or_equal() -> None:
    assert engine.SPIKE_RULE == ">="
    _, out, _, _ = _run((_one(1, 10, 9),), [(0, 0, 0, 0, 0)])
    assert out == [(0, 0, 0, 0, 0)]
    _, out, _, _ = _run((_one(1, 10, 8),), [(0, 0, 0, 0, 0)])
    assert out == []


def test_one_spike_per_update_even_above_twice_threshold() -> None:
    state, out, _, _ = _run((_one(0, 10, 35),), [(0, 0, 0, 0, 0)])
    assert out == [(0, 0, 0, 0, 0)] and state.v.tolist() == [25]
    # ZERO_WEIGHT_UPDATES: each zero-weight input is an update that fires once more
    state, out, counts, _ = _run((_one(0, 10, 35),), [(t, 0, 0, 0, 0) for t in range(4)])
    assert [r[0] for r in out] == [0, 1, 2] and state.v.tolist() == [5]
    assert counts.synops.tolist() == [4]


def test_threshold_low_clamps_from_below() -> None:
    state, _, _, _ = _run((_one(-3, 10, -5, low=-5),), [(0, 0, 0, 0, 0)])
    assert state.v.tolist() == [-5]
    # a state initialised below the bound stays until its next update clamps it
    params = build_params(ChipConfig(layers=(_one(0, 10, -9, low=-5),)))
    assert init_state(params).v.tolist() == [-9]
    assert step(init_state(params), _events((0, 0, 0, 0, 0)), params)[0].v.tolist() == [-5]


def test_reset_zero_and_subtract() -> None:
    assert _run((_one(7, 5, 0, reset="zero"),), [(0, 0, 0, 0, 0)])[0].v.tolist() == [0]
    assert _run((_one(7, 5, 0, reset="subtract"),), [(0, 0, 0, 0, 0)])[0].v.tolist() == [2]
    # CLAMP_AFTER_RESET: with threshold_low > 0 the reset state is clamped up to it
    assert _run((_one(7, 5, 0, low=3, reset="zero"),), [(0, 0, 0, 0, 0)])[0].v.tolist() == [3]


def test_state_saturates_at_int16() -> None:
    state, _, _, _ = _run((_one(-128, 10, -32700, low=-32768),), [(0, 0, 0, 0, 0)])
    assert state.v.tolist() == [-32768]
    state, out, _, _ = _run((_one(127, 32767, 32700),), [(0, 0, 0, 0, 0)])
    assert out == [(0, 0, 0, 0, 0)] and state.v.tolist() == [0]


def test_leak_tick_charges_but_never_fires() -> None:
    assert engine.LEAK_TICK_FIRES is False
    layer = _one(0, 10, 8, bias=np.array([5], np.int16), leak=True)
    # tick 1 is at 1000 µs (1 kHz): the input at 999 sees no tick, the one at 1000 sees it first
    state, out, counts, _ = _run((layer,), [(999, 0, 0, 0, 0)])
    assert out == [] and state.v.tolist() == [8] and state.ticks == 0
    state, out, counts, _ = _run((layer,), [(1000, 0, 0, 0, 0)])
    assert out == [(1000, 0, 0, 0, 0)] and state.v.tolist() == [3] and state.ticks == 1
    assert counts.neuron_updates.tolist() == [2] and counts.synops.tolist() == [1]
    # many ticks: the leak stops at threshold_low (and int16) and fires nothing by itself
    down = _one(0, 10, 8, low=-20, bias=np.array([-3], np.int16), leak=True)
    state, out, _, _ = _run((down,), [(1_000_000, 0, 0, 0, 0)])
    assert out == [] and state.v.tolist() == [-20] and state.ticks == 1000


def test_decimator_passes_the_nth_spike() -> None:
    layer = _one(10, 10, 0, decimator=2, destinations=(Destination(READOUT),))
    _, out, counts, _ = _run((layer,), [(t, 0, 0, 0, 0) for t in range(4)])
    assert out == [(0, 0, 0, 0, 0), (1, 0, 0, 0, 0), (1, READOUT_ADDRESS, 0, 0, 0), (2, 0, 0, 0, 0), (3, 0, 0, 0, 0),
                   (3, READOUT_ADDRESS, 0, 0, 0)]  # fmt: skip
    assert counts.spikes.tolist() == [4] and counts.routed.tolist() == [2]


def _fan_out(dests: tuple[Destination, ...]) -> tuple[CoreLayer, ...]:
    """A 1×1 source that fires at once, routed to ``dests``; two 1×1 sinks that fire on any input."""
    sink = [CoreLayer(f"sink{j}", (1, 1, 1), np.full((1, 1, 1, 1), 10, np.int8), threshold_high=5) for j in (1, 2)]
    return _one(10, 10, 0, destinations=dests), *sink


def test_destination_zero_is_served_first() -> None:
    _, out, _, _ = _run(_fan_out((Destination(1), Destination(2))), [(0, 0, 0, 0, 0)])
    assert out == [(0, 0, 0, 0, 0), (0, 1, 0, 0, 0), (0, 2, 0, 0, 0)]
    _, out, _, _ = _run(_fan_out((Destination(2), Destination(1))), [(0, 0, 0, 0, 0)])
    assert out == [(0, 0, 0, 0, 0), (0, 2, 0, 0, 0), (0, 1, 0, 0, 0)]
    two_readouts = (Destination(READOUT, feature_shift=2), Destination(READOUT, feature_shift=1))
    _, out, _, _ = _run(_fan_out(two_readouts), [(0, 0, 0, 0, 0)])
    assert out == [(0, 0, 0, 0, 0), (0, READOUT_ADDRESS, 2, 0, 0), (0, READOUT_ADDRESS, 1, 0, 0)]


def test_readout_rows_are_emitted_at_firing_core_inputs_after_the_update() -> None:
    _, out, _, _ = _run(_fan_out((Destination(1), Destination(READOUT, feature_shift=1))), [(0, 0, 0, 0, 0)])
    assert out == [(0, 0, 0, 0, 0), (0, READOUT_ADDRESS, 1, 0, 0), (0, 1, 0, 0, 0)]


def test_spikes_of_one_update_in_oy_ox_f_order_then_routed_inputs_depth_first() -> None:
    """A 2-channel 1×2 output fires all 4 neurons (rows at once); then each routed input in turn,
    with its whole subtree (layer 1's spike reaches layer 2 before layer 1's next input)."""
    assert engine.SPIKE_ORDER.startswith("(oy, ox, f)")
    src = CoreLayer("src", (1, 1, 2), np.full((2, 1, 1, 1), 10, np.int8), threshold_high=5,
                    destinations=(Destination(1),))  # fmt: skip
    mid = CoreLayer("mid", (2, 1, 2), np.full((1, 2, 1, 1), 10, np.int8), threshold_high=5,
                    destinations=(Destination(2),))  # fmt: skip
    sink = CoreLayer("sink", (1, 1, 2), np.full((1, 1, 1, 1), 10, np.int8), threshold_high=5)
    _, out, _, _ = _run((src, mid, sink), [(7, 0, 0, 0, 1)])
    assert out == [(7, 0, 0, 0, 1), (7, 0, 1, 0, 1), (7, 1, 0, 0, 1), (7, 2, 0, 0, 1), (7, 1, 0, 0, 1), (7, 2, 0, 0, 1)]
    big = CoreLayer("big", (1, 2, 2), np.full((2, 1, 2, 2), 10, np.int8), threshold_high=5, padding=1)
    _, out, _, _ = _run((big,), [(0, 0, 0, 0, 0)])
    assert out == [(0, 0, f, y, x) for y in range(2) for x in range(2) for f in range(2)]


def test_out_of_range_routed_spikes_are_dropped_and_counted() -> None:
    """A 3×3 output pooled by 2 into a 1×1 input: only neuron (0, 0) gets through."""
    src = CoreLayer("src", (1, 3, 3), np.full((1, 1, 3, 3), 10, np.int8), threshold_high=5, padding=1,
                    destinations=(Destination(1, pooling=2),))  # fmt: skip
    sink = CoreLayer("sink", (1, 1, 1), np.full((1, 1, 1, 1), 10, np.int8), threshold_high=5)
    _, out, counts, _ = _run((src, sink), [(0, 0, 0, 1, 1)])
    assert sum(r[1] == 0 for r in out) == 9 and sum(r[1] == 1 for r in out) == 4
    assert counts.routed.tolist() == [9, 0] and counts.dropped.tolist() == [5, 0]
    _, _, counts, _ = _run((src, sink), [(0, 0, 0, 3, 0), (0, 5, 0, 0, 0), (0, 0, 1, 0, 0)])
    assert counts.dropped_inputs == 3 and counts.synops.sum() == 0


def test_step_is_pure() -> None:
    params = build_params(ChipConfig(layers=(_one(3, 10, 5),)))
    state = init_state(params)
    before = state.v.copy()
    new, _, _ = step(state, _events((0, 0, 0, 0, 0)), params)
    assert np.array_equal(state.v, before) and not np.array_equal(new.v, before)


def test_an_input_beyond_the_output_reserve_raises_and_leaves_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_OUTPUTS_PER_INPUT", 4)
    big = CoreLayer("big", (1, 2, 2), np.full((2, 1, 2, 2), 10, np.int8), threshold_high=5, padding=1)
    params = build_params(ChipConfig(layers=(big,)))
    state = init_state(params)
    with pytest.raises(ValueError, match="MAX_OUTPUTS_PER_INPUT"):
        step(state, _events((0, 0, 0, 0, 0)), params)
    assert not state.v.any()


def test_output_buffer_grows_between_events() -> None:
    """Every input fires 8 rows, 4× the initial reserve per input: the kernel resumes after growing."""
    big = CoreLayer("big", (1, 2, 2), np.full((2, 1, 2, 2), 10, np.int8), threshold_high=5, padding=1)
    config = ChipConfig(layers=(big,))
    rows = [(t, 0, 0, 0, 0) for t in range(50)]
    _, out, _, _ = _run((big,), rows)
    ref = Reference(config)
    ref.run(rows)
    assert len(out) == 400 and out == ref.out


@njit(cache=True)
def _sat_add_table(a: npt.NDArray[np.int16], b: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    out = np.empty((a.shape[0], b.shape[0]), np.int16)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i, j] = sat_add16(a[i], b[j])
    return out


def test_sat_add16_saturates_every_state_and_weight() -> None:
    states = np.arange(STATE_MIN, STATE_MAX + 1, dtype=np.int16)
    weights = np.arange(-128, 128, dtype=np.int16)  # every int8 weight, as the kernel widens it
    expected = np.clip(states.astype(np.int64)[:, None] + weights[None, :], STATE_MIN, STATE_MAX)
    assert np.array_equal(_sat_add_table(states, weights), expected)
