"""The runtime loop over ``inproc://`` sockets in one process: a whole pipeline, malformed input,
sequence gaps, publishing to nobody, and lossless PUSH/PULL with back-pressure and stop."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import zmq

from emulator.attention import MaskParams
from emulator.chip import Chip
from emulator.config import ChipConfig
from proto.codec import decode, encode
from proto.errors import ProtocolError
from proto.events import Events
from proto.messages import EventBatch, Message, Prediction, Telemetry
from proto.topics import find_topic
from services import telemetry as tm
from services.clock import FakeClock
from services.defaults import resolve_chip_config, synthetic_events
from services.filter_stage import FilterStage
from services.readout_stage import ReadoutStage
from services.runtime import NO_SUBSCRIBER, Outbox, Runtime, Sockets, Stage
from services.sockets import publisher, send_frames, subscriber, wait_for_subscriber
from services.stages import ChipStage

Context = zmq.Context[zmq.Socket[bytes]]
RAW = find_topic("events.raw").wire
FILTERED = find_topic("events.filtered").wire
PREDICTION = find_topic("prediction").wire
TELEMETRY = find_topic("telemetry").wire
INTERVAL_S = 1.0
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def config() -> ChipConfig:
    return resolve_chip_config("default")


def _endpoint(name: str) -> str:
    return f"inproc://{name}-{uuid.uuid4().hex}"


def _windows(events: Events, window_us: int = 1000) -> list[Events]:
    t0 = int(events["t"][0])
    edges = np.searchsorted(events["t"], np.arange(t0, int(events["t"][-1]) + window_us + 1, window_us))
    return [events[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _batch(events: Events, seq: int) -> EventBatch:
    return EventBatch(events=events, width=128, height=128, stream="cam0", seq=seq, sent_ns=1, topic="events.raw")


def _outbox() -> Outbox:
    return Outbox("test", FakeClock())


def _pump(runtimes: Sequence[Runtime], done: Callable[[], bool]) -> None:
    """Poll every runtime in turn until ``done()`` (fail after a deadline: nothing sleeps)."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for r in runtimes:
            r.poll_once(1)


def _drain(sock: zmq.Socket[bytes]) -> Iterator[Message]:
    while sock.poll(0, zmq.POLLIN):
        yield decode(sock.recv_multipart())


def _stage_runtime(ctx: Context, stage: Stage, upstream: str, clock: FakeClock) -> tuple[Runtime, str]:
    """A runtime whose SUB listens to ``upstream`` and whose XPUB is bound at a fresh endpoint."""
    endpoint = _endpoint(stage.name)
    pub = publisher(ctx, endpoint)
    sub = subscriber(ctx, upstream, [find_topic(stage.input_topic).wire])
    sockets = Sockets(inputs=[sub], output=pub, telemetry=pub)
    return Runtime(stage, sockets, clock, threading.Event(), INTERVAL_S), endpoint


def _subscribed(pub: zmq.Socket[bytes]) -> None:
    assert wait_for_subscriber(pub, int(DEADLINE_S * 1000), threading.Event())


def _telemetry(runtime: Runtime, sub: zmq.Socket[bytes], clock: FakeClock) -> Telemetry:
    """The next telemetry ``runtime`` publishes once its interval has passed on the fake clock."""
    clock.now += int(INTERVAL_S * 1e9)
    got: list[Telemetry] = []

    def received() -> bool:  # this tick's, not one still queued from an earlier tick
        got.extend(m for m in _drain(sub) if isinstance(m, Telemetry) and m.stream == runtime.stage.name)
        return bool(got) and got[-1].values[tm.UPTIME_S] == clock.now / 1e9

    _pump([runtime], received)
    return got[-1]


class Single:
    """One filter runtime fed by a test XPUB, watched by a test SUB (telemetry and, if asked, data)."""

    def __init__(self, ctx: Context, config: ChipConfig, data: bool = True) -> None:
        self.clock = FakeClock()
        self.feed_endpoint = _endpoint("feed")
        self.feed = publisher(ctx, self.feed_endpoint)
        self.runtime, endpoint = _stage_runtime(ctx, FilterStage(config), self.feed_endpoint, self.clock)
        self.watch = subscriber(ctx, endpoint, [TELEMETRY, *([FILTERED] if data else [])])
        _subscribed(self.feed)
        wanted = {TELEMETRY, *([FILTERED] if data else [])}
        _pump([self.runtime], lambda: self.runtime.subscribed >= wanted)

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        send_frames(self.feed, list(frames))

    def handle(self, n_in: int) -> None:
        """Pump until the runtime has seen ``n_in`` frame sets (decoded or dropped)."""
        c = self.runtime.counters
        _pump([self.runtime], lambda: c.messages_in + sum(c.dropped_messages.values()) - c.dropped_messages[
            tm.SEQUENCE_GAP] - c.dropped_messages[NO_SUBSCRIBER] >= n_in)  # fmt: skip

    def telemetry(self) -> Telemetry:
        return _telemetry(self.runtime, self.watch, self.clock)


