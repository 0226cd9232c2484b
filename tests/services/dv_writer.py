"""A real dv-processing NetworkWriter on loopback, for the live-input tests."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from proto.events import Events, make_events
from tests.net import free_port

dv = pytest.importorskip("dv_processing")

DEADLINE_S = 10.0


def _events(n: int, t0: int) -> Events:
    i = np.arange(n)
    return make_events(t0 + 5 * i, i % 128, (3 * i) % 96, (i // 3) % 2)


def store(events: Events) -> Any:
    store = dv.EventStore()
    for e in events:
        store.push_back(int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"]))
    return store


def writer_on_free_port(compression: str) -> tuple[Any, int]:
    stream = dv.io.Stream.EventStream(0, "events", "TEST", (128, 96))
    stream.setCompression(getattr(dv.CompressionType, compression))
    for _ in range(5):  # the port was free a moment ago; another process may have taken it since
        port = free_port()
        try:
            return dv.io.NetworkWriter("127.0.0.1", port, stream), port
        except RuntimeError:
            continue
    pytest.fail("no free loopback port for the NetworkWriter")


def wait_for_clients(writer: Any, count: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while writer.getClientCount() != count:
        assert time.monotonic() < deadline, f"the NetworkWriter never saw {count} clients"


SENT = [_events(50, 1_700_000_000_000_000), _events(1, 1_700_000_001_000_000), _events(700, 1_700_000_002_000_000)]
