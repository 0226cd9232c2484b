"""ZeroMQ socket set-up shared by every service: LINGER=0, explicit high-water marks."""

from __future__ import annotations

import threading
import time

import zmq

STOP_POLL_MS = 100
"""Longest a blocking wait goes without looking at the stop flag."""

DEFAULT_HWM = 100_000
"""Messages queued per peer before PUB drops: ~100 s of 1 ms batches, so only a dead
or stuck subscriber ever loses data (and receivers count every gap by sequence)."""


def publisher(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, *, hwm: int = DEFAULT_HWM) -> zmq.Socket[bytes]:
    """An XPUB bound to ``endpoint``: a PUB that also sees subscriptions arrive.

    Seeing subscriptions lets a replay wait for its first subscriber without sleeping.
    """
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.bind(endpoint)
    return sock


def subscriber(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, topics: list[bytes], *, hwm: int = DEFAULT_HWM
) -> zmq.Socket[bytes]:
    """A SUB connected to ``endpoint`` and subscribed to each topic prefix."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, hwm)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    return sock


def wait_for_subscriber(
    sock: zmq.Socket[bytes], timeout_ms: int, stop: threading.Event, topic: bytes | None = None
) -> bool:
    """Block until an XPUB socket receives a subscription (one that covers ``topic``, when given: an
    exporter's ``telemetry|`` does not count for data, ``b""`` does); False on timeout or when
    ``stop`` is set."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not stop.is_set() and (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
        if sock.poll(min(left_ms, STOP_POLL_MS), zmq.POLLIN):
            note = sock.recv()
            if note[:1] == b"\x01" and (topic is None or topic.startswith(note[1:])):  # a prefix match
                return True
    return False


_MORE = int(zmq.SNDMORE)
ZERO_COPY_MIN_BYTES = 65_536
"""Frames at least this large are sent zero-copy; smaller ones are cheaper to copy
(pyzmq's own threshold)."""


def send_frames(sock: zmq.Socket[bytes], frames: list[bytes | memoryview]) -> None:
    """Send one multipart message: ``send_multipart`` without its per-call overhead
    (it re-checks every frame and ORs enum flags in Python: ~10 µs a message)."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        sock.send(frame, _MORE if i < last else 0, copy=len(frame) < ZERO_COPY_MIN_BYTES)
