"""Waiting for a subscriber to one topic: a prefix subscription covers it, another topic does not."""

from __future__ import annotations

import threading

import zmq

from proto.topics import find_topic
from services.sockets import publisher, subscriber, wait_for_subscriber

RAW = find_topic("events.raw").wire
WAIT_MS = 5000
SHORT_MS = 300


def test_only_a_subscription_covering_the_topic_counts(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    pub = publisher(ctx, "inproc://wait-topic")
    stop = threading.Event()
    telemetry = subscriber(ctx, "inproc://wait-topic", [find_topic("telemetry").wire])
    assert not wait_for_subscriber(pub, SHORT_MS, stop, RAW)  # an exporter's telemetry| is not a data subscriber
    family = subscriber(ctx, "inproc://wait-topic", [b"events."])
    assert wait_for_subscriber(pub, WAIT_MS, stop, RAW)  # a family prefix covers events.raw|
    for sock in (telemetry, family, pub):
        sock.close(0)


def test_any_subscription_counts_without_a_topic(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    pub = publisher(ctx, "inproc://wait-any")
    sub = subscriber(ctx, "inproc://wait-any", [find_topic("telemetry").wire])
    assert wait_for_subscriber(pub, WAIT_MS, threading.Event())
    sub.close(0)
    pub.close(0)
