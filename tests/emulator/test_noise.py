"""The noise filter: hand-made sequences, a plain-Python reference, streaming = whole."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.config import NoiseFilter
from emulator.noise import FilterState, copy_state, hot_pixel_limits, init_filter_state, noise_filter, ticks
from proto.events import Events, concat_events, event_words, make_events

HZ = 1000  # 1 tick = 1000 µs


def reference(rows: list[tuple[int, int, int, int]], cfg: NoiseFilter, hz: int, width: int, height: int) -> list[bool]:
    """Keep flags, one event at a time, straight from the module docstring (unbounded ticks)."""
    last: dict[tuple[int, int], int] = {}
    block: dict[tuple[int, int], int] = {}
    count: dict[tuple[int, int], int] = {}
    prev: dict[tuple[int, int], int] = {}
    block_ticks, max_events = hot_pixel_limits(hz)
    r = cfg.window // 2

    def age(pix: tuple[int, int], now: int) -> float:
        return max(now - last[pix], 0) if pix in last else math.inf

    keeps = []
    for t, x, y, _ in rows:
        now, pix = t * hz // 1_000_000, (y, x)
        near = [(yy, xx) for yy in range(y - r, y + r + 1) for xx in range(x - r, x + r + 1)]
        recent = any(age(q, now) < cfg.threshold for q in near if 0 <= q[0] < height and 0 <= q[1] < width)
        if cfg.mode == "none":
            keep, stamp = True, False
        elif cfg.mode == "low_pass":
            keep = stamp = age(pix, now) >= cfg.threshold
        elif cfg.mode == "neighbourhood":
            keep, stamp = recent, True
        else:  # hot_pixel
            b = now // block_ticks
            if b > block.get(pix, -1):
                prev[pix] = count.get(pix, 0) if b == block.get(pix, -10) + 1 else 0
                count[pix], block[pix] = 0, b
            count[pix] += 1
            stamp = count[pix] <= max_events and prev[pix] <= max_events
            keep = stamp and recent
        if stamp:
            last[pix] = max(last.get(pix, now), now)
        keeps.append(keep)
    return keeps


def same_state(a: FilterState, b: FilterState) -> bool:
    return all(np.array_equal(getattr(a, name), getattr(b, name)) for name in FilterState._fields)


def rows_of(events: Events) -> list[tuple[int, int, int, int]]:
    return [(int(e["t"]), int(e["x"]), int(e["y"]), int(e["p"])) for e in events]


def run(events: Events, cfg: NoiseFilter, hz: int = HZ, width: int = 8, height: int = 8) -> list[bool]:
    """Keep flags of one call from a fresh state (events must have distinct times to map back)."""
    kept, _, dropped = noise_filter(events, init_filter_state(width, height), cfg, hz, width, height)
    assert dropped == len(events) - len(kept)
    kept_t = set(kept["t"].tolist())
    return [int(t) in kept_t for t in events["t"]]


def test_neighbourhood_hand_made() -> None:
    cfg = NoiseFilter(mode="neighbourhood", threshold=2, window=3)
    t = [0, 1000, 5000, 5999, 6000, 7000, 7001, 7002]
    x = [3, 4, 3, 3, 5, 6, 7, 0]
    y = [3, 4, 3, 3, 5, 6, 7, 0]
    # no history; (3,3) 1 tick ago; all ≥ 4 ticks old; itself 0 ticks ago; (3,3) is 2 pixels away;
    # (5,5) 1 tick ago; corner (7,7) clipped, (6,6) 0 ticks ago; corner (0,0), nothing near
    assert run(make_events(t, x, y, [1] * 8), cfg) == [False, True, False, True, False, True, True, False]


def test_low_pass_hand_made() -> None:
    cfg = NoiseFilter(mode="low_pass", threshold=3)
    t = [0, 1000, 2999, 3000, 3500, 5999, 6000]
    x = [2, 2, 2, 2, 3, 2, 2]
    # only passed events stamp: 3000 is 3 ticks after 0 (not after the dropped 2999) and passes
    assert run(make_events(t, x, [2] * 7, [0, 1, 0, 1, 0, 1, 0]), cfg) == [True, False, False, True, True, False, True]


def test_hot_pixel_hand_made() -> None:
    assert hot_pixel_limits(HZ) == (100, 5)  # 5 events per 100 ms = 50 Hz
    cfg = NoiseFilter(mode="hot_pixel", threshold=1000, window=1)
    ticks_ = [0, 1, 2, 3, 4, 5, 6, 100, 200, 400]
    keep = run(make_events(np.array(ticks_) * 1000, [1] * 10, [1] * 10, [1] * 10), cfg)
    # first: nothing recent; 2nd–5th pass; 6th, 7th over 5 per block; tick 100: the block before had 7;
    # tick 200: the block before had 1; tick 400: the block before (300–399) was empty
    assert keep == [False, True, True, True, True, False, False, False, True, True]


def test_hot_pixel_does_not_support_neighbours() -> None:
    cfg = NoiseFilter(mode="hot_pixel", threshold=5, window=3)
    t = [k * 1000 for k in range(8)] + [10_000]
    x = [1] * 8 + [2]
    # the hot pixel's 6th–8th events (ticks 5–7) are blocked and do not stamp: its last stamp is
    # tick 4, 6 ticks before the neighbour's event at tick 10 → dropped
    keep = run(make_events(t, x, [1] * 9, [1] * 9), cfg)
    assert keep == [False, True, True, True, True, False, False, False, False]


def test_none_passes_all() -> None:
    events = make_events([0, 1, 2], [0, 0, 0], [0, 0, 0], [1, 0, 1])
    state = init_filter_state(4, 4)
    kept, new_state, dropped = noise_filter(events, state, NoiseFilter(), HZ, 4, 4)
    assert np.array_equal(event_words(kept), event_words(events)) and dropped == 0
    assert new_state is state


def test_ticks_exact_for_large_times() -> None:
    t = np.array([0, 999, 1000, 1_700_000_000_123_456, 2**63 + 12345], dtype=np.uint64)
    for hz in (1, 7, 1000, 10_000):
        assert ticks(t, hz).tolist() == [int(v) * hz // 1_000_000 for v in t]


@st.composite
def streams(draw: st.DrawFn) -> tuple[Events, NoiseFilter, int, int, int]:
    width, height = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    n = draw(st.integers(0, 150))
    dts = draw(st.lists(st.integers(0, 40_000), min_size=n, max_size=n))
    xs = draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n))
    t0 = draw(st.integers(0, 10**9))
    events = make_events(t0 + np.cumsum(dts, dtype=np.uint64), xs, ys, [1] * n)
    cfg = NoiseFilter(
        mode=draw(st.sampled_from(("none", "neighbourhood", "low_pass", "hot_pixel"))),
        threshold=draw(st.integers(1, 8)),
        window=draw(st.sampled_from((1, 3, 5))),
    )
    return events, cfg, draw(st.sampled_from((10, 100, 1000))), width, height


@settings(max_examples=400, deadline=None)
@given(streams())
def test_matches_reference(case: tuple[Events, NoiseFilter, int, int, int]) -> None:
    events, cfg, hz, width, height = case
    kept, _, dropped = noise_filter(events, init_filter_state(width, height), cfg, hz, width, height)
    keeps = reference(rows_of(events), cfg, hz, width, height)
    assert np.array_equal(event_words(kept), event_words(events)[np.array(keeps, dtype=bool)])
    assert dropped == keeps.count(False)


@pytest.mark.parametrize("mode", ["neighbourhood", "low_pass", "hot_pixel"])
def test_matches_reference_large(mode: str) -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    events = make_events(np.sort(rng.integers(0, 2_000_000, n)), rng.integers(0, 16, n), rng.integers(0, 12, n), 1)
    cfg = NoiseFilter(mode=mode, threshold=5, window=3)  # type: ignore[arg-type]
    kept, _, _ = noise_filter(events, init_filter_state(16, 12), cfg, HZ, 16, 12)
    keeps = np.array(reference(rows_of(events), cfg, HZ, 16, 12), dtype=bool)
    assert 0 < keeps.sum() < n
    assert np.array_equal(event_words(kept), event_words(events)[keeps])


@settings(max_examples=200, deadline=None)
@given(streams(), st.lists(st.integers(0, 150), max_size=5))
def test_streaming_equals_whole(case: tuple[Events, NoiseFilter, int, int, int], cuts: list[int]) -> None:
    events, cfg, hz, width, height = case
    whole, whole_state, whole_dropped = noise_filter(events, init_filter_state(width, height), cfg, hz, width, height)
    state, parts, dropped = init_filter_state(width, height), [], 0
    bounds = [0, *sorted(min(c, len(events)) for c in cuts), len(events)]
    for a, b in itertools.pairwise(bounds):
        kept, state, d = noise_filter(events[a:b], state, cfg, hz, width, height)
        parts.append(kept)
        dropped += d
    assert np.array_equal(event_words(concat_events(parts)), event_words(whole))
    assert dropped == whole_dropped
    assert same_state(state, whole_state)


def test_state_persists_and_is_not_mutated() -> None:
    cfg = NoiseFilter(mode="neighbourhood", threshold=2, window=3)
    state0 = init_filter_state(4, 4)
    snapshot = copy_state(state0)
    kept, state1, _ = noise_filter(make_events([0], [1], [1], [1]), state0, cfg, HZ, 4, 4)
    assert len(kept) == 0
    assert same_state(state0, snapshot)
    kept, _, _ = noise_filter(make_events([1000], [2], [2], [1]), state1, cfg, HZ, 4, 4)
    assert len(kept) == 1  # supported by the event of the previous batch


@pytest.mark.parametrize(
    ("hz", "x", "field"), [(1000.5, 0, "slow_clock_hz"), (0, 0, "slow_clock_hz"), (HZ, 4, "events")]
)
def test_rejects_bad_input(hz: float, x: int, field: str) -> None:
    events = make_events([0], [x], [0], [1])
    with pytest.raises(ValueError, match=field):
        noise_filter(events, init_filter_state(4, 4), NoiseFilter(mode="low_pass"), hz, 4, 4)
