"""Windowing and pacing of the replay: pure functions, fake clock, no sleeps."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.events import EVENT_DTYPE, make_events
from services.pacing import Pacer, check_speed, windows


def _events(ts: list[int]) -> np.ndarray:
    n = len(ts)
    return make_events(ts, np.zeros(n), np.zeros(n), np.ones(n))


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 5000), min_size=1, max_size=300),
    window=st.integers(1, 3000),
    cuts=st.lists(st.integers(0, 300), max_size=6),
)
def test_windows_partition_the_stream(gaps: list[int], window: int, cuts: list[int]) -> None:
    ts = np.cumsum(gaps).tolist()
    ev = _events(ts)
    bounds = sorted({0, len(ev), *[min(c, len(ev)) for c in cuts]})
    chunks = [ev[a:b] for a, b in itertools.pairwise(bounds)]
    out = list(windows(chunks, window))
    # nothing lost, nothing duplicated, order kept
    np.testing.assert_array_equal(np.concatenate([w.events for w in out]), ev)
    t0 = ts[0]
    for w in out:
        assert len(w.events) > 0
        assert w.end_us - w.start_us == window
        assert (w.start_us - t0) % window == 0
        assert w.start_us <= int(w.events["t"].min()) and int(w.events["t"].max()) < w.end_us
    starts = [w.start_us for w in out]
    assert starts == sorted(set(starts))


def test_backwards_timestamps_are_kept_sorted_and_counted() -> None:
    out = list(windows([_events([100, 250, 240, 400, 90, 420])], 100))
    # a backwards event stays in the window being filled (never lost) and the window is sorted
    assert [w.events["t"].tolist() for w in out] == [[100], [240, 250], [90, 400, 420]]
    assert [w.reordered for w in out] == [0, 1, 1]
    assert all(w.events.dtype == EVENT_DTYPE for w in out)


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_us"):
        list(windows([_events([1])], 0))


def test_pacer_maps_event_time_without_drift() -> None:
    pacer = Pacer(start_ns=5_000, t0_us=1_000, speed=20.0)
    assert pacer.due_ns(1_000) == 5_000
    # an hour of event time at 20x is exactly 180 s of wall time: no accumulated rounding
    assert pacer.due_ns(1_000 + 3600 * 10**6) == 5_000 + 180 * 10**9


@pytest.mark.parametrize("speed", [0.0, 0.09, 1000.1, -1.0])
def test_speed_out_of_range_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        check_speed(speed)


@pytest.mark.parametrize("speed", [None, 0.1, 1.0, 1000.0])
def test_speed_in_range_is_kept(speed: float | None) -> None:
    assert check_speed(speed) == speed
