"""Hypothesis strategies for valid messages of every kind (shared by the proto tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from proto.events import empty_spikes, make_events
from proto.fields import I64_MIN, MAX_NAME_LEN, U64_MAX
from proto.messages import MAX_SENSOR_SIDE, EventBatch, Message, Prediction, SpikeBatch, Telemetry

MAX_RECORDS = 64
MAX_STEP_US = 1 << 20

names = st.text(min_size=1, max_size=MAX_NAME_LEN)
u64s = st.integers(0, U64_MAX)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.one_of(st.integers(I64_MIN, U64_MAX), finite_floats)
number_maps = st.dictionaries(names, numbers, max_size=8)


def envelopes() -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments every message takes (topic aside)."""
    return st.fixed_dictionaries({"stream": names, "seq": u64s, "sent_ns": u64s, "origin_ns": u64s})


@st.composite
def times(draw: st.DrawFn, n: int) -> list[int]:
    """``n`` non-decreasing uint64 timestamps (µs), repeats included."""
    steps = draw(st.lists(st.integers(0, MAX_STEP_US), min_size=n, max_size=n))
    start = draw(st.integers(0, U64_MAX - MAX_STEP_US * MAX_RECORDS))
    out, t = [], start
    for step in steps:
        t += step
        out.append(t)
    return out


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int]:
    a, b = draw(u64s), draw(u64s)
    return min(a, b), max(a, b)


@st.composite
def event_batches(draw: st.DrawFn) -> EventBatch:
    width = draw(st.integers(1, MAX_SENSOR_SIDE))
    height = draw(st.integers(1, MAX_SENSOR_SIDE))
    n = draw(st.integers(0, MAX_RECORDS))
    cols = [draw(st.lists(st.integers(0, hi), min_size=n, max_size=n)) for hi in (width - 1, height - 1, 1)]
    events = make_events(np.array(draw(times(n)), dtype=np.uint64), *cols)
    topic = draw(st.sampled_from(["events.raw", "events.filtered"]))
    return EventBatch(events=events, width=width, height=height, topic=topic, **draw(envelopes()))


@st.composite
def spike_batches(draw: st.DrawFn) -> SpikeBatch:
    n = draw(st.integers(0, MAX_RECORDS))
    spikes = empty_spikes(n)
    spikes["t"] = np.array(draw(times(n)), dtype=np.uint64)
    for name, hi in (("layer", 0xFF), ("channel", 0xFFFF), ("x", 0xFFFF), ("y", 0xFFFF)):
        spikes[name] = draw(st.lists(st.integers(0, hi), min_size=n, max_size=n))
    last = int(spikes["t"][-1]) if n else 0
    t_end = draw(st.one_of(st.just(0), st.integers(last, last + 10**6)))  # 0: ends at the last spike
    return SpikeBatch(spikes=spikes, t_end_us=t_end, **draw(envelopes()))


@st.composite
def predictions(draw: st.DrawFn) -> Prediction:
    start, end = draw(windows())
    return Prediction(
        class_id=draw(u64s), label=draw(names), score=draw(finite_floats), t_start_us=start, t_end_us=end,
        latency_us=draw(finite_floats), extras=draw(number_maps), **draw(envelopes()),
    )  # fmt: skip


@st.composite
def telemetries(draw: st.DrawFn) -> Telemetry:
    start, end = draw(windows())
    groups = draw(st.dictionaries(names, number_maps, max_size=4))
    return Telemetry(values=draw(number_maps), groups=groups, t_start_us=start, t_end_us=end, **draw(envelopes()))


def messages() -> st.SearchStrategy[Message]:
    """Any valid message."""
    return st.one_of(event_batches(), spike_batches(), predictions(), telemetries())
