"""Messages validate in __post_init__: a ValueError naming the field, never a ProtocolError."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import FrozenInstanceError, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given

from proto.errors import REASONS, InvalidMessage, ProtocolError
from proto.events import EVENT_DTYPE, SPIKE_DTYPE, empty_spikes, make_events
from proto.fields import MAX_NAME_LEN, U64_MAX
from proto.messages import EventBatch, Message, Prediction, SpikeBatch, Telemetry

from .strategies import event_batches, messages

ENVELOPE: dict[str, Any] = {"stream": "cam0", "seq": 3, "sent_ns": 1_000, "origin_ns": 900}


def batch(**changes: Any) -> EventBatch:
    events = make_events([5, 5, 9], [0, 3, 7], [1, 2, 0], [1, 0, 1])
    kwargs = {"events": events, "width": 8, "height": 4, **ENVELOPE, **changes}
    return EventBatch(**kwargs)


def events_with(**columns: list[int]) -> np.ndarray:
    base = {"t": [5, 5, 9], "x": [0, 3, 7], "y": [1, 2, 0], "p": [1, 0, 1]}
    return make_events(**{**base, **columns})


def spikes(**changes: Any) -> SpikeBatch:
    s = empty_spikes(2)
    s["t"] = [4, 6]
    return SpikeBatch(**{"spikes": s, **ENVELOPE, **changes})


def prediction(**changes: Any) -> Prediction:
    kwargs = {"class_id": 2, "label": "wave", "score": 0.75, "t_start_us": 0, "t_end_us": 50_000,
              "latency_us": 812.5, "extras": {"score.clap": 0.1}, **ENVELOPE, **changes}  # fmt: skip
    return Prediction(**kwargs)


def telemetry(**changes: Any) -> Telemetry:
    kwargs = {"values": {"events_total": 10, "rate_hz": 2.5}, "groups": {"rail_joules": {"io": 1e-6}},
              **ENVELOPE, **changes}  # fmt: skip
    return Telemetry(**kwargs)


BAD: list[tuple[Callable[..., Message], dict[str, Any], str, str]] = [
    (batch, {"stream": ""}, "stream", "bad_field_value"),
    (batch, {"stream": "s" * (MAX_NAME_LEN + 1)}, "stream", "bad_field_value"),
    (batch, {"stream": "\ud800"}, "stream", "bad_field_value"),
    (batch, {"stream": b"cam0"}, "stream", "bad_field_type"),
    (batch, {"seq": -1}, "seq", "bad_field_value"),
    (batch, {"seq": U64_MAX + 1}, "seq", "bad_field_value"),
    (batch, {"seq": 1.0}, "seq", "bad_field_type"),
    (batch, {"seq": True}, "seq", "bad_field_type"),
    (batch, {"sent_ns": "now"}, "sent_ns", "bad_field_type"),
    (batch, {"origin_ns": -5}, "origin_ns", "bad_field_value"),
    (batch, {"topic": "prediction"}, "topic", "bad_field_value"),
    (batch, {"topic": "events"}, "topic", "bad_field_value"),
    (batch, {"topic": None}, "topic", "bad_field_type"),
    (batch, {"width": 0}, "width", "bad_field_value"),
    (batch, {"height": 65537}, "height", "bad_field_value"),
    (batch, {"width": 7}, "events.x", "coord_out_of_range"),
    (batch, {"height": 2}, "events.y", "coord_out_of_range"),
    (batch, {"events": events_with(p=[0, 2, 1])}, "events.p", "bad_polarity"),
    (batch, {"events": events_with(t=[5, 9, 5])}, "events.t", "time_not_monotonic"),
    (batch, {"events": [1, 2]}, "events", "bad_field_type"),
    (batch, {"events": np.zeros(3, SPIKE_DTYPE)}, "events", "bad_field_type"),
    (batch, {"events": np.zeros((2, 2), EVENT_DTYPE)}, "events", "bad_field_type"),
    (batch, {"events": np.zeros(3, EVENT_DTYPE.newbyteorder(">"))}, "events", "bad_field_type"),
    (spikes, {"spikes": np.zeros(2, EVENT_DTYPE)}, "spikes", "bad_field_type"),
    (spikes, {"topic": "events.raw"}, "topic", "bad_field_value"),
    (prediction, {"class_id": -1}, "class_id", "bad_field_value"),
    (prediction, {"label": ""}, "label", "bad_field_value"),
    (prediction, {"score": float("nan")}, "score", "bad_field_value"),
    (prediction, {"score": "high"}, "score", "bad_field_type"),
    (prediction, {"latency_us": float("inf")}, "latency_us", "bad_field_value"),
    (prediction, {"t_start_us": 10, "t_end_us": 9}, "t_end_us", "bad_field_value"),
    (prediction, {"extras": [("a", 1)]}, "extras", "bad_field_type"),
    (prediction, {"extras": {"a": "1"}}, "extras.a", "bad_field_type"),
    (prediction, {"extras": {1: 1.0}}, "extras key", "bad_field_type"),
    (telemetry, {"values": {"x": float("-inf")}}, "values.x", "bad_field_value"),
    (telemetry, {"values": {"x": 1 << 64}}, "values.x", "bad_field_value"),
    (telemetry, {"values": {"x": None}}, "values.x", "bad_field_type"),
    (telemetry, {"groups": {"rail": 1.0}}, "groups.rail", "bad_field_type"),
    (telemetry, {"groups": {"": {"a": 1}}}, "groups key", "bad_field_value"),
    (telemetry, {"t_start_us": 2, "t_end_us": 1}, "t_end_us", "bad_field_value"),
]


@pytest.mark.parametrize(("build", "changes", "field", "reason"), BAD)
def test_bad_fields_raise_value_error_naming_the_field(
    build: Callable[..., Message], changes: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}: ") as info:
        build(**changes)
    assert isinstance(info.value, InvalidMessage)
    assert not isinstance(info.value, ProtocolError)  # a local bug must crash, not be counted as bad input
    assert (info.value.field, info.value.reason) == (field, reason)
    assert reason in REASONS


@pytest.mark.parametrize("build", [batch, spikes, prediction, telemetry])
def test_good_defaults_build(build: Callable[..., Message]) -> None:
    msg = build()
    assert msg.header.stream == ENVELOPE["stream"]
    assert msg.header.seq == ENVELOPE["seq"]


def test_numpy_scalars_are_normalised_to_python_numbers() -> None:
    msg = prediction(seq=np.uint64(5), class_id=np.int16(3), score=np.float32(0.5), extras={"a": np.int64(-2)})
    assert (type(msg.seq), type(msg.class_id), type(msg.score), type(msg.extras["a"])) == (int, int, float, int)
    assert msg == prediction(seq=5, class_id=3, score=0.5, extras={"a": -2})


def test_int_score_becomes_float() -> None:
    assert type(prediction(score=1).score) is float


@given(event_batches())
def test_event_header_describes_the_events(msg: EventBatch) -> None:
    h = msg.header
    t = msg.events["t"]
    assert h.count == len(msg.events)
    assert (h.t_first_us, h.t_last_us) == ((int(t[0]), int(t[-1])) if len(t) else (0, 0))
    assert (h.width, h.height, h.kind) == (msg.width, msg.height, msg.KIND)


def test_telemetry_count_is_its_number_of_values() -> None:
    msg = telemetry()
    assert msg.header.count == len(msg.values) + sum(len(g) for g in msg.groups.values())


@given(messages())
def test_messages_are_frozen(msg: Message) -> None:
    with pytest.raises(FrozenInstanceError):
        msg.seq = 1  # type: ignore[misc]


def test_arrays_are_stored_read_only_and_contiguous() -> None:
    events = events_with()
    strided = np.repeat(events, 2)[::2]
    msg = batch(events=strided)
    assert not msg.events.flags.writeable and msg.events.flags.c_contiguous
    assert events.flags.writeable  # the caller's array is untouched
    assert np.array_equal(msg.events, strided)


def test_packed_copies_of_the_dtype_are_relaid() -> None:
    events = events_with()
    packed = np.concatenate([events, events])  # numpy 2 drops the padding: 13-byte records
    msg = batch(events=np.sort(packed, order="t"))
    assert msg.events.dtype == EVENT_DTYPE
    assert np.array_equal(msg.events["t"], np.sort(packed["t"]))


def test_mappings_are_copied() -> None:
    values = {"a": 1}
    msg = telemetry(values=values)
    values["a"] = 2
    assert msg.values == {"a": 1}


def test_equality_compares_arrays_and_fields() -> None:
    assert batch() == batch()
    assert batch() != batch(seq=4)
    assert batch() != batch(events=events_with(x=[0, 3, 6]))
    assert batch() != replace(batch(), topic="events.filtered")
    assert batch() != spikes()


def test_spike_batch_end_defaults_to_its_last_spike_and_may_lie_beyond() -> None:
    assert spikes().t_end_us == 6 and spikes().header.t_last_us == 6
    later = spikes(t_end_us=1000)
    assert later.header.t_first_us == 4 and later.header.t_last_us == 1000
    empty = SpikeBatch(spikes=empty_spikes(0), t_end_us=77, **ENVELOPE)
    assert (empty.header.t_first_us, empty.header.t_last_us) == (0, 77)
    with pytest.raises(InvalidMessage, match="t_end_us"):
        spikes(t_end_us=5)  # before the last spike
