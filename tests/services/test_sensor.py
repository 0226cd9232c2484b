"""The sensor: pacing against a fake clock in-process, and real-time replay as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from emulator.io import read_recording
from proto.codec import decode
from proto.messages import EventBatch, Telemetry
from services.clock import FakeClock
from services.pacing import windows
from services.sensor import Sensor, SensorConfig
from services.sockets import publisher, subscriber
from tests.net import free_port
from tests.real_data import real_file

SHORT = "colleenpamchen-jAER/DVS128-2017-03-21-short.aedat"  # 6.2 s, 130 k events
LONG = "AlexOuyang-DVS128DataAnalysis/cam255_alex_standing_up.aedat"  # 25 s, 290 k events
RAW = b"events.raw|"
TELEMETRY = b"telemetry|"


def _drain(sock: zmq.Socket[bytes]) -> Iterator[object]:
    while sock.poll(0, zmq.POLLIN):
        yield decode(sock.recv_multipart())


class StopAfter(FakeClock):
    """A fake clock that sets the stop flag after ``n`` waits (to end a looping replay)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def wait_until(self, deadline_ns: int, stop: threading.Event) -> bool:
        self.left -= 1
        if self.left < 0:
            stop.set()
        return super().wait_until(deadline_ns, stop)


def test_fake_clock_replay_publishes_every_window_on_time(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    path = real_file(SHORT)
    events, _ = read_recording(path)
    expected = list(windows([events], 1000))
    pub = publisher(ctx, "inproc://sensor-fake")
    sub = subscriber(ctx, "inproc://sensor-fake", [RAW, TELEMETRY])
    cfg = SensorConfig(source=str(path), endpoint="inproc://sensor-fake", speed=4.0, wait_subscriber_s=5)
    clock = FakeClock()
    counters = Sensor(cfg, pub, clock, threading.Event()).run()
    msgs = list(_drain(sub))
    batches = [m for m in msgs if isinstance(m, EventBatch)]
    assert [b.seq for b in batches] == list(range(len(expected)))
    np.testing.assert_array_equal(np.concatenate([b.events for b in batches]), events)
    assert counters.events_sent == len(events) and counters.batches_sent == len(expected)
    assert counters.late_batches == 0
    # with a fake clock every batch goes out exactly when its last event is due at 4x
    t0 = int(events["t"][0])
    for b in batches:
        assert b.sent_ns - clock.wall_offset_ns == round((int(b.events["t"][-1]) - t0) * 1000 / 4.0)
    final = [m for m in msgs if isinstance(m, Telemetry)][-1]
    assert final.values["events_sent"] == len(events)
    assert final.values["batches_sent"] == len(expected)


def test_loop_keeps_time_increasing(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    path = real_file(SHORT)
    n_windows = len(list(windows([read_recording(path)[0]], 1000)))
    pub = publisher(ctx, "inproc://sensor-loop")
    sub = subscriber(ctx, "inproc://sensor-loop", [RAW])
    cfg = SensorConfig(source=str(path), endpoint="inproc://sensor-loop", speed=1000.0, loop=True, wait_subscriber_s=5)
    counters = Sensor(cfg, pub, StopAfter(n_windows * 2 + 10), threading.Event()).run()
    batches = [m for m in _drain(sub) if isinstance(m, EventBatch)]
    assert counters.passes == 3
    assert n_windows * 2 < len(batches) <= n_windows * 2 + 10  # two whole passes, and into the third
    t = np.concatenate([b.events["t"] for b in batches])
    assert bool(np.all(t[1:] >= t[:-1]))


def _replay(path: Path, speed: float, port: int, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "services.cli", "replay", str(path), "--speed", str(speed)]
    cmd += ["--endpoint", f"tcp://127.0.0.1:{port}", "--wait-subscriber", "60", *extra]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])


TIMING_P99_MS = 10.0
"""A pacing bug (no pacing, drift, a stall per batch) shows as tens to hundreds of ms; the bound leaves
room for a busy shared 2-core VM, where the measured p99 is ~1 ms quiet and up to ~3 ms under load
(the precision itself is a benchmark number, not a test)."""
LATE_SHARE = 0.05


