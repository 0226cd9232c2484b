"""Messages to ZeroMQ frames and back: ``encode(msg) -> frames``, ``decode(frames) -> msg``.

Both are pure (no clocks, no sockets, no state). The frames of one message:

========= ===================================================================
frame     content
========= ===================================================================
0 topic   the topic's wire bytes, e.g. ``b"events.raw|"`` (:mod:`proto.topics`)
1 header  one msgpack map with short str keys (below); a few dozen bytes
2 payload batches only: the records as raw little-endian bytes, ``count`` ×
          16 bytes of ``EVENT_DTYPE`` or ``SPIKE_DTYPE``, nothing in between
========= ===================================================================

Header keys (all ints are non-negative and fit uint64; times in µs unless ``_ns``):

====== ===============================================================================
``v``  schema version, :data:`~proto.messages.SCHEMA_VERSION`
``k``  kind: ``"events"``, ``"spikes"``, ``"prediction"`` or ``"telemetry"``
``s``  stream id (str)
``n``  sequence number
``t0``  first record time (batches; 0 if empty) or window start (prediction, telemetry)
``t1``  last record time (batches; 0 if empty) or window end
``c``  records in the batch; 1 for a prediction; number of values for telemetry
``ts`` sender's ``time.time_ns()`` at encode, passed in by the caller (``sent_ns``)
``to`` ``sent_ns`` of the originating sensor message (``origin_ns``, 0 = untracked)
``w``  ``h``: sensor width and height in pixels (event batches only)
``b``  body map (prediction: ``id`` class, ``l`` label, ``p`` score, ``lat``
       latency µs, ``x`` extras; telemetry: ``v`` values, ``g`` groups)
====== ===============================================================================

A kind has exactly its keys: a missing or an extra key is an error, so a change
of keys needs a new schema version.

``encode`` returns ``[bytes, bytes, memoryview]`` for batches: the payload is a
read-only view of the message's array, not a copy (send it with
``copy=False`` to stay zero-copy). ``decode`` accepts any bytes-like frames
(bytes, memoryview, ``zmq.Frame``) and returns a batch whose array is a
**read-only view of frame 2's buffer** (zero-copy; copied only when the buffer is
not 8-byte aligned). Call ``.copy()`` to get a writable array; do not mutate a
writable frame buffer after decoding from it.

Every way frames can be malformed raises :class:`~proto.errors.ProtocolError`
with a ``reason`` from :data:`~proto.errors.REASONS`, and nothing else: events
must be time-ordered (equal timestamps allowed), in range and of polarity 0/1,
and ``c``, ``t0``, ``t1`` must agree with the payload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import msgpack
import numpy as np

from proto.errors import REASONS, InvalidMessage, ProtocolError
from proto.events import EVENT_DTYPE, SPIKE_DTYPE
from proto.fields import U64_MAX
from proto.messages import SCHEMA_VERSION, EventBatch, Message, Prediction, SpikeBatch, Telemetry, time_span
from proto.topics import Kind, Topic, find_topic, topic_for_wire

__all__ = ["REASONS", "ProtocolError", "decode", "encode"]

Frames = list[bytes | memoryview]

_COMMON = frozenset({"v", "k", "s", "n", "t0", "t1", "c", "ts", "to"})
_KEYS: Mapping[Kind, frozenset[str]] = {
    Kind.EVENTS: _COMMON | {"w", "h"},
    Kind.SPIKES: _COMMON,
    Kind.PREDICTION: _COMMON | {"b"},
    Kind.TELEMETRY: _COMMON | {"b"},
}
_BODY_KEYS: Mapping[Kind, frozenset[str]] = {
    Kind.PREDICTION: frozenset({"id", "l", "p", "lat", "x"}),
    Kind.TELEMETRY: frozenset({"v", "g"}),
}
_FRAME_COUNTS: Mapping[Kind, int] = {Kind.EVENTS: 3, Kind.SPIKES: 3, Kind.PREDICTION: 2, Kind.TELEMETRY: 2}
_T = TypeVar("_T")
_KIND_VALUES = frozenset(k.value for k in Kind)
_MAX_TOPIC_BYTES = 64


def encode(msg: Message) -> Frames:
    """The frames of ``msg``: ``[topic, header]`` plus the raw payload for batches."""
    h = msg.header
    head: dict[str, Any] = {
        "v": h.version, "k": h.kind.value, "s": h.stream, "n": h.seq, "t0": h.t_first_us,
        "t1": h.t_last_us, "c": h.count, "ts": h.sent_ns, "to": h.origin_ns,
    }  # fmt: skip
    topic = find_topic(msg.topic).wire
    match msg:
        case EventBatch():
            head["w"], head["h"] = h.width, h.height
            return [topic, msgpack.packb(head), _raw(msg.events)]
        case SpikeBatch():
            return [topic, msgpack.packb(head), _raw(msg.spikes)]
        case Prediction():
            x = dict(msg.extras)
            head["b"] = {"id": msg.class_id, "l": msg.label, "p": msg.score, "lat": msg.latency_us, "x": x}
        case Telemetry():
            head["b"] = {"v": dict(msg.values), "g": {k: dict(g) for k, g in msg.groups.items()}}
    return [topic, msgpack.packb(head)]


def decode(frames: Sequence[object]) -> Message:
    """The message in ``frames``; :class:`ProtocolError` for anything malformed."""
    views = _views(frames)
    topic = _topic(views[0])
    head = _unpack(views[1])
    kind = _kind(head)
    if kind is not topic.kind:
        raise ProtocolError("topic_kind_mismatch", f"topic {topic.name!r} carries {topic.kind}, header says {kind}")
    if len(views) != _FRAME_COUNTS[kind]:
        raise ProtocolError("bad_frame_count", f"{kind} has {_FRAME_COUNTS[kind]} frames, got {len(views)}")
    _check_keys("header", head, _KEYS[kind])
    t0, t1, count = _u64(head, "t0"), _u64(head, "t1"), _u64(head, "c")
    env = {"stream": head["s"], "seq": head["n"], "sent_ns": head["ts"], "origin_ns": head["to"], "topic": topic.name}
    if kind is Kind.EVENTS:
        events = _records(views[2], EVENT_DTYPE, count, (t0, t1))
        return _build(EventBatch, events=events, width=head["w"], height=head["h"], **env)
    if kind is Kind.SPIKES:
        spikes = _records(views[2], SPIKE_DTYPE, count, (t0, t1), open_end=True)
        return _build(SpikeBatch, spikes=spikes, t_end_us=t1, **env)
    body = _body(head, kind)
    if kind is Kind.PREDICTION:
        _expect_count(count, 1)
        fields = {"class_id": body["id"], "label": body["l"], "score": body["p"], "latency_us": body["lat"]}
        return _build(Prediction, **fields, extras=body["x"], t_start_us=t0, t_end_us=t1, **env)
    msg = _build(Telemetry, values=body["v"], groups=body["g"], t_start_us=t0, t_end_us=t1, **env)
    _expect_count(count, msg.header.count)
    return msg


def _raw(records: np.ndarray) -> memoryview:
    return records.view(np.uint8).data  # messages hold C-contiguous read-only arrays


def _views(frames: object) -> list[memoryview]:
    """Frames as flat byte views, checking the container, the count (2 or 3) and each type."""
    if not isinstance(frames, (list, tuple)):
        raise ProtocolError("bad_frame_type", f"frames must be a list or tuple, got {type(frames).__name__}")
    if len(frames) not in (2, 3):
        raise ProtocolError("bad_frame_count", f"expected 2 or 3 frames, got {len(frames)}")
    views = []
    for i, frame in enumerate(frames):
        try:
            view = memoryview(frame)  # type: ignore[arg-type]  # any buffer is welcome; others fail here
            if not view.c_contiguous:
                raise ProtocolError("bad_frame_type", f"frame {i} is not a contiguous buffer")
            views.append(view if view.format == "B" and view.ndim == 1 else view.cast("B"))
        except (TypeError, ValueError, BufferError):
            raise ProtocolError("bad_frame_type", f"frame {i} is not bytes-like: {type(frame).__name__}") from None
    return views


def _topic(view: memoryview) -> Topic:
    wire = bytes(view[: _MAX_TOPIC_BYTES + 1])
    topic = topic_for_wire(wire)
    if topic is None:
        raise ProtocolError("unknown_topic", f"frame 0 {wire[:_MAX_TOPIC_BYTES]!r} is not a known topic")
    return topic


def _unpack(view: memoryview) -> dict[Any, Any]:
    try:
        head = msgpack.unpackb(view, raw=False, strict_map_key=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        raise ProtocolError("garbage_header", f"frame 1 is not one msgpack object: {e}") from None
    if not isinstance(head, dict):
        raise ProtocolError("header_not_map", f"frame 1 is a msgpack {type(head).__name__}, not a map")
    return head


def _kind(head: dict[Any, Any]) -> Kind:
    """The header's kind, after checking its schema version (which may change everything else)."""
    version = _typed(head, "v", int)
    if version != SCHEMA_VERSION:
        raise ProtocolError("bad_version", f"schema version {version}, this codec speaks {SCHEMA_VERSION}")
    kind = _typed(head, "k", str)
    if kind not in _KIND_VALUES:
        raise ProtocolError("unknown_kind", f"kind {kind[:32]!r} is not one of {', '.join(Kind)}")
    return Kind(kind)


