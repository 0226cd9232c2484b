"""Signals only set a stop flag; loops check it (gunicorn's worker pattern)."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def stop_on_signals(
    stop: threading.Event, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """Make each of ``signals`` set ``stop`` (call from the main thread)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in signals:
        signal.signal(sig, handler)