# 20x replays the longer recording so that it lasts over a second: one of the rare
# multi-ms scheduling stalls of a shared VM must not be more than 1% of the run.
@pytest.mark.parametrize(("speed", "recording"), [(1.0, SHORT), (20.0, LONG)])
def test_real_time_replay_is_on_time_and_lossless(
    ctx: zmq.Context[zmq.Socket[bytes]], speed: float, recording: str
) -> None:
    path = real_file(recording)
    events, _ = read_recording(path)
    port = free_port()
    proc = _replay(path, speed, port)
    sub = subscriber(ctx, f"tcp://127.0.0.1:{port}", [RAW, TELEMETRY])
    batches: list[EventBatch] = []
    final: Telemetry | None = None
    deadline = time.monotonic() + 60 + 2 * float(np.ptp(events["t"])) / 1e6 / speed
    try:
        while final is None and time.monotonic() < deadline:  # the last telemetry follows the last batch
            if sub.poll(100, zmq.POLLIN):
                msg = decode(sub.recv_multipart())
                if isinstance(msg, EventBatch):
                    batches.append(msg)
                elif isinstance(msg, Telemetry) and msg.values["events_sent"] == len(events):
                    final = msg
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    # the sender's own view, against its absolute schedule: few batches more than 2 ms late
    assert final is not None
    assert final.values["late_batches"] <= LATE_SHARE * final.values["batches_sent"]
    assert [b.seq for b in batches] == list(range(len(batches)))  # no gap: nothing lost
    np.testing.assert_array_equal(np.concatenate([b.events for b in batches]), events)
    # timing error of every event: when its batch was published vs when the event is due
    # (its time since the first event, / speed). The sender's start is unknown here, so the
    # best batch anchors it: offset = min over batches of (publish - due of its last event).
    t0_us = int(events["t"][0])
    sent_ms = np.array([b.sent_ns for b in batches], dtype=np.int64) / 1e6
    due_last_ms = np.array([int(b.events["t"][-1]) - t0_us for b in batches]) / 1000 / speed
    offset_ms = float(np.min(sent_ms - due_last_ms))
    sizes = [len(b.events) for b in batches]
    due_ms = (events["t"] - t0_us).astype(np.float64) / 1000 / speed
    error_ms = np.repeat(sent_ms, sizes) - offset_ms - due_ms
    p99 = float(np.percentile(error_ms, 99))
    assert p99 <= TIMING_P99_MS, (
        f"timing error p99 {p99:.2f} ms (p50 {np.percentile(error_ms, 50):.2f}, max {error_ms.max():.2f})"
    )


def test_sigterm_stops_a_looping_replay(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    path = real_file(SHORT)
    port = free_port()
    proc = _replay(path, 1.0, port, "--loop")
    sub = subscriber(ctx, f"tcp://127.0.0.1:{port}", [RAW])
    try:
        assert sub.poll(60_000, zmq.POLLIN), "no batch arrived"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert proc.stderr is not None and b"sent" in proc.stderr.read()


def test_bad_file_fails_before_publishing(tmp_path: Path) -> None:
    bad = tmp_path / "x.aedat"
    bad.write_bytes(b"not a recording")
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "replay", str(bad), "--endpoint", f"tcp://127.0.0.1:{free_port()}"],
        check=False, capture_output=True, cwd=Path(__file__).resolve().parents[2], env={**os.environ}, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert str(bad).encode() in out.stderr and b"byte offset 0" in out.stderr


def test_live_dv_stream_is_relayed_without_loss(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    """A real dv-processing NetworkWriter feeds the sensor (source dv://HOST:PORT)."""
    from tests.services.dv_writer import SENT, store, wait_for_clients, writer_on_free_port

    writer, port = writer_on_free_port("LZ4")
    pub = publisher(ctx, "inproc://sensor-live")
    sub = subscriber(ctx, "inproc://sensor-live", [RAW])
    stop = threading.Event()
    cfg = SensorConfig(source=f"dv://127.0.0.1:{port}", endpoint="inproc://sensor-live", speed=None)
    sensor = Sensor(cfg, pub, FakeClock(), stop)
    runner = threading.Thread(target=sensor.run)
    runner.start()
    try:
        wait_for_clients(writer, 1)
        for events in SENT:
            writer.writeEvents(store(events))
        want = sum(map(len, SENT))
        got: list[EventBatch] = []
        deadline = time.monotonic() + 30
        # live windows are not held back until a later event: everything arrives while streaming
        while sum(len(b.events) for b in got) < want and time.monotonic() < deadline:
            if sub.poll(100, zmq.POLLIN):
                got += [m for m in _drain(sub) if isinstance(m, EventBatch)]
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    np.testing.assert_array_equal(np.concatenate([b.events for b in got]), np.concatenate(SENT))
    assert [b.seq for b in got] == list(range(len(got)))
    assert (got[0].width, got[0].height) == (128, 96)
    wait_for_clients(writer, 0)  # the writer's destructor hangs while a client is connected
    del writer