def _typed(head: dict[Any, Any], key: str, want: type[_T]) -> _T:
    if key not in head:
        raise ProtocolError("missing_field", f"header has no {key!r}")
    value = head[key]
    if type(value) is not want:
        raise ProtocolError("bad_field_type", f"header {key!r} is {type(value).__name__}, not {want.__name__}")
    return value


def _check_keys(where: str, got: dict[Any, Any], want: frozenset[str]) -> None:
    if got.keys() == want:
        return
    missing, extra = want - got.keys(), got.keys() - want
    if missing:
        raise ProtocolError("missing_field", f"{where} lacks {', '.join(sorted(missing))}")
    if extra:
        raise ProtocolError("extra_field", f"{where} has unknown keys {', '.join(sorted(map(repr, extra)))[:80]}")


def _u64(head: dict[Any, Any], key: str) -> int:
    value = _typed(head, key, int)
    if not 0 <= value <= U64_MAX:
        raise ProtocolError("bad_field_value", f"header {key!r} = {value} is not a uint64")
    return value


def _body(head: dict[Any, Any], kind: Kind) -> dict[Any, Any]:
    body = head["b"]
    if not isinstance(body, dict):
        raise ProtocolError("bad_field_type", f"header 'b' is {type(body).__name__}, not a map")
    _check_keys("body", body, _BODY_KEYS[kind])
    return body


