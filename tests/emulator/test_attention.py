"""The attention input mask: a plain-Python reference, streaming = whole, causality, edge cases."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.attention import (
    EventRateScorer,
    MaskCounts,
    MaskParams,
    MaskState,
    TemporalAttentionScorer,
    init_mask_state,
    mask_step,
)
from proto.events import Events, concat_events, make_events

WIDTH, HEIGHT = 16, 16
SMALL = MaskParams(window_us=100, mask_ratio=0.5, history=4, frame_shape=(2, 4, 4))
"""Small frames and windows so equal scores (the tie rule) and gaps are common."""


def stream(seed: int, n_windows: int = 60, t0: int = 0, window_us: int = 100, max_rate: int = 12) -> Events:
    """Random time-ordered events: per window a random count (often 0), random pixels and times."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, max_rate, n_windows) * (rng.random(n_windows) < 0.8)
    t = np.concatenate([np.sort(rng.integers(0, window_us, c)) + t0 + k * window_us for k, c in enumerate(counts)])
    n = len(t)
    return make_events(t, rng.integers(0, WIDTH, n), rng.integers(0, HEIGHT, n), rng.integers(0, 2, n))


def run(
    events: Events, params: MaskParams, cuts: tuple[int, ...] = (), t0: int = 0
) -> tuple[MaskState, Events, MaskCounts]:
    """Feed ``events`` split at ``cuts``; the final state, all kept events, and the summed counts."""
    state = init_mask_state(params, t0, WIDTH, HEIGHT)
    kept, totals = [], np.zeros(4, np.int64)
    for part in np.split(events, list(cuts)):
        state, out, counts = mask_step(state, part, params, EventRateScorer())
        kept.append(out)
        totals += counts
    return state, concat_events(kept), MaskCounts(*(int(v) for v in totals))


def reference(events: Events, params: MaskParams, t0: int = 0) -> npt.NDArray[np.bool_]:
    """Keep flag per event, straight from the module docstring (whole-stream features, no gap cap)."""
    c, h, w = params.frame_shape
    win = [(int(t) - t0) // params.window_us for t in events["t"]]
    cells: dict[int, Counter[tuple[int, int, int]]] = {}
    for k, x, y, p in zip(win, events["x"], events["y"], events["p"]):
        cell = (min(int(p), 1) if c == 2 else 0, int(y) * h // HEIGHT, int(x) * w // WIDTH)
        cells.setdefault(k, Counter())[cell] += 1

    def features(k: int) -> list[float]:
        counts = cells.get(k, Counter())
        return [sum(counts.values()) / (c * h * w), float(max(counts.values(), default=0))]

    scores: list[float] = []
    kept: list[bool] = []
    decision: dict[int, bool] = {}
    ratio, n_hist = params.mask_ratio, params.history
    for k in sorted(cells):
        history = np.array([features(j) for j in range(k - n_hist, k)])
        s = EventRateScorer().score(history)
        prev, prev_kept = scores[-n_hist:], kept[-n_hist:]
        if ratio in (0.0, 1.0) or not prev:
            keep = ratio != 1.0
        else:
            q = np.quantile(prev, ratio)
            keep = bool(s > q or (s == q and sum(prev_kept) / len(prev_kept) < 1.0 - ratio))
        scores.append(s)
        kept.append(keep)
        decision[k] = keep
    return np.array([decision[k] for k in win], np.bool_)


def same(a: Events, b: Events) -> bool:
    """Equal events, field by field (padding bytes aside)."""
    return len(a) == len(b) and all(np.array_equal(a[name], b[name]) for name in ("t", "x", "y", "p"))


def window_keeps(events: Events, kept: Events, params: MaskParams, t0: int = 0) -> dict[int, bool]:
    """Per window with events: whether its events were kept (all or none of them)."""
    kin = (events["t"].astype(np.int64) - t0) // params.window_us
    kout = set(((kept["t"].astype(np.int64) - t0) // params.window_us).tolist())
    return {int(k): int(k) in kout for k in np.unique(kin)}


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.3, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("history", [1, 3, 8])
@pytest.mark.parametrize("seed", range(4))
def test_matches_reference(ratio: float, history: int, seed: int) -> None:
    params = MaskParams(window_us=100, mask_ratio=ratio, history=history, frame_shape=(2, 4, 4))
    events = stream(seed, t0=250)
    _, kept, counts = run(events, params, t0=250)
    assert same(kept, events[reference(events, params, t0=250)])
    assert counts.events_in == len(events) == len(kept) + counts.events_masked


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 400), max_size=12),
    ratio=st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0]),
    channels=st.sampled_from([1, 2]),
)
def test_batch_split_invariance(seed: int, cuts: list[int], ratio: float, channels: int) -> None:
    params = MaskParams(window_us=100, mask_ratio=ratio, history=5, frame_shape=(channels, 3, 5))
    events = stream(seed)
    whole_state, whole, whole_counts = run(events, params)
    split_state, split, split_counts = run(events, params, tuple(sorted(min(c, len(events)) for c in cuts)))
    assert same(split, whole)
    assert split_counts == whole_counts
    for name in MaskState._fields:
        assert np.array_equal(getattr(split_state, name), getattr(whole_state, name)), name


