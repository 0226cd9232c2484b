"""The pre-processing core against a plain-Python reference, plus property checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.config import DvsConfig
from emulator.dvs import DvsCounts, output_shape, preprocess
from proto.events import EVENT_DTYPE, Events, event_words, make_events

Row = tuple[int, int, int, int]


def reference(rows: list[Row], cfg: DvsConfig) -> tuple[list[Row], DvsCounts]:
    """One event at a time, straight from the module docstring."""
    ph, pw = -(-cfg.height // cfg.pooling_y), -(-cfg.width // cfg.pooling_x)
    y0, x0, y1, x1 = cfg.roi if cfg.roi is not None else (0, 0, ph - 1, pw - 1)
    out: list[Row] = []
    n_pol = n_roi = 0
    for t, x, y, p in rows:
        if (cfg.polarity == "on" and p != 1) or (cfg.polarity == "off" and p != 0):
            n_pol += 1
            continue
        if cfg.polarity == "merge":
            p = 0
        x, y = x // cfg.pooling_x, y // cfg.pooling_y
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            n_roi += 1
            continue
        x, y = x - x0, y - y0
        if cfg.mirror_x:
            x = (x1 - x0) - x
        if cfg.mirror_y:
            y = (y1 - y0) - y
        if cfg.swap_xy:
            x, y = y, x
        out.append((t, x, y, p))
    return out, DvsCounts(n_pol, n_roi)


def rows_of(events: Events) -> list[Row]:
    return [(int(e["t"]), int(e["x"]), int(e["y"]), int(e["p"])) for e in events]


@st.composite
def cases(draw: st.DrawFn) -> tuple[DvsConfig, Events]:
    width, height = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    px, py = draw(st.sampled_from((1, 2, 4))), draw(st.sampled_from((1, 2, 4)))
    ph, pw = -(-height // py), -(-width // px)
    roi = None
    if draw(st.booleans()):
        ya, yb = sorted(draw(st.lists(st.integers(0, ph - 1), min_size=2, max_size=2)))
        xa, xb = sorted(draw(st.lists(st.integers(0, pw - 1), min_size=2, max_size=2)))
        roi = (ya, xa, yb, xb)
    cfg = DvsConfig(
        width=width,
        height=height,
        polarity=draw(st.sampled_from(("on", "off", "merge", "both"))),
        pooling_x=px,
        pooling_y=py,
        roi=roi,
        mirror_x=draw(st.booleans()),
        mirror_y=draw(st.booleans()),
        swap_xy=draw(st.booleans()),
    )
    n = draw(st.integers(0, 60))
    dts = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    xs = draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n))
    ps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return cfg, make_events(np.cumsum(dts, dtype=np.uint64), xs, ys, ps)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_matches_reference(case: tuple[DvsConfig, Events]) -> None:
    cfg, events = case
    out, counts = preprocess(events, cfg)
    expected, expected_counts = reference(rows_of(events), cfg)
    assert rows_of(out) == expected
    assert counts == expected_counts


@settings(max_examples=200, deadline=None)
@given(cases())
def test_properties(case: tuple[DvsConfig, Events]) -> None:
    cfg, events = case
    before = rows_of(events)
    out, counts = preprocess(events, cfg)
    assert out.dtype == EVENT_DTYPE
    assert not np.shares_memory(out, events)
    assert rows_of(events) == before  # input untouched
    assert len(out) + counts.polarity + counts.roi == len(events)
    assert np.all(np.diff(out["t"].astype(np.int64)) >= 0)  # time order kept
    assert set(out["t"].tolist()) <= set(events["t"].tolist())  # output ⊆ transformed input
    c, h, w = output_shape(cfg)
    assert np.all(out["x"] < w) and np.all(out["y"] < h) and np.all(out["p"] < c)
    assert np.all(event_words(out)[:, 1] >> np.uint64(40) == 0)  # padding zeroed


def test_hand_made() -> None:
    cfg = DvsConfig(width=8, height=8, polarity="on", pooling_x=2, pooling_y=2, roi=(1, 0, 2, 2), mirror_x=True)
    events = make_events([1, 2, 3, 4, 5], [0, 5, 7, 2, 3], [2, 5, 0, 3, 2], [1, 1, 1, 0, 1])
    out, counts = preprocess(events, cfg)
    # pooled (x, y): (0, 1), (2, 2), (3, 0) outside the ROI, OFF dropped, (1, 1); shifted by y0 = 1,
    # then mirrored over the ROI's 3 columns: x → 2 − x
    assert rows_of(out) == [(1, 2, 0, 1), (2, 0, 1, 1), (5, 1, 0, 1)]
    assert counts == DvsCounts(polarity=1, roi=1)


@pytest.mark.parametrize(
    ("cfg", "shape"),
    [
        (DvsConfig(), (2, 128, 128)),
        (DvsConfig(polarity="merge", pooling_x=4, pooling_y=2), (1, 64, 32)),
        (DvsConfig(roi=(10, 20, 19, 49), swap_xy=True), (2, 30, 10)),
        (DvsConfig(polarity="on", roi=(10, 20, 19, 49)), (2, 10, 30)),
    ],
)
def test_output_shape(cfg: DvsConfig, shape: tuple[int, int, int]) -> None:
    assert output_shape(cfg) == shape


def test_swap_after_mirror() -> None:
    cfg = DvsConfig(width=4, height=2, mirror_x=True, swap_xy=True)
    out, _ = preprocess(make_events([0], [0], [1], [1]), cfg)
    assert rows_of(out) == [(0, 1, 3, 1)]  # mirror x: (3, 1); swap: (1, 3)
    assert output_shape(cfg) == (2, 4, 2)


def test_empty() -> None:
    out, counts = preprocess(make_events([], [], [], []), DvsConfig())
    assert len(out) == 0 and out.dtype == EVENT_DTYPE and counts == DvsCounts(0, 0)


def test_events_outside_the_sensor_are_dropped_without_a_roi() -> None:
    """No ROI means the pooled extent: an event past the sensor edge is dropped and counted, never
    wrapped into a bogus coordinate by the mirror."""
    events = make_events([0, 1], [200, 5], [3, 4], [1, 1])
    for mirror in (False, True):
        out, counts = preprocess(events, DvsConfig(mirror_x=mirror))
        assert counts.roi == 1
        assert out["x"].tolist() == ([127 - 5] if mirror else [5]) and out["y"].tolist() == [4]
