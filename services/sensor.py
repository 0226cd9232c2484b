"""The sensor service: replay a recording (or relay a live dv stream) as event batches.

Each event-time window of ``window_us`` becomes one :class:`~proto.messages.EventBatch`
on topic ``events.raw``, published when its window closes on the wall clock
(see :mod:`services.pacing`) as soon as its *last* event is due — the earliest a
camera could have delivered all of it — or as fast as possible with ``speed=None`` ("as fast as possible")
and for live input. Windows that are already due together (the sender fell behind, or
a high speed) go out as one merged batch (``MAX_BATCH_EVENTS``), so the replay
never drifts behind; its sequence numbers stay gap-free. With ``loop`` the recording restarts at its end; each pass is
shifted by a whole number of windows past the previous one, so event time keeps
increasing and downstream stages never see time go backwards.

Every ``telemetry_interval_s`` (wall time) and at the end the service publishes
its counters on ``telemetry``: ``events_sent``, ``batches_sent``, ``passes``,
``late_batches`` (published more than ``LATE_NS`` after due) and ``max_late_us``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import zmq

from emulator.io import Recording, open_recording
from proto.codec import encode
from proto.events import concat_events
from proto.messages import EventBatch, Telemetry
from services.clock import Clock
from services.pacing import Pacer, Window, check_speed, windows
from services.sockets import send_frames, wait_for_subscriber

LATE_NS = 2_000_000
"""A batch published more than 2 ms after it was due counts as late."""

MAX_BATCH_EVENTS = 16_384
"""Windows that fall due together (replay faster than the sender can go one message
per window, or speed "max") are merged into one batch of up to about this many
events: per-message cost is then amortised and nothing falls behind."""

REPLAY_CHUNK_EVENTS = 4096
"""Events read, decoded and cut into windows at a time during replay: ~0.2 ms of work,
so the next read never stalls the pacing for long. (A reader thread was tried: it
stalls the pacing loop worse, by holding the GIL for up to the 5 ms switch interval.)"""

LIVE_SCHEME = "dv://"
"""Sources starting with this are live dv-processing NetworkWriter streams (dv://host:port)."""

LIVE_POLL_S = 0.1
"""How long one read of a live stream waits before the stop flag is checked again."""


@dataclass(frozen=True)
class SensorConfig:
    """What to replay and how; ``speed=None`` means as fast as possible."""

    source: str
    endpoint: str
    speed: float | None = 1.0
    loop: bool = False
    window_us: int = 1000
    stream: str = "sensor"
    telemetry_interval_s: float = 1.0
    wait_subscriber_s: float = 0.0

    def __post_init__(self) -> None:
        check_speed(self.speed)
        if self.window_us < 1:
            raise ValueError(f"window_us must be >= 1, got {self.window_us}")
        if self.telemetry_interval_s <= 0:
            raise ValueError(f"telemetry_interval_s must be > 0, got {self.telemetry_interval_s}")

    @property
    def live(self) -> bool:
        return self.source.startswith(LIVE_SCHEME)


@dataclass(slots=True)
class SensorCounters:
    """What the sensor has done so far (service-level state, updated in place)."""

    events_sent: int = 0
    batches_sent: int = 0
    passes: int = 0
    late_batches: int = 0
    max_late_us: float = 0.0
    telemetry_seq: int = 0

    def sent(self, n_events: int, late_ns: int) -> None:
        self.events_sent += n_events
        self.batches_sent += 1
        self.late_batches += late_ns > LATE_NS
        self.max_late_us = max(self.max_late_us, late_ns / 1000)


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


def live_chunks(host: str, port: int, stop: threading.Event) -> tuple[tuple[int, int], Iterator[np.ndarray]]:
    """Sensor size and event chunks of a dv-processing NetworkWriter stream, until stopped."""
    from services.dvlive import WriterClosed, open_live

    stream = open_live(host, port)

    def chunks() -> Iterator[np.ndarray]:
        try:
            while not stop.is_set():
                events = stream.read(LIVE_POLL_S)
                if events is not None and len(events):
                    yield events
        except WriterClosed:
            return  # the camera's writer went away: the stream has ended (the last window still goes out)
        finally:
            stream.close()

    return (stream.info.width, stream.info.height), chunks()


class Sensor:
    """Runs one replay: a frozen config, an outside clock and socket, a stop flag."""

    def __init__(self, cfg: SensorConfig, sock: zmq.Socket[bytes], clock: Clock, stop: threading.Event) -> None:
        self.cfg, self.sock, self.clock, self.stop = cfg, sock, clock, stop
        self.counters = SensorCounters()
        self._next_telemetry_ns = 0

    def run(self) -> SensorCounters:
        """Publish every window until the source ends (or forever with ``loop``) or stop is set."""
        size, source = self._source()
        if self.cfg.wait_subscriber_s > 0 and not wait_for_subscriber(
            self.sock, int(self.cfg.wait_subscriber_s * 1000)
        ):
            raise TimeoutError(f"no subscriber connected to {self.cfg.endpoint} within {self.cfg.wait_subscriber_s} s")
        paced = self.cfg.speed is not None and not self.cfg.live
        pending: list[Window] = []
        pending_events = 0
        due_first = 0
        pacer: Pacer | None = None
        for w in source:
            if self.stop.is_set() and not self.cfg.live:
                break  # (a live source ends itself on stop, after handing over its last window)
            due = 0
            if paced:
                pacer = pacer or Pacer(self.clock.monotonic_ns(), int(w.events["t"][0]), self.cfg.speed or 1.0)
                due = pacer.due_ns(int(w.events["t"][-1]))
            if pending and (due > self.clock.monotonic_ns() or pending_events >= MAX_BATCH_EVENTS):
                self._publish(pending, size, due_first)
                pending, pending_events = [], 0
            if paced and self.clock.wait_until(due, self.stop):
                break
            if not paced:
                self._publish([w], size, 0)
                continue
            due_first = due if not pending else due_first
            pending.append(w)
            pending_events += len(w.events)
        if pending and not self.stop.is_set():
            self._publish(pending, size, due_first)
        self._telemetry()
        return self.counters

    def _source(self) -> tuple[tuple[int, int], Iterator[Window]]:
        cfg = self.cfg
        if cfg.live:
            host, _, port = cfg.source.removeprefix(LIVE_SCHEME).rpartition(":")
            size, chunks = live_chunks(host, int(port), self.stop)
            return size, windows(chunks, cfg.window_us)
        info = open_recording(cfg.source).info  # fail fast on a bad file, before any publishing
        return (info.width, info.height), looped(self._open, cfg.window_us, cfg.loop, self.stop)

    def _open(self) -> Recording:
        rec = open_recording(self.cfg.source, chunk_events=REPLAY_CHUNK_EVENTS)
        self.counters.passes += 1
        return rec

    def _publish(self, ws: list[Window], size: tuple[int, int], due_ns: int) -> None:
        """Send windows (several only when they fell due together) as one batch."""
        late_ns = self.clock.monotonic_ns() - due_ns if due_ns else 0
        events = ws[0].events if len(ws) == 1 else concat_events([w.events for w in ws])
        now = self.clock.wall_ns()
        msg = EventBatch(
            stream=self.cfg.stream, seq=self.counters.batches_sent, sent_ns=now, origin_ns=now,
            events=events, width=size[0], height=size[1],
        )  # fmt: skip
        send_frames(self.sock, encode(msg))
        self.counters.sent(len(events), late_ns)
        if self.clock.monotonic_ns() >= self._next_telemetry_ns:
            self._telemetry()

    def _telemetry(self) -> None:
        c = self.counters
        values = {
            "events_sent": c.events_sent, "batches_sent": c.batches_sent, "passes": c.passes,
            "late_batches": c.late_batches, "max_late_us": c.max_late_us,
        }  # fmt: skip
        msg = Telemetry(stream=self.cfg.stream, seq=c.telemetry_seq, sent_ns=self.clock.wall_ns(), values=values)
        send_frames(self.sock, encode(msg))
        c.telemetry_seq += 1
        self._next_telemetry_ns = self.clock.monotonic_ns() + int(self.cfg.telemetry_interval_s * 1e9)