def test_pipeline_predicts_what_the_chip_decides(ctx: Context, config: ChipConfig) -> None:
    windows = _windows(_head(500_000))
    clock = FakeClock()
    feed_endpoint = _endpoint("sensor")
    feed = publisher(ctx, feed_endpoint)
    flt, flt_ep = _stage_runtime(ctx, FilterStage(config), feed_endpoint, clock)
    chip, chip_ep = _stage_runtime(ctx, ChipStage(config, MaskParams(mask_ratio=0.0)), flt_ep, clock)
    readout, readout_ep = _stage_runtime(ctx, ReadoutStage(config), chip_ep, clock)
    watch = subscriber(ctx, readout_ep, [PREDICTION, TELEMETRY])
    runtimes = [flt, chip, readout]
    _subscribed(feed)  # the slow joiner: publish only once the filter listens
    _pump(runtimes, lambda: all(r.subscribed for r in runtimes))
    for seq, w in enumerate(windows):
        send_frames(feed, encode(_batch(w, seq)))
    _pump(runtimes, lambda: (
        flt.counters.messages_in == len(windows)
        and chip.counters.messages_in == flt.counters.messages_out
        and readout.counters.messages_in == chip.counters.messages_out
    ))  # fmt: skip
    received = list(_drain(watch))
    predictions = [m for m in received if isinstance(m, Prediction)]

    offline = Chip.from_config(config)
    decided = np.concatenate([(o := offline.step(w)).decisions[o.decisions["passed"]] for w in windows])
    assert isinstance(readout.stage, ReadoutStage)
    decided = decided[decided["t"] <= np.uint64(readout.stage.t_end_us)]  # the stages decide up to here
    assert len(decided) > 0
    assert [(p.class_id, p.t_end_us) for p in predictions] == [(int(d["class_index"]), int(d["t"])) for d in decided]
    assert [p.seq for p in predictions] == list(range(len(predictions)))
    assert readout.counters.events_out == len(predictions)

    for r in runtimes:
        assert not +r.counters.dropped_messages  # nothing malformed, lost or unheard (all reasons at 0)
    clock.now += int(2.5e9)
    got: list[Telemetry] = []

    def readout_telemetry() -> bool:
        got.extend(m for m in _drain(watch) if isinstance(m, Telemetry))
        return bool(got) and got[-1].values[tm.UPTIME_S] == clock.now / 1e9

    _pump(runtimes, readout_telemetry)
    t = got[-1]
    assert t.stream == "readout"
    c = readout.counters
    assert t.values[tm.SERVICE_UP] == 1
    assert t.values[tm.PID] == os.getpid()
    assert (t.values[tm.MESSAGES_IN], t.values[tm.MESSAGES_OUT]) == (c.messages_in, c.messages_out)
    assert (t.values[tm.EVENTS_IN], t.values[tm.EVENTS_OUT]) == (c.events_in, len(predictions))
    assert t.values[tm.PREDICTIONS] == len(predictions)
    assert t.values[tm.EVENTS_IN] == chip.counters.events_out > 0


def _head(span_us: int) -> Events:
    events = synthetic_events(seed=0)
    return events[events["t"] < np.uint64(span_us)]


def _garbage(batch: EventBatch) -> list[list[bytes]]:
    topic, header, payload = (bytes(f) for f in encode(batch))
    rng = np.random.default_rng(7)
    return [
        [RAW, rng.bytes(40), rng.bytes(16)],  # random bytes after a topic the filter listens to
        [RAW + b"junk", header, payload],  # a topic no one knows
        [topic, header, payload[: len(payload) - 16]],  # one record short
        [topic, header, payload[:5]],  # cut mid-record
        [topic, b"\xc1", payload],  # 0xc1 is never valid msgpack
        [topic],  # one frame only
    ]


