"""The two ways a message can be wrong, and the stable reason codes they carry.

* :class:`InvalidMessage` — a message object broke an invariant when it was built
  (a bad argument to ``EventBatch(...)`` and friends). Locally that is a bug in the
  stage that built it, so it is *not* a :class:`ProtocolError`: the runtime loop
  lets it crash the process instead of counting and dropping it.
* :class:`ProtocolError` — bytes from the wire that do not decode to a valid
  message. ``codec.decode`` raises nothing else for malformed input; the runtime
  loop counts it by ``reason`` (a Prometheus label), drops the message, goes on.

Every ``reason`` is one of :data:`REASONS`: short, stable, snake_case strings.
"""

from __future__ import annotations

from typing import ClassVar

REASONS: tuple[str, ...] = (
    "bad_frame_type",  # frames are not a list/tuple of bytes-like objects
    "bad_frame_count",  # not the number of frames the kind has (2, or 3 for batches)
    "unknown_topic",  # frame 0 is not a topic in proto.topics.TOPICS
    "garbage_header",  # frame 1 is not exactly one msgpack object (or has invalid UTF-8)
    "header_not_map",  # frame 1 is msgpack, but not a map
    "bad_version",  # the schema version is not SCHEMA_VERSION
    "unknown_kind",  # the kind is not a proto.topics.Kind
    "topic_kind_mismatch",  # the topic carries another kind of message
    "missing_field",  # a required header or body key is absent
    "extra_field",  # a header or body key the kind does not have
    "bad_field_type",  # a field of the wrong type (str for int, list for map, ...)
    "bad_field_value",  # right type, out of range (negative, too long, NaN, start > end, ...)
    "payload_misaligned",  # payload length is not a multiple of the record size
    "truncated_payload",  # a batch payload with fewer records than the header's count
    "count_mismatch",  # otherwise a record or entry count that differs from the header's
    "time_span_mismatch",  # header first/last timestamps differ from the payload's
    "time_not_monotonic",  # record timestamps decrease somewhere
    "coord_out_of_range",  # an event with x >= width or y >= height
    "bad_polarity",  # an event polarity other than 0 or 1
)


class InvalidMessage(ValueError):
    """A message built with a bad field: names the ``field`` and the ``reason``."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        _check_reason(reason)
        self.field = field
        self.reason = reason
        self.message = f"{field}: {message}"
        super().__init__(self.message)


class ProtocolError(ValueError):
    """Frames that are not a valid message.

    ``reason`` is one of :data:`REASONS` (machine-readable, a metrics label);
    ``message`` says in words what was wrong and where.
    """

    REASONS: ClassVar[tuple[str, ...]] = REASONS

    def __init__(self, reason: str, message: str) -> None:
        _check_reason(reason)
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def _check_reason(reason: str) -> None:
    # A reason outside the table is a bug in proto/, so it fails loudly.
    if reason not in REASONS:
        raise RuntimeError(f"unregistered protocol error reason {reason!r}")
