"""The one loop every pipeline stage runs in: poll → decode → pure step → encode → send.

A :class:`Stage` is the service's logic without sockets (``handle`` one input message, say what to
report); :class:`Runtime` owns the sockets, the clock and the stop flag:

* polls its inputs with a timeout (≤ :data:`~services.sockets.STOP_POLL_MS`) so a stop flag set by
  SIGTERM/SIGINT is seen at once; drains what is queued in bursts and handles a burst's batches
  joined into one (:mod:`services.coalesce`), so a stage that fell behind catches up at once;
* a frame set that fails to decode is counted by reason (``dropped_messages{decode_<reason>}``),
  logged once per reason per telemetry interval, dropped, and the loop goes on; sequence gaps of
  the upstream PUB are counted (``dropped_messages{sequence_gap}``). Any other exception ends
  the process for its supervisor (systemd, ``speck-edge up``) to restart;
* every ``telemetry_interval_s`` publishes the stage's telemetry plus its own counters (see
  :mod:`services.telemetry`); pets the systemd watchdog every half ``WATCHDOG_USEC``, whatever
  that interval; ``READY=1`` once its sockets are set up, ``STOPPING=1`` on the way out
  (:mod:`services.notify`);
* lossless outputs (PUSH) block while the next stage is busy — back-pressure — but never longer
  than the stop flag allows.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import zmq

from proto.codec import decode, encode
from proto.errors import ProtocolError
from proto.fields import Number
from proto.messages import EventBatch, Message, Prediction, SpikeBatch, Telemetry
from proto.sequence import SequenceTracker
from services import telemetry as tm
from services.clock import Clock
from services.coalesce import coalesce
from services.notify import Notifier
from services.realtime import current_priority
from services.sockets import STOP_POLL_MS, send_frames

log = logging.getLogger("speck_edge.runtime")

NO_SUBSCRIBER = "no_subscriber"
"""Drop reason: data published while no subscriber was connected (e.g. the next stage restarting)."""
ALWAYS_REPORTED = (tm.SEQUENCE_GAP, NO_SUBSCRIBER)
BURST = 256
"""Messages taken from one input before looking at the clock again."""

Groups = dict[str, dict[str, Number]]


class Outbox:
    """Envelopes for a stage's outputs: its stream, a gap-free ``seq`` per topic, ``sent_ns`` now."""

    def __init__(self, stream: str, clock: Clock) -> None:
        self.stream, self.clock = stream, clock
        self._seq: Counter[str] = Counter()

    def envelope(self, topic: str, origin_ns: int) -> dict[str, Any]:
        seq = self._seq[topic]
        self._seq[topic] = seq + 1
        return {
            "stream": self.stream,
            "seq": seq,
            "sent_ns": self.clock.wall_ns(),
            "origin_ns": origin_ns,
            "topic": topic,
        }


class Stage(Protocol):
    """A service's logic: what it listens to, what it does with one message, what it reports."""

    name: str
    """The service's name: the ``stream`` of its telemetry."""
    input_topic: str

    def handle(self, msg: Message, out: Outbox) -> Sequence[Message]:
        """The messages to send for one input (of ``input_topic``'s kind)."""
        ...

    def telemetry(self) -> tuple[dict[str, Number], Groups]:
        """Stage-specific values and groups (cumulative counters, latest gauges)."""
        ...


def records(msg: Message) -> int:
    """Records a data message carries: events, spikes, or 1 prediction."""
    match msg:
        case EventBatch():
            return len(msg.events)
        case SpikeBatch():
            return len(msg.spikes)
        case Prediction():
            return 1
    return 0


@dataclass
class RuntimeCounters:
    messages_in: int = 0
    messages_out: int = 0
    events_in: int = 0
    events_out: int = 0
    dropped_messages: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(ALWAYS_REPORTED, 0)))
    """By reason; the loss reasons are reported from the start at 0, so dashboards show 0, not "no data"."""
    dropped_events: Counter[str] = field(default_factory=lambda: Counter({NO_SUBSCRIBER: 0}))


@dataclass
class Sockets:
    """A stage's sockets: data inputs (SUB or PULL), the data output (PUB or PUSH; None for none) and
    the PUB its telemetry goes out on (may be the data output)."""

    inputs: list[zmq.Socket[bytes]]
    output: zmq.Socket[bytes] | None
    telemetry: zmq.Socket[bytes]
    lossless_output: bool = False


