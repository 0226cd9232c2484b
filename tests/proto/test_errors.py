"""Every malformed input raises ProtocolError with the right reason, and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from proto.codec import REASONS, ProtocolError, decode
from proto.events import empty_spikes
from proto.messages import SCHEMA_VERSION
from proto.topics import TOPICS

from .forge import (
    SAMPLES,
    drop_key,
    event_batch,
    frames_of,
    header_of,
    prediction,
    set_body,
    set_keys,
    spike_batch,
    telemetry,
    with_header,
    with_records,
)  # fmt: skip


def ev() -> list[bytes]:
    return frames_of(event_batch())


def sp() -> list[bytes]:
    return frames_of(spike_batch())


def pr() -> list[bytes]:
    return frames_of(prediction())


def tm() -> list[bytes]:
    return frames_of(telemetry())


def events_changed(**columns: Any) -> list[bytes]:
    """Event frames whose records have some columns replaced (header kept consistent)."""
    events = event_batch().events.copy()
    for name, values in columns.items():
        events[name] = values
    return with_records(ev(), events)


def spikes_at(t: list[int]) -> np.ndarray:
    s = empty_spikes(len(t))
    s["t"] = t
    return s


CASES: list[tuple[str, Callable[[], object]]] = [
    ("bad_frame_type", lambda: b"events.raw|"),
    ("bad_frame_type", lambda: "frames"),
    ("bad_frame_type", lambda: None),
    ("bad_frame_type", lambda: [ev()[0], "header", ev()[2]]),
    ("bad_frame_type", lambda: [ev()[0], ev()[1], 12345]),
    ("bad_frame_type", lambda: [ev()[0], ev()[1], np.zeros((4, 4), np.uint8)[:, ::2]]),
    ("bad_frame_count", list),
    ("bad_frame_count", lambda: ev()[:1]),
    ("bad_frame_count", lambda: ev() + [b""]),
    ("bad_frame_count", lambda: ev()[:2]),
    ("bad_frame_count", lambda: pr() + [b""]),
    ("unknown_topic", lambda: [b"events|", *ev()[1:]]),
    ("unknown_topic", lambda: [b"events.raw", *ev()[1:]]),
    ("unknown_topic", lambda: [b"events.raw|x", *ev()[1:]]),
    ("unknown_topic", lambda: [b"", *ev()[1:]]),
    ("unknown_topic", lambda: [b"\xff" * 1000, *ev()[1:]]),
    ("garbage_header", lambda: [ev()[0], b"", ev()[2]]),
    ("garbage_header", lambda: [ev()[0], b"\xc1", ev()[2]]),
    ("garbage_header", lambda: [ev()[0], ev()[1][:-1], ev()[2]]),
    ("garbage_header", lambda: [ev()[0], ev()[1] + b"\x00", ev()[2]]),
    ("garbage_header", lambda: [pr()[0], pr()[1].replace(b"clap", b"cl\xffp")]),
    ("garbage_header", lambda: [pr()[0], b"\x91" * 5000]),
    ("garbage_header", lambda: [pr()[0], msgpack.packb({1: 2})]),
    ("header_not_map", lambda: [ev()[0], msgpack.packb([1, "events"]), ev()[2]]),
    ("header_not_map", lambda: [ev()[0], msgpack.packb(None), ev()[2]]),
    ("header_not_map", lambda: [tm()[0], msgpack.packb(b"\x81")]),
    ("bad_version", lambda: with_header(ev(), set_keys(v=SCHEMA_VERSION + 1))),
    ("bad_version", lambda: with_header(pr(), set_keys(v=0))),
    ("unknown_kind", lambda: with_header(ev(), set_keys(k="event"))),
    ("unknown_kind", lambda: with_header(tm(), set_keys(k=""))),
    ("topic_kind_mismatch", lambda: [b"events.filtered|", *sp()[1:]]),
    ("topic_kind_mismatch", lambda: [b"prediction|", *tm()[1:]]),
    ("missing_field", lambda: with_header(ev(), drop_key("v"))),
    ("missing_field", lambda: with_header(ev(), drop_key("k"))),
    ("missing_field", lambda: with_header(ev(), drop_key("w"))),
    ("missing_field", lambda: with_header(sp(), drop_key("ts"))),
    ("missing_field", lambda: with_header(pr(), drop_key("b"))),
    ("missing_field", lambda: with_header(pr(), drop_key("l", body=True))),
    ("missing_field", lambda: with_header(tm(), drop_key("g", body=True))),
    ("extra_field", lambda: with_header(ev(), set_keys(zz=1))),
    ("extra_field", lambda: with_header(sp(), set_keys(w=128, h=128))),
    ("extra_field", lambda: with_header(ev(), set_keys(b={}))),
    ("extra_field", lambda: with_header(pr(), set_body(note="hi"))),
    ("extra_field", lambda: with_header(ev(), lambda h: h.__setitem__(b"v", 1))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(v="1"))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(v=1.0))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(k=1))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(s=5))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(s=b"cam0"))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(n="41"))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(n=True))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(ts=1.5))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(c=None))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(t0=[100]))),
    ("bad_field_type", lambda: with_header(ev(), set_keys(w="128"))),
    ("bad_field_type", lambda: with_header(pr(), set_keys(b=[1, 2]))),
    ("bad_field_type", lambda: with_header(pr(), set_body(id=3.0))),
    ("bad_field_type", lambda: with_header(pr(), set_body(p="high"))),
    ("bad_field_type", lambda: with_header(pr(), set_body(x=[1]))),
    ("bad_field_type", lambda: with_header(pr(), set_body(x={"a": None}))),
    ("bad_field_type", lambda: with_header(tm(), set_body(v={"a": {"b": 1}}))),
    ("bad_field_type", lambda: with_header(tm(), set_body(g={"a": 1}))),
    ("bad_field_type", lambda: with_header(tm(), set_body(g={b"a": {"b": 1}}))),
    ("bad_field_value", lambda: with_header(ev(), set_keys(n=-1))),
    ("bad_field_value", lambda: with_header(ev(), set_keys(t0=-1))),
    ("bad_field_value", lambda: with_header(ev(), set_keys(s=""))),
    ("bad_field_value", lambda: with_header(ev(), set_keys(s="x" * 65))),
    ("bad_field_value", lambda: with_header(ev(), set_keys(w=0))),
    ("bad_field_value", lambda: with_header(ev(), set_keys(h=65537))),
    ("bad_field_value", lambda: with_header(pr(), set_keys(t0=5, t1=4))),
    ("bad_field_value", lambda: with_header(pr(), set_body(p=float("nan")))),
    ("bad_field_value", lambda: with_header(pr(), set_body(lat=float("-inf")))),
    ("bad_field_value", lambda: with_header(pr(), set_body(id=-3))),
    ("bad_field_value", lambda: with_header(tm(), set_body(v={"": 1}))),
    ("bad_field_value", lambda: with_header(tm(), set_body(v={"a": float("inf")}))),
    ("payload_misaligned", lambda: ev()[:2] + [ev()[2][:-1]]),
    ("payload_misaligned", lambda: ev()[:2] + [ev()[2] + b"\x00"]),
    ("payload_misaligned", lambda: sp()[:2] + [b"\x00" * 8]),
    ("truncated_payload", lambda: ev()[:2] + [ev()[2][:-16]]),
    ("truncated_payload", lambda: ev()[:2] + [b""]),
    ("count_mismatch", lambda: ev()[:2] + [ev()[2] + ev()[2][-16:]]),
    ("count_mismatch", lambda: with_header(ev(), set_keys(c=3))),
    ("count_mismatch", lambda: with_header(pr(), set_keys(c=2))),
    ("count_mismatch", lambda: with_header(tm(), lambda h: h.update(c=h["c"] + 1))),
    ("count_mismatch", lambda: with_header(tm(), lambda h: h.update(c=h["c"] - 1))),
    ("time_span_mismatch", lambda: with_header(ev(), lambda h: h.update(t0=h["t0"] + 1))),
    ("time_span_mismatch", lambda: with_header(ev(), lambda h: h.update(t1=h["t1"] - 1))),
    ("time_span_mismatch", lambda: with_records(with_header(sp(), set_keys(t0=5, c=0)), spikes_at([]))),
    ("time_span_mismatch", lambda: with_header(sp(), lambda h: h.update(t1=h["t1"] - 1))),  # ends before a spike
    ("time_span_mismatch", lambda: with_header(sp(), lambda h: h.update(t0=h["t0"] + 1))),
    ("time_not_monotonic", lambda: events_changed(t=[100, 130, 100, 400])),
    ("time_not_monotonic", lambda: with_records(sp(), spikes_at([9, 10, 8, 11]))),
    ("coord_out_of_range", lambda: events_changed(x=[0, 128, 1, 2])),
    ("coord_out_of_range", lambda: events_changed(y=[0, 0, 0, 65535])),
    ("coord_out_of_range", lambda: with_header(ev(), set_keys(w=127))),
    ("bad_polarity", lambda: events_changed(p=[0, 1, 2, 1])),
    ("bad_polarity", lambda: events_changed(p=[255, 1, 1, 1])),
]


def case_id(case: tuple[str, Callable[[], object]]) -> str:
    return case[0]


@pytest.mark.parametrize(("reason", "make"), CASES, ids=[case_id(c) for c in CASES])
def test_malformed_frames_raise_protocol_error(reason: str, make: Callable[[], Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(make())
    assert info.value.reason == reason, info.value.message
    assert isinstance(info.value, ValueError)
    assert info.value.message and str(info.value).startswith(f"{reason}: ")


def test_the_table_covers_every_reason() -> None:
    assert {reason for reason, _ in CASES} == set(REASONS)
    assert ProtocolError.REASONS == REASONS
    assert len(set(REASONS)) == len(REASONS)


def test_reasons_are_label_safe() -> None:
    for reason in REASONS:
        assert reason.isidentifier() and reason == reason.lower() and len(reason) <= 32


def test_an_unregistered_reason_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        ProtocolError("no_such_reason", "x")


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_topic_of_the_kind_is_accepted(kind: str) -> None:
    frames = frames_of(SAMPLES[kind]())
    for topic in (t for t in TOPICS if t.kind == header_of(frames)["k"]):
        assert decode([topic.wire, *frames[1:]]).topic == topic.name


def test_non_contiguous_payload_is_a_protocol_error() -> None:
    from proto.codec import ProtocolError, decode, encode
    from proto.events import make_events
    from proto.messages import EventBatch

    frames = encode(EventBatch(stream="s", seq=0, sent_ns=1, events=make_events([1], [0], [0], [1]), width=4, height=4))
    strided = np.frombuffer(bytes(frames[2]) * 2, dtype=np.uint8)[::2]  # 16 bytes, not contiguous
    with pytest.raises(ProtocolError) as err:
        decode([frames[0], frames[1], strided])
    assert err.value.reason == "bad_frame_type"
