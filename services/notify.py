"""systemd's notify protocol, stdlib only: ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``, ``STATUS=…``.

A datagram to the unix socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` is the abstract
namespace). Without the variable every call does nothing, so services call it unconditionally.
``speck-edge up`` speaks the same protocol to its children (one socket each), so readiness and
the watchdog work the same under systemd and under ``up``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends notify messages to ``NOTIFY_SOCKET``; the watchdog period from ``WATCHDOG_USEC``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s: float | None = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None
        """How often to send ``WATCHDOG=1`` (half the configured timeout), or None."""
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *fields: str) -> None:
        """One message of ``KEY=value`` lines; errors (a supervisor that went away) are ignored."""
        if not self._address:
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError:
            pass

    def ready(self, status: str = "") -> None:
        self.send("READY=1", f"MAINPID={os.getpid()}", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def parse(datagram: bytes) -> dict[str, str]:
    """The ``KEY=value`` lines of one notify datagram."""
    out = {}
    for line in datagram.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out