def _records(
    view: memoryview, dtype: np.dtype[Any], count: int, span: tuple[int, int], *, open_end: bool = False
) -> np.ndarray:
    """The payload as a read-only record array, checked against the header's count and span
    (``open_end``: the span may end after the last record, see ``SpikeBatch.t_end_us``)."""
    n, rest = divmod(view.nbytes, dtype.itemsize)
    if rest:
        raise ProtocolError("payload_misaligned", f"{view.nbytes} payload bytes is not a multiple of {dtype.itemsize}")
    if n < count:
        raise ProtocolError("truncated_payload", f"header counts {count} records, payload holds {n}")
    _expect_count(count, n)
    words = np.frombuffer(view, dtype=np.uint64)  # itemsize is a multiple of 8, checked above
    if not words.flags.aligned:
        words = words.copy()
    words.flags.writeable = False
    records = words.view(dtype)
    first, last = time_span(records)
    if open_end and len(records) == 0 and span[0] == 0:
        last = span[1]  # an empty batch that only moves time forward
    if first != span[0] or (last > span[1] if open_end else last != span[1]):
        raise ProtocolError("time_span_mismatch", f"header span {span}, payload spans {time_span(records)}")
    return records


def _expect_count(header_count: int, actual: int) -> None:
    if header_count != actual:
        raise ProtocolError("count_mismatch", f"header counts {header_count}, message holds {actual}")


def _build(cls: type[Message], **fields: Any) -> Message:
    try:
        return cls(**fields)
    except InvalidMessage as e:
        raise ProtocolError(e.reason, e.message) from None
