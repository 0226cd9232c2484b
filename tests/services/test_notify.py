"""systemd's notify protocol: datagrams to a socket we bind ourselves, and the watchdog period."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.notify import Notifier, parse


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound unix datagram socket and the ``NOTIFY_SOCKET`` value that names it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        abstract = f"speck-edge-test-{uuid.uuid4().hex}"
        sock.bind("\0" + abstract)
        name = "@" + abstract
    sock.settimeout(5.0)  # a blocking read with a deadline, never a sleep
    yield sock, name
    sock.close()


def _next(sock: socket.socket) -> dict[str, str]:
    return parse(sock.recv(4096))


def test_ready_watchdog_stopping_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    notifier = Notifier({"NOTIFY_SOCKET": name})
    assert notifier.enabled
    try:
        notifier.ready("chip running")
        assert _next(sock) == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "chip running"}
        notifier.watchdog()
        assert _next(sock) == {"WATCHDOG": "1"}
        notifier.stopping()
        assert _next(sock) == {"STOPPING": "1"}
        notifier.ready()  # without a status: no STATUS line
        assert _next(sock) == {"READY": "1", "MAINPID": str(os.getpid())}
    finally:
        notifier.close()


def test_a_supervisor_that_went_away_is_ignored(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    notifier.ready()  # nothing listens there: no exception
    notifier.watchdog()
    notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_s is None
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()
    assert notifier._sock is None  # no socket was ever opened


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "3000000"}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_period_is_half_the_timeout_for_this_process(env: dict[str, str], expected: float | None) -> None:
    assert Notifier({"NOTIFY_SOCKET": "@x", **env}).watchdog_s == expected


def test_parse_reads_key_value_lines() -> None:
    assert parse(b"READY=1\nSTATUS=a=b\nno equals sign\nMAINPID=42") == {
        "READY": "1",
        "STATUS": "a=b",
        "MAINPID": "42",
    }
    assert parse(b"") == {}
    assert parse(b"STATUS=\xff") == {"STATUS": "\ufffd"}
