"""Clocks passed into services, so tests can use a fake one and never sleep."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for pacing, wall time for message headers, and a wait."""

    def monotonic_ns(self) -> int: ...

    def wall_ns(self) -> int: ...

    def wait_until(self, deadline_ns: int, stop: threading.Event) -> bool:
        """Block until ``monotonic_ns() >= deadline_ns`` or ``stop`` is set; True if stopped."""
        ...


WAKE_EARLY_NS = 100_000
"""A timed wait oversleeps by 50–150 µs (kernel timer slack); waking this much early
centres the pacing error on zero instead of making every batch late. (Spinning
through the last stretch was tried: on 2 cores it starves ZeroMQ's I/O threads and
does worse.)"""


class SystemClock:
    """The real clocks: ``time.monotonic_ns`` and ``time.time_ns``."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self) -> int:
        return time.time_ns()

    def wait_until(self, deadline_ns: int, stop: threading.Event) -> bool:
        """Block until about ``deadline_ns`` (up to ``WAKE_EARLY_NS`` early) on the
        monotonic clock, or until ``stop`` is set; True if stopped."""
        remaining = deadline_ns - time.monotonic_ns() - WAKE_EARLY_NS
        if remaining > 0:
            return stop.wait(remaining / 1e9)
        return stop.is_set()


class FakeClock:
    """A clock that only moves when waited on: ``wait_until`` jumps straight to the deadline."""

    def __init__(self, start_ns: int = 0, wall_offset_ns: int = 1_700_000_000 * 10**9) -> None:
        self.now = start_ns
        self.wall_offset_ns = wall_offset_ns

    def monotonic_ns(self) -> int:
        return self.now

    def wall_ns(self) -> int:
        return self.now + self.wall_offset_ns

    def wait_until(self, deadline_ns: int, stop: threading.Event) -> bool:
        self.now = max(self.now, deadline_ns)
        return stop.is_set()
