"""The sensor service: replay a recording (or relay a live dv stream) as event batches.

Events are cut into event-time windows of ``window_us`` (see :mod:`services.pacing`);
a window goes out as one :class:`~proto.messages.EventBatch` on topic ``events.raw``
as soon as its *last* event is due on the monotonic clock scaled by ``speed`` — the
earliest a camera could have delivered all of it. Windows that are due together
(``speed=None``, i.e. as fast as possible; a high speed; or a sender that fell behind)
go out merged into one batch of up to ``MAX_BATCH_EVENTS``, so the replay never
drifts behind; sequence numbers stay gap-free. A live source publishes each window
as soon as its packet arrives. With ``loop`` the recording restarts at its end,
shifted forward so event time keeps increasing downstream.

Every ``telemetry_interval_s`` of wall time — also while waiting or idle — and at
the end, the sensor publishes its counters on ``telemetry``: ``events_sent``,
``batches_sent``, ``passes``, ``late_batches`` (published more than ``LATE_NS``
after due), ``max_late_us``, ``reordered_events`` (timestamps that went backwards
in the source, sorted into order), and for live input the ``dropped`` group.

A damaged recording stops the replay with :class:`~emulator.io.RecordingError`
after everything before the damage has been published (``lenient`` instead ends
the replay there quietly, reporting the damage in ``damage``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import zmq

from emulator.io import Recording, RecordingError, open_recording
from proto.codec import encode
from proto.events import concat_events
from proto.messages import EventBatch, Telemetry
from proto.topics import find_topic
from services import telemetry as tm
from services.clock import Clock
from services.config import LIVE_SCHEME
from services.pacing import Pacer, Window, check_speed
from services.realtime import current_priority
from services.sockets import STOP_POLL_MS, send_frames, wait_for_subscriber
from services.sources import LiveSource, looped, parse_live

LATE_NS = 2_000_000
"""A batch published more than 2 ms after it was due counts as late."""

MAX_BATCH_EVENTS = 16_384
"""Windows that fall due together (speed "max", a high speed, or a sender that fell
behind) are merged into one batch of at least this many events, or fewer once the
next window is not due yet: per-message cost is amortised and nothing falls behind."""

REPLAY_CHUNK_EVENTS = 4096
"""Events read, decoded and cut into windows at a time during replay: ~0.2 ms of work,
so the next read never stalls the pacing for long. (A reader thread was tried: it
stalls the pacing loop worse, by holding the GIL for up to the 5 ms switch interval.)"""


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
    must_have_subscriber: bool = True
    """With ``wait_subscriber_s``: no ``events.raw`` subscriber in time is an error (``replay
    --wait-subscriber``), or the replay starts anyway (the sensor service: a filter that is slow to
    come must not stop the camera)."""
    lenient: bool = False

    def __post_init__(self) -> None:
        check_speed(self.speed)
        if self.live:
            parse_live(self.source)
        if self.wait_subscriber_s < 0:
            raise ValueError(f"wait_subscriber_s must be >= 0, got {self.wait_subscriber_s}")
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
    reordered_events: int = 0
    telemetry_seq: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    damage: RecordingError | None = None

    def sent(self, n_events: int, late_ns: int) -> None:
        self.events_sent += n_events
        self.batches_sent += 1
        self.late_batches += late_ns > LATE_NS
        self.max_late_us = max(self.max_late_us, late_ns / 1000)


@dataclass
class _Pending:
    """Windows that are due but not yet sent, and when the first of them fell due."""

    windows: list[Window] = field(default_factory=list)
    events: int = 0
    due_ns: int = 0

    def add(self, w: Window, due_ns: int) -> None:
        self.due_ns = self.due_ns if self.windows else due_ns
        self.windows.append(w)
        self.events += len(w.events)


class Sensor:
    """Runs one replay: a frozen config, an outside clock and socket, a stop flag."""

    def __init__(
        self,
        cfg: SensorConfig,
        sock: zmq.Socket[bytes],
        clock: Clock,
        stop: threading.Event,
        *,
        data_sock: zmq.Socket[bytes] | None = None,
        telemetry_stream: str | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        """``sock`` publishes telemetry, and the events unless ``data_sock`` (a PUSH: lossless, blocking
        while the consumer is busy) is given; telemetry's stream is ``telemetry_stream`` or ``cfg.stream``."""
        self.cfg, self.sock, self.clock, self.stop = cfg, sock, clock, stop
        self.data_sock = data_sock
        self.telemetry_stream = telemetry_stream or cfg.stream
        self.heartbeat = heartbeat
        """Called with every telemetry message (every interval, also while idle): the systemd watchdog."""
        self._started_ns = clock.monotonic_ns()
        self.counters = SensorCounters()
        self._next_telemetry_ns = 0
        self._live: LiveSource | None = None
        self._recording: Recording | None = None
        self._size = (0, 0)

    def run(self) -> SensorCounters:
        """Publish every window until the source ends (or forever with ``loop``) or stop is set."""
        source = self._source()
        if self.cfg.wait_subscriber_s > 0 and not self._await_subscriber():
            return self.counters  # stopped while waiting
        pending = _Pending()
        try:
            self._loop(source, pending)
        finally:
            if pending.windows:  # due already: they go out even when stopping or failing
                self._publish(pending)
            if self._recording is not None and self._recording.damage is not None:
                self.counters.damage = self._recording.damage
            self._telemetry()
        return self.counters

    def _loop(self, source: Iterator[Window], pending: _Pending) -> None:
        paced = self.cfg.speed is not None and self._live is None
        pacer: Pacer | None = None
        for w in source:
            if self.stop.is_set() and self._live is None:
                return  # (a live source ends itself on stop, after handing over what it has)
            self.counters.reordered_events += w.reordered
            if len(w.events) == 0:
                self._tick()
                continue
            due = 0
            if paced:
                pacer = pacer or Pacer(self.clock.monotonic_ns(), int(w.events["t"][0]), self.cfg.speed or 1.0)
                due = pacer.due_ns(int(w.events["t"][-1]))
                if pending.windows and due > self.clock.monotonic_ns():
                    self._publish(pending)  # the next window is not due yet: send what is
                if self._wait(due):
                    return
            pending.add(w, due)
            if self._live is not None or pending.events >= MAX_BATCH_EVENTS:
                self._publish(pending)

    def _source(self) -> Iterator[Window]:
        cfg = self.cfg
        if cfg.live:
            self._live = LiveSource.connect(cfg.source)
            self._size = self._live.size
            return self._live.windows(cfg.window_us, self.stop)
        info = open_recording(cfg.source).info  # fail fast on a bad file, before any publishing
        self._size = (info.width, info.height)
        return looped(self._open, cfg.window_us, cfg.loop, self.stop)

    def _open(self) -> Recording:
        rec = open_recording(self.cfg.source, chunk_events=REPLAY_CHUNK_EVENTS, lenient=self.cfg.lenient)
        self.counters.passes += 1
        self._recording = rec  # a lenient read keeps its damage here
        return rec

    def _await_subscriber(self) -> bool:
        """Wait for a first subscriber; False if stopped first, ``TimeoutError`` if none came."""
        topic = find_topic("events.raw").wire if self.data_sock is None else None
        if wait_for_subscriber(self.sock, int(self.cfg.wait_subscriber_s * 1000), self.stop, topic):
            return True
        if self.stop.is_set():
            return False
        if not self.cfg.must_have_subscriber:
            return True
        raise TimeoutError(f"no subscriber connected to {self.cfg.endpoint} within {self.cfg.wait_subscriber_s} s")

    def _wait(self, due_ns: int) -> bool:
        """Wait until ``due_ns``, sending telemetry on time meanwhile; True if stopped."""
        while self._next_telemetry_ns < due_ns:
            if self.clock.wait_until(self._next_telemetry_ns, self.stop):
                return True
            self._telemetry()
        return self.clock.wait_until(due_ns, self.stop)

    def _tick(self) -> None:
        if self.clock.monotonic_ns() >= self._next_telemetry_ns:
            self._telemetry()

    def _publish(self, pending: _Pending) -> None:
        """Send the pending windows (several only when they fell due together) as one batch."""
        ws = pending.windows
        late_ns = self.clock.monotonic_ns() - pending.due_ns if pending.due_ns else 0
        events = ws[0].events if len(ws) == 1 else concat_events([w.events for w in ws])
        now = self.clock.wall_ns()
        msg = EventBatch(
            stream=self.cfg.stream, seq=self.counters.batches_sent, sent_ns=now, origin_ns=now,
            events=events, width=self._size[0], height=self._size[1],
        )  # fmt: skip
        if self.data_sock is None:
            send_frames(self.sock, encode(msg))
        elif not self._send_blocking(self.data_sock, encode(msg)):
            return  # stopped while the consumer was busy: the batch stays pending
        self.counters.sent(len(events), late_ns)
        pending.windows, pending.events = [], 0
        self._tick()

    def _send_blocking(self, sock: zmq.Socket[bytes], frames: list[bytes | memoryview]) -> bool:
        """Send once the consumer takes it (telemetry stays on time meanwhile); False if stopped."""
        while not self.stop.is_set():
            if sock.poll(STOP_POLL_MS, zmq.POLLOUT):
                send_frames(sock, frames)
                return True
            self._tick()
        return False

    def _telemetry(self) -> None:
        c = self.counters
        if self._live is not None:
            c.dropped = dict(self._live.dropped)
        values = {
            "events_sent": c.events_sent, "batches_sent": c.batches_sent, "passes": c.passes,
            "late_batches": c.late_batches, "max_late_us": c.max_late_us, "reordered_events": c.reordered_events,
            "up": 1, "uptime_s": (self.clock.monotonic_ns() - self._started_ns) / 1e9,
            tm.REALTIME_PRIORITY: current_priority(),
        }  # fmt: skip
        groups = {"dropped": c.dropped} if c.dropped else {}
        msg = Telemetry(
            stream=self.telemetry_stream,
            seq=c.telemetry_seq,
            sent_ns=self.clock.wall_ns(),
            values=values,
            groups=groups,
        )
        send_frames(self.sock, encode(msg))
        c.telemetry_seq += 1
        if self.heartbeat is not None:
            self.heartbeat()
        self._next_telemetry_ns = self.clock.monotonic_ns() + int(self.cfg.telemetry_interval_s * 1e9)