def test_ratio_zero_keeps_all_and_one_drops_all() -> None:
    events = stream(7, n_windows=200)
    for ratio, expect in [(0.0, len(events)), (1.0, 0)]:
        params = MaskParams(window_us=100, mask_ratio=ratio, history=8, frame_shape=(2, 4, 4))
        _, kept, counts = run(events, params, cuts=(50, 51, 300))
        assert len(kept) == expect
        assert counts.windows_masked == (counts.windows if ratio == 1.0 else 0)
        assert counts.events_in == len(kept) + counts.events_masked


def busy_quiet(states: npt.NDArray[np.bool_], seed: int, busy: int = 400, quiet: int = 40) -> Events:
    """One window of 15 ms per state: Poisson(``busy``) or Poisson(``quiet``) events on a 128² sensor."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.where(states, busy, quiet))
    t = np.concatenate([np.sort(rng.integers(0, 15_000, c)) + k * 15_000 for k, c in enumerate(counts)])
    n = len(t)
    return make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))


def mask_windows(events: Events, params: MaskParams) -> npt.NDArray[np.bool_]:
    state = init_mask_state(params, 0, 128, 128)
    _, kept, _ = mask_step(state, events, params, EventRateScorer())
    keeps = window_keeps(events, kept, params)
    return np.array([keeps[k] for k in sorted(keeps)])


KEPT_TOLERANCE = 0.05
"""|kept fraction − (1 − mask_ratio)| bound. The threshold is the ratio-quantile of the previous H = 32
scores, so for a stationary stream P(keep) = 1 − ratio up to the quantile's 1/(H + 1) ≈ 0.03 granularity
(a new score exceeds the linear-interpolated quantile of 32 draws with probability ≈ (32 − 31·ratio)/33 ± 1/66);
the binomial sd over the ≥ 1000 windows used is ≤ 0.016, and the windows are correlated only through
the 32-window history."""
RATIOS = [0.1, 0.25, 0.5, 0.75, 0.9]


@pytest.mark.parametrize("ratio", RATIOS)
def test_alternating_stream(ratio: float) -> None:
    """Busy and quiet windows alternate; scores after busy windows are all above those after quiet
    ones (Poisson 400 vs 40 events), so the quantile picks within one score cluster: every window
    after a busy one is kept when ratio ≤ 1/2, none after a quiet one when ratio ≥ 1/2."""
    n, warm = 1000, MaskParams().history + 1
    states = np.arange(n) % 2 == 0
    keep = mask_windows(busy_quiet(states, seed=1), MaskParams(mask_ratio=ratio))[warm:]
    after_busy = ~states[warm:]  # window k follows a busy window k − 1
    assert abs(keep.mean() - (1.0 - ratio)) < KEPT_TOLERANCE
    if ratio <= 0.5:
        assert keep[after_busy].all()
    if ratio >= 0.5:
        assert not keep[~after_busy].any()


@pytest.mark.parametrize("ratio", RATIOS)
def test_markov_stream_prefers_busy_after_busy(ratio: float) -> None:
    """Busy/quiet as a two-state Markov chain (stay with p = 0.7): the kept fraction still tracks
    1 − ratio, and busy windows following busy ones are kept far more often than those following
    quiet ones (their score is the previous window's rate)."""
    rng = np.random.default_rng(2)
    n = 4000
    states = np.logical_xor.accumulate(rng.random(n) > 0.7)
    keep = mask_windows(busy_quiet(states, seed=3), MaskParams(mask_ratio=ratio))
    assert abs(keep.mean() - (1.0 - ratio)) < KEPT_TOLERANCE
    busy_after_busy, busy_after_quiet = states[1:] & states[:-1], states[1:] & ~states[:-1]
    assert keep[1:][busy_after_busy].mean() > keep[1:][busy_after_quiet].mean() + 0.2


def test_constant_stream_keeps_half() -> None:
    """Identical windows give equal scores; the tie rule alternates keep and drop."""
    one = make_events(np.arange(0, 100, 10), np.arange(10), np.zeros(10), np.ones(10))
    events = concat_events([make_events(one["t"] + k * 100, one["x"], one["y"], one["p"]) for k in range(400)])
    _, _, counts = run(events, SMALL)
    assert counts.windows == 400
    assert abs((counts.windows - counts.windows_masked) / counts.windows - 0.5) <= 1 / SMALL.history


@pytest.mark.parametrize("seed", range(6))
def test_causal(seed: int) -> None:
    """Replacing everything from window k + 1 on never changes what is kept of windows ≤ k."""
    events = stream(seed, n_windows=80)
    rng = np.random.default_rng(seed)
    k = int(rng.integers(0, 80))
    cut = (k + 1) * SMALL.window_us
    past = events[events["t"] < cut]
    future = stream(seed + 1000, n_windows=80 - k - 1, t0=cut, max_rate=int(rng.integers(1, 30)))
    _, kept_a, _ = run(events, SMALL)
    _, kept_b, _ = run(concat_events([past, future]), SMALL)
    assert same(kept_a[kept_a["t"] < cut], kept_b[kept_b["t"] < cut])


def test_counts_add_up_per_step() -> None:
    events = stream(11, n_windows=300)
    state = init_mask_state(SMALL, 0, WIDTH, HEIGHT)
    decided = 0
    for part in np.array_split(events, 17):
        state, kept, counts = mask_step(state, part, SMALL, EventRateScorer())
        assert counts.events_in == len(part) == len(kept) + counts.events_masked
        assert 0 <= counts.windows_masked <= counts.windows
        decided += counts.windows
    assert decided == len(np.unique(events["t"] // SMALL.window_us)) == state.n_decided


def test_windows_are_all_or_nothing_and_order_kept() -> None:
    events = stream(5, n_windows=200)
    _, kept, _ = run(events, SMALL, cuts=(33, 97, 98))
    assert np.all(np.diff(kept["t"].astype(np.int64)) >= 0)
    keeps = window_keeps(events, kept, SMALL)
    per_window = Counter((kept["t"] // SMALL.window_us).tolist())
    total = Counter((events["t"] // SMALL.window_us).tolist())
    assert all(per_window[k] == (total[k] if keep else 0) for k, keep in keeps.items())


def test_long_gap_is_fast_and_leaves_an_empty_history() -> None:
    """10¹⁵ empty windows between two bursts: O(history) work, and the history is all zeros."""
    params = MaskParams(window_us=1, history=16, frame_shape=(2, 4, 4))
    burst = make_events(np.arange(5), np.arange(5), np.arange(5), np.ones(5))
    gap = 10**15
    late = make_events(burst["t"] + gap, burst["x"], burst["y"], burst["p"])
    state = init_mask_state(params, 0, WIDTH, HEIGHT)
    start = time.perf_counter()
    state, _, _ = mask_step(state, burst, params, EventRateScorer())
    state, _, counts = mask_step(state, late[:1], params, EventRateScorer())
    assert time.perf_counter() - start < 1.0  # a per-window loop would not finish at all
    assert counts.windows == 1
    assert not state.features.any()


def test_state_is_not_mutated() -> None:
    events = stream(3)
    state = init_mask_state(SMALL, 0, WIDTH, HEIGHT)
    mid, _, _ = mask_step(state, events[:100], SMALL, EventRateScorer())
    arrays: list[npt.NDArray[np.generic]] = [mid.frame, mid.features, mid.scores, mid.kept]
    copies = [a.copy() for a in arrays]
    mask_step(mid, events[100:], SMALL, EventRateScorer())
    assert all(np.array_equal(a, b) for a, b in zip(copies, arrays))


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("window_us", {"window_us": 0}),
        ("mask_ratio", {"mask_ratio": -0.1}),
        ("mask_ratio", {"mask_ratio": 1.5}),
        ("mask_ratio", {"mask_ratio": float("nan")}),
        ("history", {"history": 0}),
        ("frame_shape", {"frame_shape": (3, 4, 4)}),
        ("frame_shape", {"frame_shape": (2, 0, 4)}),
    ],
)
def test_bad_params_raise(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=field):
        MaskParams(**kwargs)  # type: ignore[arg-type]


def test_bad_events_raise() -> None:
    state = init_mask_state(SMALL, 1000, WIDTH, HEIGHT)
    scorer = EventRateScorer()
    for bad in [
        make_events([1200, 1100], [0, 0], [0, 0], [0, 0]),  # out of order
        make_events([900], [0], [0], [0]),  # before t0
        make_events([1100], [WIDTH], [0], [0]),  # outside the sensor
    ]:
        with pytest.raises(ValueError, match="events"):
            mask_step(state, bad, SMALL, scorer)
    later, _, _ = mask_step(state, make_events([1500], [0], [0], [0]), SMALL, scorer)
    with pytest.raises(ValueError, match="time-ordered"):
        mask_step(later, make_events([1400], [0], [0], [0]), SMALL, scorer)


def test_temporal_attention_scorer() -> None:
    """sigmoid(MLP(avg) + MLP(max)) of the last step: in (0, 1), rising with the recent activity
    when the weights are positive, 1/2 on an empty history; mis-shaped weights are rejected."""
    h, r = 8, 4
    rng = np.random.default_rng(0)
    scorer = TemporalAttentionScorer(rng.random((h // r, h)), rng.random((h, h // r)))
    quiet, busy = np.zeros((h, 2)), np.zeros((h, 2))
    busy[-1] = [0.5, 3.0]
    assert scorer.score(quiet) == 0.5
    assert 0.5 < scorer.score(busy) < 1.0
    with pytest.raises(ValueError, match="w2"):
        TemporalAttentionScorer(rng.random((2, h)), rng.random((2, h)))
    params = MaskParams(window_us=100, history=h, frame_shape=(2, 4, 4))
    events = stream(9)
    _, kept, counts = mask_step(init_mask_state(params, 0, WIDTH, HEIGHT), events, params, scorer)
    assert counts.events_in == len(kept) + counts.events_masked