def test_garbage_is_counted_by_reason_logged_once_and_the_stage_goes_on(
    ctx: Context, config: ChipConfig, caplog: pytest.LogCaptureFixture
) -> None:
    events = _head(20_000)
    windows = _windows(events)
    single = Single(ctx, config)
    garbage = _garbage(_batch(windows[0], 0))
    expected: Counter[str] = Counter()
    for frames in garbage:
        with pytest.raises(ProtocolError) as e:
            decode(frames)
        expected[f"{tm.DECODE_PREFIX}{e.value.reason}"] += 2
    assert len(expected) >= 4  # several distinct reasons

    caplog.set_level(logging.WARNING, logger="speck_edge.runtime")
    for frames in [*garbage, *garbage]:
        single.send(frames)
    single.handle(2 * len(garbage))
    assert len(caplog.records) == len(expected)  # once per reason in this interval
    t = single.telemetry()
    assert {k: v for k, v in t.groups[tm.DROPPED_MESSAGES].items() if v} == expected
    assert t.values[tm.MESSAGES_IN] == 0

    caplog.clear()  # a new interval: each reason is logged again
    for frames in garbage:
        single.send(frames)
    single.handle(3 * len(garbage))
    assert len(caplog.records) == len(expected)
    assert {r.getMessage().split("(")[1].split(")")[0] for r in caplog.records} == {
        k.removeprefix(tm.DECODE_PREFIX) for k in expected
    }

    for seq, w in enumerate(windows):  # valid data afterwards still flows
        single.send(encode(_batch(w, seq)))
    single.handle(3 * len(garbage) + len(windows))
    out = [m for m in _drain(single.watch) if isinstance(m, EventBatch)]
    assert [m.seq for m in out] == list(range(len(out)))  # queued batches may go out joined
    alone = FilterStage(config)
    expected_events = np.concatenate([m.events for w in windows for m in alone.handle(_batch(w, 0), _outbox())])
    assert len(expected_events) > 0
    assert np.array_equal(np.concatenate([m.events for m in out]), expected_events)


def test_sequence_gaps_are_counted(ctx: Context, config: ChipConfig) -> None:
    windows = _windows(_head(20_000))
    seqs = [0, 1, 2, 5, 6, 9, 10, 11]
    single = Single(ctx, config)
    for seq, w in zip(seqs, windows, strict=False):
        single.send(encode(_batch(w, seq)))
    single.handle(len(seqs))
    t = single.telemetry()
    lost = sum(b - a - 1 for a, b in itertools.pairwise(seqs))
    assert lost > 0
    assert t.groups[tm.DROPPED_MESSAGES][tm.SEQUENCE_GAP] == lost
    assert t.values[tm.MESSAGES_IN] == len(seqs)


def test_data_sent_to_no_subscriber_is_counted(ctx: Context, config: ChipConfig) -> None:
    windows = _windows(_head(40_000))
    half = len(windows) // 2
    single = Single(ctx, config, data=False)  # the next stage is away: only telemetry is watched
    for seq, w in enumerate(windows[:half]):
        single.send(encode(_batch(w, seq)))
    single.handle(half)
    c = single.runtime.counters
    unheard_messages, unheard_events = c.messages_out, c.events_out
    assert 1 <= unheard_messages <= half and unheard_events > 0  # queued inputs may go out joined
    t = single.telemetry()
    assert t.groups[tm.DROPPED_MESSAGES][NO_SUBSCRIBER] == unheard_messages
    assert t.groups[tm.DROPPED_EVENTS][NO_SUBSCRIBER] == unheard_events

    single.watch.setsockopt(zmq.SUBSCRIBE, FILTERED)  # the next stage is back
    _pump([single.runtime], lambda: FILTERED in single.runtime.subscribed)
    for seq, w in enumerate(windows[half:], start=half):
        single.send(encode(_batch(w, seq)))
    single.handle(len(windows))
    heard = [m for m in _drain(single.watch) if isinstance(m, EventBatch)]
    assert heard and [m.seq for m in heard] == list(range(unheard_messages, unheard_messages + len(heard)))
    t = single.telemetry()
    assert t.groups[tm.DROPPED_MESSAGES][NO_SUBSCRIBER] == unheard_messages  # nothing more lost
    assert t.values[tm.MESSAGES_OUT] == unheard_messages + len(heard)
    assert t.values[tm.EVENTS_OUT] == unheard_events + sum(len(m.events) for m in heard)


