"""The four message kinds: frozen, validated when built, each with its wire header.

Every message has an envelope, set by the stage that sends it:

* ``stream`` — which source this belongs to (e.g. ``"cam0"``), 1–64 characters;
* ``seq`` — the sender's message counter for this stream and topic (uint64), so a
  receiver can count gaps (PUB drops silently at its high-water mark);
* ``sent_ns`` — ``time.time_ns()`` when the sender encoded it, passed in by the
  caller (the codec never reads a clock): ``recv_ns - sent_ns`` is one hop's latency;
* ``origin_ns`` — ``sent_ns`` of the sensor message this data descends from,
  copied unchanged by every later stage (0 = not tracked): ``recv_ns - origin_ns``
  is the end-to-end latency, comparable across hops on one host's clock;
* ``topic`` — the short topic name it is sent on (see :mod:`proto.topics`).

Bodies (all times in µs of the recording's own clock unless marked ``_ns``):

* :class:`EventBatch` — ``events`` (``EVENT_DTYPE``), sensor ``width``/``height``
  in pixels. Events are time-ordered (``t`` never decreases; equal ``t`` is normal),
  because the chip emulator processes them in arrival order; ``x < width``,
  ``y < height``, ``p`` in {0, 1}. Padding bytes are neither checked nor compared.
* :class:`SpikeBatch` — ``spikes`` (``SPIKE_DTYPE``), time-ordered, and ``t_end_us``, the
  event time the batch is complete up to (the header's last time; ≥ the last spike's).
* :class:`Prediction` — ``class_id``, ``label``, ``score``, the window
  ``[t_start_us, t_end_us]``, ``latency_us`` (the readout's measured latency for
  this decision, wall-clock µs) and ``extras`` (name → number, e.g. class scores).
* :class:`Telemetry` — ``values`` (name → number) and ``groups`` (group → name →
  number, one level, e.g. ``{"rail_joules": {"io": 1e-6, "logic": 3e-6}}``), over
  the window ``[t_start_us, t_end_us]`` (0, 0 when no window applies).

Numbers are ``int`` (−2**63 … 2**64−1) or finite ``float``; names are 1–64 chars.
Arrays are stored as read-only, C-contiguous views; do not mutate the array you
passed in after building a message from it. Bad fields raise
:class:`~proto.errors.InvalidMessage` (a ``ValueError`` naming the field).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar, NoReturn

import numpy as np

from proto.errors import InvalidMessage
from proto.events import EVENT_DTYPE, SPIKE_DTYPE, Events, Spikes
from proto.fields import (
    U64_MAX,
    Number,
    check_events,
    check_float,
    check_int,
    check_name,
    check_time_order,
    frozen_array,
    mapping,
    numbers,
    set_field,
    valid_name,
)
from proto.topics import TOPICS, Kind, find_topic

SCHEMA_VERSION = 1
"""Bumped on any incompatible change of header keys, bodies or payload layout."""

MAX_SENSOR_SIDE = 1 << 16
"""Widest/tallest sensor: ``x``/``y`` are uint16, so ``width`` ≤ 65536."""

_TOPIC_KINDS: Mapping[str, Kind] = MappingProxyType({t.name: t.kind for t in TOPICS})


@dataclass(frozen=True, slots=True)
class Header:
    """What frame 1 of a message says about it (see :mod:`proto.codec`).

    ``t_first_us``/``t_last_us``: first and last record time for batches (0, 0 when
    empty), the window for predictions and telemetry. ``count``: records in a
    batch, 1 for a prediction, number of values for telemetry. ``width``/``height``
    (pixels) only for event batches.
    """

    version: int
    kind: Kind
    stream: str
    seq: int
    t_first_us: int
    t_last_us: int
    count: int
    sent_ns: int
    origin_ns: int
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class _Envelope:
    """Fields and checks every message kind shares (see the module docstring)."""

    KIND: ClassVar[Kind]
    stream: str
    seq: int
    sent_ns: int
    origin_ns: int = 0
    topic: str

    def _check_envelope(self) -> None:
        check_name(self, "stream")
        check_int(self, "seq", 0, U64_MAX)
        check_int(self, "sent_ns", 0, U64_MAX)
        check_int(self, "origin_ns", 0, U64_MAX)
        if type(self.topic) is not str or _TOPIC_KINDS.get(self.topic) is not self.KIND:
            _bad_topic(self.topic, self.KIND)

    def _header(self, span: tuple[int, int], count: int, size: tuple[int, int] | None = None) -> Header:
        """The header of this message, given its time ``span``, ``count`` and sensor ``size``."""
        width, height = size if size is not None else (None, None)
        return Header(
            SCHEMA_VERSION, self.KIND, self.stream, self.seq, span[0], span[1], count,
            self.sent_ns, self.origin_ns, width, height,
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class EventBatch(_Envelope):
    """A time-ordered batch of DVS events from one ``width`` × ``height`` sensor."""

    KIND: ClassVar[Kind] = Kind.EVENTS
    events: Events
    width: int
    height: int
    topic: str = "events.raw"

    def __post_init__(self) -> None:
        self._check_envelope()
        check_int(self, "width", 1, MAX_SENSOR_SIDE)
        check_int(self, "height", 1, MAX_SENSOR_SIDE)
        set_field(self, "events", frozen_array("events", self.events, EVENT_DTYPE))
        check_events(self.events, self.width, self.height)

    @property
    def header(self) -> Header:
        return self._header(time_span(self.events), len(self.events), (self.width, self.height))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return _equal(self, other)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class SpikeBatch(_Envelope):
    """A time-ordered batch of output spikes of the chip's cores."""

    KIND: ClassVar[Kind] = Kind.SPIKES
    spikes: Spikes
    t_end_us: int = 0
    """The event time this batch is complete up to: no later batch holds a spike before it (a later
    one may start at that same µs). ``0`` = the last spike's time. Lets a receiver close time windows
    without spikes."""
    topic: str = "spikes"

    def __post_init__(self) -> None:
        self._check_envelope()
        set_field(self, "spikes", frozen_array("spikes", self.spikes, SPIKE_DTYPE))
        check_time_order("spikes.t", self.spikes)
        check_int(self, "t_end_us", 0, U64_MAX)
        last = time_span(self.spikes)[1]
        if self.t_end_us and self.t_end_us < last:
            raise InvalidMessage("t_end_us", "bad_field_value", f"{self.t_end_us} is before the last spike ({last})")
        set_field(self, "t_end_us", max(self.t_end_us, last))

    @property
    def header(self) -> Header:
        first = time_span(self.spikes)[0]
        return self._header((first, self.t_end_us), len(self.spikes))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return _equal(self, other)


