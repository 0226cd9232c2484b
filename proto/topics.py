"""Where messages go: the topic table and the default publisher endpoints.

A topic's wire form (frame 0 of every message) is its short name followed by
:data:`TOPIC_TERMINATOR` ``b"|"``. ZeroMQ subscriptions are byte-prefix matches,
so the terminator is what makes a subscription exact: ``b"events.raw|"`` matches
only ``events.raw``, never a later ``events.raw2`` or ``events.rawest``. Names are
lowercase ``[a-z0-9_]`` words joined by ``.``, so a subscription that stops at a
dot is a deliberate family match: ``b"events."`` receives raw *and* filtered
events, ``b""`` receives everything. ``|`` never occurs inside a name.

Every service publishes on one PUB socket bound at its endpoint in
:data:`ENDPOINTS`; its data topic and its telemetry share that socket, so the
exporter connects to every endpoint and subscribes to ``b"telemetry|"``.
Ports sit outside 9100–9999, the range allocated to public Prometheus exporters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Kind(StrEnum):
    """The four message kinds; the value is what the header's ``k`` field holds."""

    EVENTS = "events"
    SPIKES = "spikes"
    PREDICTION = "prediction"
    TELEMETRY = "telemetry"


TOPIC_TERMINATOR = b"|"
"""Ends every topic's wire form, so prefix subscriptions match whole names."""

_NAME = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")

SERVICES: tuple[str, ...] = ("sensor", "filter", "chip", "readout")
"""The pipeline's publishing services, upstream first."""


@dataclass(frozen=True)
class Topic:
    """One topic: its short ``name``, message ``kind``, who publishes and who listens."""

    name: str
    kind: Kind
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    description: str
    wire: bytes = field(init=False)
    """Frame 0 on the wire and the exact subscription prefix: ``name`` + ``b"|"``."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r} is not dot-separated [a-z0-9_] words")
        object.__setattr__(self, "wire", self.name.encode("ascii") + TOPIC_TERMINATOR)


TOPICS: tuple[Topic, ...] = (
    Topic("events.raw", Kind.EVENTS, ("sensor",), ("filter",), "DVS events as the sensor read them"),
    Topic("events.filtered", Kind.EVENTS, ("filter",), ("chip",), "events left after denoise/crop/refractory"),
    Topic("spikes", Kind.SPIKES, ("chip",), ("readout",), "output spikes of the chip's cores"),
    Topic("prediction", Kind.PREDICTION, ("readout",), ("clients",), "one class decision per time window"),
    Topic("telemetry", Kind.TELEMETRY, SERVICES, ("exporter",), "counters and gauges of every service"),
)

ENDPOINTS: Mapping[str, str] = MappingProxyType(
    {
        "sensor": "tcp://127.0.0.1:7711",
        "filter": "tcp://127.0.0.1:7712",
        "chip": "tcp://127.0.0.1:7713",
        "readout": "tcp://127.0.0.1:7714",
    }
)
"""Default PUB endpoint of each service (loopback; deployments override them)."""

_BY_NAME: Mapping[str, Topic] = MappingProxyType({t.name: t for t in TOPICS})
_BY_WIRE: Mapping[bytes, Topic] = MappingProxyType({t.wire: t for t in TOPICS})


def find_topic(name: str) -> Topic:
    """The topic called ``name`` (e.g. ``"prediction"``, ``"events.raw"``).

    Raises ``ValueError`` listing the valid names when there is no such topic.
    """
    found = _BY_NAME.get(name) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"unknown topic {name!r}; valid topics: {', '.join(_BY_NAME)}")
    return found


def topic_for_wire(wire: bytes) -> Topic | None:
    """The topic whose frame-0 bytes are exactly ``wire``, or ``None``."""
    return _BY_WIRE.get(wire)


def endpoint(service: str) -> str:
    """The default PUB endpoint of ``service``; ``ValueError`` listing the services if unknown."""
    found = ENDPOINTS.get(service) if isinstance(service, str) else None
    if found is None:
        raise ValueError(f"unknown service {service!r}; valid services: {', '.join(ENDPOINTS)}")
    return found