class Runtime:
    """Runs one :class:`Stage` until ``stop`` is set."""

    def __init__(
        self,
        stage: Stage,
        sockets: Sockets,
        clock: Clock,
        stop: threading.Event,
        telemetry_interval_s: float = 1.0,
        notifier: Notifier | None = None,
    ) -> None:
        self.stage, self.sockets, self.clock, self.stop = stage, sockets, clock, stop
        self.interval_ns = int(telemetry_interval_s * 1e9)
        self.notifier = notifier or Notifier({})
        self.counters = RuntimeCounters()
        self.sequences = SequenceTracker()
        self._out = Outbox(stage.name, clock)
        self._started_ns = clock.monotonic_ns()
        self._next_tick_ns = 0
        self._next_watchdog_ns = 0
        self._logged: set[str] = set()
        self._hop_us: list[float] = []
        self._handle_us: list[float] = []
        self._poller = zmq.Poller()
        for sock in sockets.inputs:
            self._poller.register(sock, zmq.POLLIN)
        self._xpub = sockets.output if sockets.output is not None and not sockets.lossless_output else None
        self.subscribed: set[bytes] = set()
        """Topics (wire form) with a subscriber on the XPUB output: data sent to none is counted lost."""
        if self._xpub is not None:
            self._poller.register(self._xpub, zmq.POLLIN)

    def await_downstream(self, topic: bytes, timeout_s: float) -> bool:
        """Before reading any input, wait up to ``timeout_s`` until the XPUB output has a subscriber
        to ``topic`` (the next stage): after a restart its first outputs then reach it instead of being
        counted ``no_subscriber``. Input queues up meanwhile. True if one came."""
        if self._xpub is None:
            return False
        deadline = self.clock.monotonic_ns() + int(timeout_s * 1e9)
        while topic not in self.subscribed and not self.stop.is_set():
            left_ms = (deadline - self.clock.monotonic_ns()) // 1_000_000
            if left_ms <= 0:
                return False
            if self._xpub.poll(min(left_ms, STOP_POLL_MS), zmq.POLLIN):
                self._subscriptions(self._xpub)
        return topic in self.subscribed

    def run(self, await_topic: bytes | None = None, await_s: float = 0.0) -> RuntimeCounters:
        """Handle input until ``stop`` is set; first :meth:`await_downstream` ``await_topic`` if given."""
        self.notifier.ready(f"{self.stage.name} running")
        if await_topic is not None:
            self.await_downstream(await_topic, await_s)
        try:
            while not self.stop.is_set():
                self.poll_once(STOP_POLL_MS)
        finally:
            self.notifier.stopping()
            self.publish_telemetry()
        return self.counters

    def poll_once(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for input, handle what is queued, tick if due; messages handled."""
        now = self.clock.monotonic_ns()
        if now >= self._next_tick_ns:
            self.tick()
        due_ns = self._next_tick_ns
        if self.notifier.watchdog_s is not None:  # its own period: a long telemetry interval must not starve it
            if now >= self._next_watchdog_ns:
                self.notifier.watchdog()
                self._next_watchdog_ns = now + int(self.notifier.watchdog_s * 1e9)
            due_ns = min(due_ns, self._next_watchdog_ns)
        wait_ms = max(0, min(timeout_ms, (due_ns - now) // 1_000_000 + 1))
        handled = 0
        for sock, _ in self._poller.poll(wait_ms):
            if self._xpub is not None and sock is self._xpub:
                self._subscriptions(self._xpub)
                continue
            queued: list[Sequence[object]] = []
            for _ in range(BURST):
                try:
                    # copied: for messages of a few kB, bytes are cheaper than zmq.Frame objects
                    queued.append(sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
            self.receive_many(queued)
            handled += len(queued)
            if self.stop.is_set():
                return handled
        return handled

    def _subscriptions(self, sock: zmq.Socket[bytes]) -> None:
        """Read (un)subscriptions from the XPUB: ``\\x01topic`` / ``\\x00topic``."""
        while True:
            try:
                note = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if note[:1] == b"\x01":
                self.subscribed.add(note[1:])
            elif note[:1] == b"\x00":
                self.subscribed.discard(note[1:])

    def receive(self, frames: Sequence[object]) -> None:
        """Decode one frame set and run the stage on it (malformed: counted, logged, dropped)."""
        self.receive_many([frames])

    def receive_many(self, queued: Sequence[Sequence[object]]) -> None:
        """Decode the frame sets found queued, count each, and run the stage on them coalesced
        (:mod:`services.coalesce`): a backlog costs one message's overhead, not one per message."""
        messages = [m for m in map(self._decode, queued) if m is not None]
        if not messages:
            return
        started = self.clock.monotonic_ns()
        for msg in coalesce(messages):
            for out in self.stage.handle(msg, self._out):
                self.send(out)
        self._handle_us.append((self.clock.monotonic_ns() - started) / 1e3)

    def _decode(self, frames: Sequence[object]) -> Message | None:
        """The message, counted (records, sequence gaps, hop time); None for a malformed one (counted
        by reason, logged once per reason per interval)."""
        try:
            msg = decode(list(frames))
        except ProtocolError as e:
            reason = f"{tm.DECODE_PREFIX}{e.reason}"
            self.counters.dropped_messages[reason] += 1
            if reason not in self._logged:
                self._logged.add(reason)
                log.warning("%s: dropped a malformed message (%s): %s", self.stage.name, e.reason, e)
            return None
        c = self.counters
        c.messages_in += 1
        c.events_in += records(msg)
        gap = self.sequences.track(msg.stream, msg.topic, msg.seq)
        if gap:
            c.dropped_messages[tm.SEQUENCE_GAP] += gap
        self._hop_us.append((self.clock.wall_ns() - msg.sent_ns) / 1e3)
        return msg

    def send(self, msg: Message) -> None:
        frames = encode(msg)
        if isinstance(msg, Telemetry) or self.sockets.output is None:
            send_frames(self.sockets.telemetry, frames)
        elif self.sockets.lossless_output:
            if not self._send_lossless(self.sockets.output, frames):
                self.counters.dropped_events["stopped_unsent"] += records(msg)
                return  # stopped before the next stage took it: not sent, so not counted out
        else:
            if self._xpub is not None and not any(bytes(frames[0]).startswith(t) for t in self.subscribed):
                self.counters.dropped_messages[NO_SUBSCRIBER] += 1  # PUB drops it: nobody listens
                self.counters.dropped_events[NO_SUBSCRIBER] += records(msg)
            send_frames(self.sockets.output, frames)
        if not isinstance(msg, Telemetry):
            self.counters.messages_out += 1
            self.counters.events_out += records(msg)

    def _send_lossless(self, sock: zmq.Socket[bytes], frames: list[bytes | memoryview]) -> bool:
        """Send, waiting while the next stage is busy (back-pressure), until sent (True) or stopped."""
        while not self.stop.is_set():
            if sock.poll(STOP_POLL_MS, zmq.POLLOUT):
                send_frames(sock, frames)
                return True
            self.tick_if_due()
        self.counters.dropped_messages["stopped_unsent"] += 1
        return False

    def tick_if_due(self) -> None:
        if self.clock.monotonic_ns() >= self._next_tick_ns:
            self.tick()

    def tick(self) -> None:
        self.publish_telemetry()
        self._logged.clear()
        self._next_tick_ns = self.clock.monotonic_ns() + self.interval_ns

    def _timing(self) -> dict[str, Number]:
        """Percentiles over the interval of the hop (upstream send → here, wall clock, per message) and
        of handling one burst (decode excluded; step, encode and send included), µs; then starts afresh."""
        out: dict[str, Number] = {}
        for name, values in (("hop", self._hop_us), ("handle", self._handle_us)):
            if values:
                p50, p99 = np.percentile(values, [50, 99])
                out |= {f"{name}_p50": float(p50), f"{name}_p99": float(p99), f"{name}_max": max(values)}
            values.clear()
        return out

    def publish_telemetry(self) -> None:
        values, groups = self.stage.telemetry()
        c = self.counters
        values = {
            tm.SERVICE_UP: 1, tm.UPTIME_S: (self.clock.monotonic_ns() - self._started_ns) / 1e9, tm.PID: os.getpid(),
            tm.REALTIME_PRIORITY: current_priority(),
            tm.MESSAGES_IN: c.messages_in, tm.MESSAGES_OUT: c.messages_out,
            tm.EVENTS_IN: c.events_in, tm.EVENTS_OUT: c.events_out, **values,
        }  # fmt: skip
        stage_drops = groups.get(tm.DROPPED_EVENTS, {})
        groups = {
            **groups,
            tm.DROPPED_MESSAGES: dict(c.dropped_messages),
            tm.DROPPED_EVENTS: {**stage_drops, **c.dropped_events},
        }
        groups[tm.TIMING_US] = self._timing()
        groups = {k: v for k, v in groups.items() if v}
        self.send(Telemetry(values=values, groups=groups, **self._out.envelope("telemetry", 0)))
