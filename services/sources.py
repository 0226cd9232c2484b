"""Where the sensor's windows come from: a recording (once or looped) or a live dv stream.

Both yield :class:`~services.pacing.Window` objects. A live source also yields an
*empty* window whenever a read times out, so the sensor's loop keeps turning (stop
flag, telemetry) while the camera sees nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from emulator.io import Recording
from proto.events import empty_events
from services.config import LIVE_SCHEME
from services.dvlive import LiveStream, WriterClosed, open_live
from services.pacing import Window, split_windows, windows

"""Sources starting with this are live dv-processing NetworkWriter streams (dv://HOST:PORT)."""

LIVE_POLL_S = 0.1
"""How long one read of a live stream waits before the loop turns again."""


def parse_live(source: str) -> tuple[str, int]:
    """``dv://HOST:PORT`` → ``(host, port)``; ``ValueError`` naming the source otherwise."""
    host, sep, port = source.removeprefix(LIVE_SCHEME).rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"a live source is dv://HOST:PORT with a port 1-65535, got {source!r}")
    return host, int(port)


def looped(open_source: Callable[[], Recording], window_us: int, loop: bool, stop: threading.Event) -> Iterator[Window]:
    """Windows of one pass, or of endless passes, pass k shifted by k × the first pass's length."""
    origin: int | None = None
    period = 0
    k = 0
    while True:
        last: int | None = None
        for w in windows(_shifted(open_source().chunks, k * period), window_us, origin):
            origin = w.start_us if origin is None else origin
            last = w.end_us
            yield w
        if not loop or stop.is_set() or last is None or origin is None:
            return  # done, stopped, or an empty recording (nothing to loop)
        period = period or last - origin
        k += 1


def _shifted(chunks: Iterator[np.ndarray], shift: int) -> Iterator[np.ndarray]:
    for chunk in chunks:
        if shift:
            chunk = chunk.copy()
            chunk["t"] += np.uint64(shift)
        yield chunk


@dataclass
class LiveSource:
    """A connected dv-processing NetworkWriter stream, cut into windows as packets arrive.

    Nothing is held back waiting for a window to close: each packet's windows go out
    at once (a window split across two packets becomes two batches). ``dropped``
    counts what the stream lost: packets of other streams, and the bytes of a packet
    cut off when the writer went away.
    """

    stream: LiveStream
    dropped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def connect(cls, source: str) -> LiveSource:
        """Connect to ``dv://HOST:PORT`` (``ValueError`` for a malformed source, ``OSError`` if unreachable)."""
        host, port = parse_live(source)
        return cls(open_live(host, port))

    @property
    def size(self) -> tuple[int, int]:
        return self.stream.info.width, self.stream.info.height

    def windows(self, window_us: int, stop: threading.Event) -> Iterator[Window]:
        """Windows until ``stop`` is set or the writer goes away; an empty window per idle read."""
        origin: int | None = None
        try:
            while not stop.is_set():
                events = self.stream.read(LIVE_POLL_S)
                self.dropped.update(self.stream.dropped)
                if events is None or len(events) == 0:
                    yield Window(empty_events(), 0, 0)  # idle: let the loop turn
                    continue
                origin = int(events["t"][0]) if origin is None else origin
                yield from split_windows(events, origin, window_us)
        except WriterClosed as closed:
            if closed.pending:
                self.dropped["cut_packet_bytes"] = self.dropped.get("cut_packet_bytes", 0) + closed.pending
        finally:
            self.stream.close()
