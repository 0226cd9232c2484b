"""decode(encode(m)) == m for every kind, and the frame layout the codec documents."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import zmq
from hypothesis import given, settings

from proto.codec import decode, encode
from proto.events import EVENT_DTYPE, make_events
from proto.messages import EventBatch, Message, Prediction, SpikeBatch, Telemetry
from proto.topics import find_topic

from .strategies import event_batches, messages, predictions, spike_batches, telemetries


def as_received(msg: Message) -> list[bytes]:
    """The frames as a SUB socket hands them over: independent bytes objects."""
    return [bytes(f) for f in encode(msg)]


def assert_round_trip(msg: Message) -> None:
    for frames in (encode(msg), as_received(msg)):
        back = decode(frames)
        assert type(back) is type(msg)
        assert back == msg
        assert back.header == msg.header


@given(event_batches())
def test_event_batches_round_trip(msg: EventBatch) -> None:
    assert_round_trip(msg)


@given(spike_batches())
def test_spike_batches_round_trip(msg: SpikeBatch) -> None:
    assert_round_trip(msg)


@given(predictions())
def test_predictions_round_trip(msg: Prediction) -> None:
    assert_round_trip(msg)


@given(telemetries())
def test_telemetry_round_trips(msg: Telemetry) -> None:
    assert_round_trip(msg)


@settings(max_examples=200)
@given(messages())
def test_frame_layout(msg: Message) -> None:
    frames = encode(msg)
    assert frames[0] == find_topic(msg.topic).wire
    if isinstance(msg, (EventBatch, SpikeBatch)):
        records = msg.events if isinstance(msg, EventBatch) else msg.spikes
        assert len(frames) == 3
        assert bytes(frames[2]) == records.tobytes()  # raw records, nothing added
    else:
        assert len(frames) == 2


@given(event_batches())
def test_decoded_arrays_are_read_only_views(msg: EventBatch) -> None:
    frames = as_received(msg)
    events = decode_events(frames).events
    assert not events.flags.writeable
    if len(events):
        assert np.shares_memory(events, np.frombuffer(frames[2], np.uint8))  # zero-copy
    with pytest.raises(ValueError):
        events["x"] = 0


def decode_events(frames: Sequence[object]) -> EventBatch:
    msg = decode(frames)
    assert isinstance(msg, EventBatch)
    return msg


def sample_batch() -> EventBatch:
    events = make_events([10, 10, 12, 40], [0, 5, 127, 3], [1, 127, 0, 64], [1, 0, 1, 1])
    return EventBatch(events=events, width=128, height=128, stream="cam0", seq=7, sent_ns=123, origin_ns=100)


@pytest.mark.parametrize(
    "wrap",
    [bytes, bytearray, memoryview, zmq.Frame, lambda b: np.frombuffer(b, np.uint8)],
    ids=["bytes", "bytearray", "memoryview", "zmq.Frame", "ndarray"],
)
def test_any_bytes_like_frames_decode(wrap: object) -> None:
    msg = sample_batch()
    frames = [wrap(f) for f in as_received(msg)]  # type: ignore[operator]
    back = decode_events(tuple(frames))
    assert back == msg
    assert not back.events.flags.writeable  # read-only even over a writable buffer


def test_misaligned_payload_is_copied_to_an_aligned_array() -> None:
    msg = sample_batch()
    frames = as_received(msg)
    shifted = memoryview(bytearray(b"\0" + frames[2]))[1:]  # payload starting at an odd address
    back = decode_events([frames[0], frames[1], shifted])
    assert back == msg
    assert back.events.__array_interface__["data"][0] % 8 == 0


def test_encode_does_not_copy_the_payload() -> None:
    msg = sample_batch()
    payload = encode(msg)[2]
    assert isinstance(payload, memoryview) and payload.readonly
    assert np.shares_memory(np.frombuffer(payload, np.uint8), msg.events.view(np.uint8))


def test_empty_batch_round_trips() -> None:
    msg = EventBatch(events=np.zeros(0, EVENT_DTYPE), width=1, height=1, stream="s", seq=0, sent_ns=0)
    assert_round_trip(msg)
    assert (msg.header.t_first_us, msg.header.t_last_us, msg.header.count) == (0, 0, 0)