class Lossless:
    """A filter runtime on PULL → PUSH (small high-water marks), run in a thread."""

    def __init__(self, ctx: Context, config: ChipConfig, hwm: int = 2) -> None:
        self.ctx, self.out_endpoint = ctx, _endpoint("filter-push")
        in_endpoint = _endpoint("feed-push")
        self.feed = ctx.socket(zmq.PUSH)
        self.feed.setsockopt(zmq.LINGER, 0)
        self.feed.setsockopt(zmq.SNDTIMEO, int(DEADLINE_S * 1000))  # a stuck stage fails the test, not hangs it
        self.feed.bind(in_endpoint)
        pull = ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.setsockopt(zmq.RCVHWM, hwm)
        pull.connect(in_endpoint)
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.SNDHWM, hwm)
        push.bind(self.out_endpoint)
        pub = publisher(ctx, _endpoint("filter-telemetry"))
        self.stop = threading.Event()
        sockets = Sockets(inputs=[pull], output=push, telemetry=pub, lossless_output=True)
        self.runtime = Runtime(FilterStage(config), sockets, FakeClock(), self.stop, INTERVAL_S)
        self.thread = threading.Thread(target=self.runtime.run, daemon=True)

    def consumer(self, hwm: int = 2) -> zmq.Socket[bytes]:
        sink = self.ctx.socket(zmq.PULL)
        sink.setsockopt(zmq.LINGER, 0)
        sink.setsockopt(zmq.RCVHWM, hwm)
        sink.connect(self.out_endpoint)
        return sink

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()


def test_lossless_loses_nothing_under_back_pressure(ctx: Context, config: ChipConfig) -> None:
    windows = _windows(_head(200_000))
    alone = FilterStage(config)
    expected = np.concatenate([m.events for w in windows for m in alone.handle(_batch(w, 0), _outbox())])
    lossless = Lossless(ctx, config)
    sink = lossless.consumer()
    lossless.thread.start()
    try:
        for seq, w in enumerate(windows):  # the feed blocks too when the stage is behind
            lossless.feed.send_multipart(encode(_batch(w, seq)))
        got: list[EventBatch] = []
        deadline = time.monotonic() + DEADLINE_S
        while sum(len(m.events) for m in got) < len(expected):
            assert time.monotonic() < deadline, "timed out"
            if sink.poll(100, zmq.POLLIN):
                msg = decode(sink.recv_multipart())
                assert isinstance(msg, EventBatch)
                got.append(msg)
    finally:
        lossless.finish()
    assert [m.seq for m in got] == list(range(len(got)))  # queued batches may go out joined
    assert np.array_equal(np.concatenate([m.events for m in got]), expected)
    c = lossless.runtime.counters
    assert c.messages_in == len(windows) and c.messages_out == len(got)
    assert c.events_out == len(expected)
    assert not +c.dropped_messages


def test_a_send_blocked_by_an_absent_consumer_returns_on_stop(ctx: Context, config: ChipConfig) -> None:
    windows = _windows(_head(5_000))
    lossless = Lossless(ctx, config)  # no consumer ever connects to its PUSH
    lossless.thread.start()
    lossless.feed.send_multipart(encode(_batch(windows[0], 0)))
    c = lossless.runtime.counters
    deadline = time.monotonic() + DEADLINE_S
    while c.messages_in < 1:  # the stage took the batch and is now waiting to send it
        assert time.monotonic() < deadline, "timed out"
        lossless.thread.join(0.01)
    assert lossless.thread.is_alive()
    lossless.finish()
    assert c.dropped_messages["stopped_unsent"] == 1
    assert c.dropped_events["stopped_unsent"] == c.events_in == len(windows[0])
    assert c.messages_out == c.events_out == 0  # never sent, so never counted out


def test_loss_reasons_are_reported_at_zero_from_the_first_telemetry(ctx: Context, config: ChipConfig) -> None:
    t = Single(ctx, config).telemetry()  # no message handled yet
    assert dict(t.groups[tm.DROPPED_MESSAGES]) == {tm.SEQUENCE_GAP: 0, NO_SUBSCRIBER: 0}
    assert dict(t.groups[tm.DROPPED_EVENTS]).get(NO_SUBSCRIBER) == 0


def test_the_watchdog_is_petted_on_its_own_period_not_the_telemetry_interval(
    ctx: Context, config: ChipConfig, tmp_path: Path
) -> None:
    import socket

    from services.notify import Notifier, parse

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(0)
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"})  # pet every 1 s
    single = Single(ctx, config)
    clock = single.clock
    runtime = Runtime(single.runtime.stage, single.runtime.sockets, clock, threading.Event(), 60.0, notifier)
    pets = 0
    for _ in range(5):  # 5 s of fake time, telemetry only every 60 s
        runtime.poll_once(0)
        clock.now += int(1e9)
        while True:
            try:
                pets += parse(listener.recv(256)).get("WATCHDOG") == "1"
            except BlockingIOError:
                break
    assert pets == 5
    listener.close()
