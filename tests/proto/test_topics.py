"""The topic table: exact prefix subscriptions, lookups with helpful errors, sane endpoints."""

from __future__ import annotations

from itertools import permutations
from urllib.parse import urlsplit

import pytest
import zmq

from proto.topics import (
    ENDPOINTS,
    SERVICES,
    TOPIC_TERMINATOR,
    TOPICS,
    Kind,
    Topic,
    endpoint,
    find_topic,
    topic_for_wire,
)

REQUIRED = ("events.raw", "events.filtered", "spikes", "prediction", "telemetry")


def test_required_topics_exist_with_their_kinds() -> None:
    kinds = {"events.raw": Kind.EVENTS, "events.filtered": Kind.EVENTS, "spikes": Kind.SPIKES,
             "prediction": Kind.PREDICTION, "telemetry": Kind.TELEMETRY}  # fmt: skip
    assert {name: find_topic(name).kind for name in REQUIRED} == kinds


def test_names_are_unique_and_wire_form_is_name_plus_terminator() -> None:
    assert len({t.name for t in TOPICS}) == len(TOPICS)
    for t in TOPICS:
        assert t.wire == t.name.encode() + TOPIC_TERMINATOR
        assert TOPIC_TERMINATOR not in t.name.encode()
        assert topic_for_wire(t.wire) is t


def test_no_subscription_matches_another_topic() -> None:
    for a, b in permutations(TOPICS, 2):
        assert not b.wire.startswith(a.wire), (a.name, b.name)


def test_terminator_stops_lookalike_names() -> None:
    raw = find_topic("events.raw").wire
    assert not (b"events.raw2" + TOPIC_TERMINATOR).startswith(raw)
    assert topic_for_wire(b"events.raw") is None
    assert topic_for_wire(b"events.raw2|") is None


def test_zmq_prefix_subscription_is_exact() -> None:
    """On a real PUB/SUB pair, subscribing to one topic never delivers its lookalikes."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    try:
        for s in (pub, sub):
            s.setsockopt(zmq.LINGER, 0)
        pub.bind("inproc://topics-test")
        sub.connect("inproc://topics-test")
        sub.setsockopt(zmq.SUBSCRIBE, find_topic("events.raw").wire)
        sub.setsockopt(zmq.SUBSCRIBE, b"end|")
        others = [t.wire for t in TOPICS if t.name != "events.raw"] + [b"events.raw2|", b"events.rawx|"]
        for wire in [*others, find_topic("events.raw").wire, b"end|"]:
            pub.send_multipart([wire, b"body"])
        got = []
        while sub.poll(1000):  # inproc delivers in order; stop at our own end marker
            topic = sub.recv_multipart()[0]
            if topic == b"end|":
                break
            got.append(topic)
        assert got == [find_topic("events.raw").wire]
    finally:
        pub.close()
        sub.close()


def test_unknown_topic_error_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown topic 'event'") as info:
        find_topic("event")
    for t in TOPICS:
        assert t.name in str(info.value)


def test_topic_names_must_be_dotted_words() -> None:
    for bad in ["", "Events", "events|raw", "events..raw", ".events", "events raw"]:
        with pytest.raises(ValueError, match="name"):
            Topic(bad, Kind.EVENTS, ("sensor",), ("filter",), "bad")


def test_every_kind_has_a_topic() -> None:
    assert {t.kind for t in TOPICS} == set(Kind)


def test_endpoints_are_loopback_tcp_on_unique_ports_outside_the_exporter_range() -> None:
    ports = []
    for service, url in ENDPOINTS.items():
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname) == ("tcp", "127.0.0.1"), service
        assert parts.port is not None and not 9100 <= parts.port <= 9999
        ports.append(parts.port)
    assert len(set(ports)) == len(ports)


def test_every_publisher_has_an_endpoint() -> None:
    assert set(SERVICES) <= set(ENDPOINTS)
    for t in TOPICS:
        for service in t.publishers:
            assert endpoint(service) == ENDPOINTS[service]


def test_unknown_service_error_lists_services() -> None:
    with pytest.raises(ValueError, match="unknown service") as info:
        endpoint("exporter")
    for service in ENDPOINTS:
        assert service in str(info.value)