@dataclass(frozen=True, kw_only=True, slots=True)
class Prediction(_Envelope):
    """One class decision over the event-time window ``[t_start_us, t_end_us]``."""

    KIND: ClassVar[Kind] = Kind.PREDICTION
    class_id: int
    label: str
    score: float
    t_start_us: int
    t_end_us: int
    latency_us: float
    extras: Mapping[str, Number] = field(default_factory=dict)
    topic: str = "prediction"

    def __post_init__(self) -> None:
        self._check_envelope()
        check_int(self, "class_id", 0, U64_MAX)
        check_name(self, "label")
        check_float(self, "score")
        _check_window(self)
        check_float(self, "latency_us")
        set_field(self, "extras", numbers("extras", self.extras))

    @property
    def header(self) -> Header:
        return self._header((self.t_start_us, self.t_end_us), 1)


@dataclass(frozen=True, kw_only=True, slots=True)
class Telemetry(_Envelope):
    """A service's counters and gauges: flat ``values`` plus one level of ``groups``."""

    KIND: ClassVar[Kind] = Kind.TELEMETRY
    values: Mapping[str, Number] = field(default_factory=dict)
    groups: Mapping[str, Mapping[str, Number]] = field(default_factory=dict)
    t_start_us: int = 0
    t_end_us: int = 0
    topic: str = "telemetry"

    def __post_init__(self) -> None:
        self._check_envelope()
        set_field(self, "values", numbers("values", self.values))
        groups = mapping("groups", self.groups)
        set_field(self, "groups", {valid_name("groups key", k): numbers(f"groups.{k}", v) for k, v in groups.items()})
        _check_window(self)

    @property
    def header(self) -> Header:
        count = len(self.values) + sum(len(g) for g in self.groups.values())
        return self._header((self.t_start_us, self.t_end_us), count)


Message = EventBatch | SpikeBatch | Prediction | Telemetry


def _equal(a: EventBatch | SpikeBatch, b: object) -> bool:
    return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and bool(np.array_equal(a, b))
    return bool(a == b)


def time_span(records: np.ndarray) -> tuple[int, int]:
    """First and last ``t`` of time-ordered records, µs; ``(0, 0)`` when there are none."""
    if len(records) == 0:
        return 0, 0
    t = records["t"]
    return int(t[0]), int(t[-1])


def _check_window(msg: Prediction | Telemetry) -> None:
    check_int(msg, "t_start_us", 0, U64_MAX)
    check_int(msg, "t_end_us", 0, U64_MAX)
    if msg.t_start_us > msg.t_end_us:
        raise InvalidMessage("t_end_us", "bad_field_value", f"window ends ({msg.t_end_us}) before it starts")


def _bad_topic(topic: object, kind: Kind) -> NoReturn:
    if not isinstance(topic, str):
        raise InvalidMessage("topic", "bad_field_type", f"expected str, got {type(topic).__name__}")
    try:
        found = find_topic(topic).kind
    except ValueError as e:
        raise InvalidMessage("topic", "bad_field_value", str(e)) from None
    raise InvalidMessage("topic", "bad_field_value", f"{topic!r} carries {found}, not {kind}")
