"""Readout core: address → class per mode, erratum, averaging, threshold, argmax, streaming."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.config import ReadoutConfig
from emulator.readout import (
    ADDRESS_SHAPES,
    COUNT_MAX,
    DECISION_DTYPE,
    NO_SPIKE_US,
    ReadoutState,
    cycle_end_us,
    cycle_index,
    new_readout_state,
    readout_step,
    spike_classes,
)
from proto.events import Spikes, empty_spikes

HZ = 1000.0  # 1 ms cycles: cycle c spans [1000c, 1000c + 1000) µs


def spikes(rows: list[tuple[int, int, int, int]]) -> Spikes:
    """Spikes from ``(t_us, channel, x, y)`` rows."""
    out = empty_spikes(len(rows))
    if rows:
        t, c, x, y = zip(*rows, strict=True)
        out["t"], out["channel"], out["x"], out["y"] = t, c, x, y
    return out


def run(rows: list[tuple[int, int, int, int]], cfg: ReadoutConfig, t_end_us: int) -> np.ndarray:
    decisions, _ = readout_step(spikes(rows), new_readout_state(cfg, HZ), cfg, HZ, t_end_us)
    return decisions


def burst(n: int, t_us: int, channel: int) -> list[tuple[int, int, int, int]]:
    return [(t_us, channel, 0, 0)] * n


@pytest.mark.parametrize(
    ("mode", "fxy_class"),
    [
        # mode 0, 2x·2y·4f: address (y·2 + x)·4 + f, class = address + 1
        (0, [((0, 0, 0), 1), ((2, 1, 0), 7), ((1, 0, 1), 10), ((2, 1, 1), 15), ((3, 1, 1), 0), ((0, 2, 0), 0)]),
        # mode 1, 2x·4y·2f: address (y·2 + x)·2 + f
        (1, [((0, 0, 0), 1), ((1, 0, 1), 6), ((0, 1, 3), 15), ((1, 1, 3), 0), ((2, 0, 0), 0), ((0, 0, 4), 0)]),
        # mode 2, 4x·4y·1f: address y·4 + x
        (2, [((0, 0, 0), 1), ((0, 3, 2), 12), ((0, 2, 3), 15), ((0, 3, 3), 0), ((1, 0, 0), 0), ((0, 4, 0), 0)]),
        # mode 3, 1x·1y·16f: address f
        (3, [((0, 0, 0), 1), ((7, 0, 0), 8), ((14, 0, 0), 15), ((15, 0, 0), 0), ((16, 0, 0), 0), ((0, 1, 0), 0)]),
    ],
)
def test_address_modes_map_to_the_documented_classes(
    mode: int, fxy_class: list[tuple[tuple[int, int, int], int]]
) -> None:
    rows = [(0, f, x, y) for (f, x, y), _ in fxy_class]
    got = spike_classes(spikes(rows), ReadoutConfig(address_mode=mode))
    assert got.tolist() == [k for _, k in fxy_class]


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_each_mode_decides_its_class_per_cycle(mode: int) -> None:
    # cycle 0: 2 spikes at class 15's address and 1 at class 1's; cycle 1: nothing; cycle 2: class 1 only
    nx, _, nf = ADDRESS_SHAPES[mode]
    a = 14  # address of class 15: (y·nx + x)·nf + f
    f, x, y = a % nf, (a // nf) % nx, a // nf // nx
    rows = [(10, f, x, y), (20, 0, 0, 0), (999, f, x, y), (2500, 0, 0, 0)]
    d = run(rows, ReadoutConfig(address_mode=mode), 3000)
    assert d.dtype == DECISION_DTYPE
    assert d["t"].tolist() == [1000, 2000, 3000]
    assert d["cycle"].tolist() == [0, 1, 2]
    assert d["class_index"].tolist() == [15, 0, 1]
    assert d["value"].tolist() == [2, 0, 1]
    assert d["passed"].tolist() == [True, False, True]
    assert d["t_first"].tolist() == [10, NO_SPIKE_US, 2500]


def test_erratum_maps_channel_4k_minus_4_to_class_k_and_drops_the_rest() -> None:
    rows = [(0, c, 0, 0) for c in (0, 4, 8, 56, 60, 1, 5, 3)]
    on = ReadoutConfig(address_mode=3, channel_erratum=True)
    assert spike_classes(spikes(rows), on).tolist() == [1, 2, 3, 15, 0, 0, 0, 0]
    off = ReadoutConfig(address_mode=3)
    assert spike_classes(spikes(rows), off).tolist() == [1, 5, 9, 0, 0, 2, 6, 4]


def test_erratum_changes_the_decision() -> None:
    rows = burst(3, 100, 4) + burst(2, 200, 1)
    assert run(rows, ReadoutConfig(channel_erratum=True), 1000)["class_index"].tolist() == [2]  # ch 1 dropped
    assert run(rows, ReadoutConfig(channel_erratum=False), 1000)["class_index"].tolist() == [5]


def test_erratum_has_no_effect_outside_mode_3() -> None:
    rows = [(0, f, x, y) for f in range(5) for x in range(3) for y in range(3)]
    for mode in (0, 1, 2):
        on = spike_classes(spikes(rows), ReadoutConfig(address_mode=mode, channel_erratum=True))
        assert np.array_equal(on, spike_classes(spikes(rows), ReadoutConfig(address_mode=mode)))


def test_address_shapes_follow_the_config() -> None:
    assert ADDRESS_SHAPES == {0: (2, 2, 4), 1: (2, 4, 2), 2: (4, 4, 1), 3: (1, 1, 16)}


def test_average_16_is_a_boxcar_over_the_last_16_cycles() -> None:
    # class 2 (ch 1): 16 spikes in cycle 0; class 3 (ch 2): 32 spikes in cycle 1
    rows = burst(16, 500, 1) + burst(32, 1500, 2)
    d = run(rows, ReadoutConfig(average=16), 19_000)
    expected = [(2, 1)] + [(3, 2)] * 16 + [(0, 0)] * 2  # cycles 0, 1–16, 17–18
    assert list(zip(d["class_index"].tolist(), d["value"].tolist(), strict=True)) == expected


def test_average_32_floors_the_mean() -> None:
    rows = burst(31, 0, 0) + burst(33, 1000, 1) + burst(31, 1000, 2)
    d = run(rows, ReadoutConfig(average=32), 34_000)
    # cycle 0: class 1 at 31 // 32 = 0 → no class; cycles 1–32 (while cycle 1 is in the window):
    # class 2 at 33 // 32 = 1 beats class 1 and 3 at 31 // 32 = 0; cycle 33: nothing left
    assert d["class_index"].tolist() == [0] + [2] * 32 + [0]
    assert d["value"].tolist() == [0] + [1] * 32 + [0]


def test_average_1_is_the_cycle_count() -> None:
    rows = burst(5, 10, 3) + burst(7, 1010, 9)
    d = run(rows, ReadoutConfig(average=1), 3000)
    assert d["class_index"].tolist() == [4, 10, 0]
    assert d["value"].tolist() == [5, 7, 0]


def test_threshold_is_reached_at_equality() -> None:
    rows = burst(2, 0, 0) + burst(3, 1000, 0) + burst(4, 2000, 0)
    d = run(rows, ReadoutConfig(threshold=3), 3000)
    assert d["class_index"].tolist() == [1, 1, 1]  # the class is reported either way
    assert d["passed"].tolist() == [False, True, True]


def test_ties_go_to_the_lowest_class() -> None:
    rows = burst(3, 0, 9) + burst(3, 0, 4) + burst(2, 0, 1)
    assert run(rows, ReadoutConfig(), 1000)["class_index"].tolist() == [5]


def test_counts_saturate_at_16_bits_across_batches() -> None:
    cfg = ReadoutConfig()
    state = new_readout_state(cfg, HZ)
    for _ in range(2):
        d, state = readout_step(spikes(burst(40_000, 5, 0)), state, cfg, HZ, 500)
        assert len(d) == 0
    assert int(state.counts[0]) == COUNT_MAX
    d, _ = readout_step(spikes([]), state, cfg, HZ, 1000)
    assert d["value"].tolist() == [COUNT_MAX]


def test_cycles_follow_event_time_at_a_non_integer_period() -> None:
    assert cycle_index(333_333, 3.0) == 0 and cycle_index(333_334, 3.0) == 1
    assert cycle_end_us(0, 3.0) == 333_334
    cfg = ReadoutConfig()
    d, state = readout_step(spikes([]), new_readout_state(cfg, 3.0), cfg, 3.0, 1_000_000)
    assert d["t"].tolist() == [333_334, 666_667, 1_000_000]
    assert state.cycle == 3


def test_the_first_cycle_is_the_start_times() -> None:
    cfg = ReadoutConfig()
    state = new_readout_state(cfg, HZ, t_start_us=5_500)
    d, _ = readout_step(spikes([(5_600, 0, 0, 0)]), state, cfg, HZ, 7_000)
    assert d["cycle"].tolist() == [5, 6] and d["class_index"].tolist() == [1, 0]


def test_bad_batches_are_refused() -> None:
    cfg = ReadoutConfig()
    _, state = readout_step(spikes([]), new_readout_state(cfg, HZ), cfg, HZ, 2_000)
    with pytest.raises(ValueError, match="completed cycle"):
        readout_step(spikes([(1_500, 0, 0, 0)]), state, cfg, HZ, 3_000)
    with pytest.raises(ValueError, match="t_end_us"):
        readout_step(spikes([(3_001, 0, 0, 0)]), state, cfg, HZ, 3_000)
    with pytest.raises(ValueError, match="before the cycle"):
        readout_step(spikes([]), state, cfg, HZ, 1_000)
    with pytest.raises(ValueError, match="average"):
        readout_step(spikes([]), state, ReadoutConfig(average=16), HZ, 3_000)


def test_readout_step_does_not_mutate_its_inputs() -> None:
    cfg = ReadoutConfig(average=16)
    state = new_readout_state(cfg, HZ)
    s = spikes(burst(3, 10, 0))
    before = (s.copy(), state.counts.copy(), state.history.copy())
    readout_step(s, state, cfg, HZ, 5_000)
    assert np.array_equal(s, before[0]) and np.array_equal(state.counts, before[1])
    assert np.array_equal(state.history, before[2])


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    average=st.sampled_from([1, 16, 32]),
    mode=st.integers(0, 3),
    threshold=st.integers(0, 5),
    n=st.integers(0, 300),
)
def test_streaming_equals_whole(data: st.DataObject, average: int, mode: int, threshold: int, n: int) -> None:
    cfg = ReadoutConfig(address_mode=mode, average=average, threshold=threshold)
    hz = data.draw(st.sampled_from([1000.0, 3.0, 250.0, 7777.7]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    t_end = int(rng.integers(1, 200_000))
    rows = sorted(
        (int(t), int(c), int(x), int(y))
        for t, c, x, y in zip(
            rng.integers(0, t_end, n), rng.integers(0, 17, n), rng.integers(0, 5, n), rng.integers(0, 5, n), strict=True
        )
    )
    whole, whole_state = readout_step(spikes(rows), new_readout_state(cfg, hz), cfg, hz, t_end)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, t_end), max_size=6))) | {t_end})
    state, parts, lo = new_readout_state(cfg, hz), [], 0
    for cut in cuts:
        if cut < lo:
            continue
        batch = [r for r in rows if lo <= r[0] < cut]
        d, state = readout_step(spikes(batch), state, cfg, hz, cut)
        parts.append(d)
        lo = cut
    streamed = np.concatenate(parts)
    assert np.array_equal(streamed, whole)
    assert len(whole) == cycle_index(t_end, hz)
    assert_same_state(state, whole_state)


def assert_same_state(a: ReadoutState, b: ReadoutState) -> None:
    assert a.cycle == b.cycle and a.t_first_us == b.t_first_us
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.history, b.history)


@pytest.mark.parametrize("hz", [1000.0, 3.0, 7777.7])
@pytest.mark.parametrize("average", [1, 16, 32])
def test_quiet_shortcut_decides_like_the_counting_step(hz: float, average: int) -> None:
    from emulator.readout import _counting_step

    cfg = ReadoutConfig(address_mode=3, average=average, threshold=0)
    state = new_readout_state(cfg, hz, 12_345)
    for t_end in (12_345, 13_000, 99_999, 1_000_000):  # same cycle, one, many cycles later
        end_cycle = cycle_index(t_end, hz)
        fast, fast_state = readout_step(empty_spikes(0), state, cfg, hz, t_end)
        slow, slow_state = _counting_step(empty_spikes(0), state, cfg, hz, t_end, end_cycle)
        assert len(fast) == end_cycle - state.cycle and np.array_equal(fast, slow)
        assert_same_state(fast_state, slow_state)
        state = fast_state


@pytest.mark.parametrize("average", [1, 16, 32])
def test_a_long_gap_after_spikes_decides_like_the_dense_count(average: int) -> None:
    """Counting stops ``average`` + 1 cycles after the last spike and the rest is decided as quiet:
    the same decisions and state as counting every cycle of the gap."""
    from emulator.readout import _counting_step

    hz = 1000.0
    cfg = ReadoutConfig(address_mode=3, average=average, threshold=0)
    rows = [(t, c, 0, 0) for t, c in ((1_200, 2), (1_900, 2), (2_500, 5), (40_000, 5))]
    state = new_readout_state(cfg, hz, 1_000)
    state = readout_step(spikes(rows[:2]), state, cfg, hz, 2_000)[1]
    assert state.history.any() or state.counts.any()  # not the quiet shortcut's case
    for batch, t_end in ((rows[2:], 900_000), ([], 5_000_000)):
        end_cycle = cycle_index(t_end, hz)
        got, got_state = readout_step(spikes(batch), state, cfg, hz, t_end)
        want, want_state = _counting_step(spikes(batch), state, cfg, hz, t_end, end_cycle)
        assert np.array_equal(got, want) and len(got) == end_cycle - state.cycle
        assert_same_state(got_state, want_state)
        state = got_state
