"""The sensor on awkward input: backwards time, damage mid-file, idle gaps, a sender that falls behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from emulator.io import RecordingError, read_recording
from proto.codec import decode
from proto.messages import EventBatch, Telemetry
from services.clock import FakeClock
from services.pacing import windows
from services.sensor import MAX_BATCH_EVENTS, Sensor, SensorConfig
from services.sockets import publisher, subscriber
from tests.net import free_port
from tests.real_data import real_file

SHORT = "colleenpamchen-jAER/DVS128-2017-03-21-short.aedat"
ROOT = Path(__file__).resolve().parents[2]


def _aedat2(path: Path, ts: list[int]) -> Path:
    """A DVS128 AEDAT 2.0 file with one event per timestamp (x = index mod 128)."""
    addr = [(i % 128) << 1 for i in range(len(ts))]
    records = np.array(list(zip(addr, ts, strict=True)), dtype=">u4")
    path.write_bytes(b"#!AER-DAT2.0\r\n# AEChip: DVS128\r\n" + records.tobytes())
    return path


def _run(
    ctx: zmq.Context[zmq.Socket[bytes]], cfg: SensorConfig, clock: FakeClock | None = None
) -> tuple[list[EventBatch], list[Telemetry], Sensor]:
    pub = publisher(ctx, cfg.endpoint)
    sub = subscriber(ctx, cfg.endpoint, [b"events.raw|", b"telemetry|"])
    sensor = Sensor(cfg, pub, clock or FakeClock(), threading.Event())
    sensor.run()
    msgs = []
    while sub.poll(0, zmq.POLLIN):
        msgs.append(decode(sub.recv_multipart()))
    return (
        [m for m in msgs if isinstance(m, EventBatch)],
        [m for m in msgs if isinstance(m, Telemetry)],
        sensor,
    )


def test_backwards_timestamps_are_sorted_counted_and_never_lost(
    ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path
) -> None:
    ts = [1000 + 40 * i - (70 if i % 7 == 3 else 0) for i in range(2000)]  # every 7th event 30 µs before the last
    path = _aedat2(tmp_path / "back.aedat", ts)
    cfg = SensorConfig(source=str(path), endpoint="inproc://back", speed=1.0, wait_subscriber_s=5)
    batches, telemetry, sensor = _run(ctx, cfg)
    sent = np.concatenate([b.events for b in batches])
    assert sorted(sent["t"].tolist()) == sorted(ts)  # every event, once
    assert all(bool(np.all(np.diff(b.events["t"].astype(np.int64)) >= 0)) for b in batches)
    late = sum(1 for i in range(1, len(ts)) if ts[i] < max(ts[:i]))
    assert sensor.counters.reordered_events == late > 0
    assert telemetry[-1].values["reordered_events"] == late


def test_damage_mid_file_publishes_everything_before_it(ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path) -> None:
    data = real_file(SHORT).read_bytes()
    cut = tmp_path / "cut.aedat"
    cut.write_bytes(data[:-5])
    good, _ = read_recording(cut, lenient=True)
    cfg = SensorConfig(source=str(cut), endpoint="inproc://cut", speed=None, wait_subscriber_s=5)
    pub = publisher(ctx, cfg.endpoint)
    sub = subscriber(ctx, cfg.endpoint, [b"events.raw|", b"telemetry|"])
    with pytest.raises(RecordingError):
        Sensor(cfg, pub, FakeClock(), threading.Event()).run()
    msgs = []
    while sub.poll(0, zmq.POLLIN):
        msgs.append(decode(sub.recv_multipart()))
    batches = [m for m in msgs if isinstance(m, EventBatch)]
    np.testing.assert_array_equal(np.concatenate([b.events for b in batches]), good)
    assert isinstance(msgs[-1], Telemetry) and msgs[-1].values["events_sent"] == len(good)

    lenient = SensorConfig(source=str(cut), endpoint="inproc://cut2", speed=None, wait_subscriber_s=5, lenient=True)
    batches, _, sensor = _run(ctx, lenient)
    assert sum(len(b.events) for b in batches) == len(good)
    assert sensor.counters.damage is not None and sensor.counters.damage.path == cut


def test_as_fast_as_possible_merges_windows_into_big_batches(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    path = real_file(SHORT)
    events, _ = read_recording(path)
    cfg = SensorConfig(source=str(path), endpoint="inproc://max", speed=None, wait_subscriber_s=5)
    batches, _, _ = _run(ctx, cfg)
    np.testing.assert_array_equal(np.concatenate([b.events for b in batches]), events)
    assert all(len(b.events) >= MAX_BATCH_EVENTS for b in batches[:-1])
    assert [b.seq for b in batches] == list(range(len(batches)))


class SlowClock(FakeClock):
    """Every look at the clock costs 300 µs: a sender that cannot keep up one window at a time."""

    def monotonic_ns(self) -> int:
        self.now += 300_000
        return self.now


def test_a_sender_that_falls_behind_merges_and_loses_nothing(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    path = real_file(SHORT)
    events, _ = read_recording(path)
    n_windows = len(list(windows([events], 1000)))
    cfg = SensorConfig(source=str(path), endpoint="inproc://slow", speed=20.0, wait_subscriber_s=5)
    batches, _, sensor = _run(ctx, cfg, SlowClock())
    np.testing.assert_array_equal(np.concatenate([b.events for b in batches]), events)
    assert [b.seq for b in batches] == list(range(len(batches)))
    assert len(batches) < n_windows  # windows that fell due together went out together
    assert sensor.counters.late_batches > 0  # and the lateness is reported, not hidden


def test_telemetry_keeps_coming_through_an_idle_stretch(ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path) -> None:
    path = _aedat2(tmp_path / "gap.aedat", [0, 10_000_000])  # two events 10 s apart
    cfg = SensorConfig(source=str(path), endpoint="inproc://gap", speed=1.0, telemetry_interval_s=1.0)
    batches, telemetry, _ = _run(ctx, cfg)
    assert len(batches) == 2
    sent = [t.sent_ns for t in telemetry]
    assert len(telemetry) >= 11  # one per second of the 10 s wait, plus the first and the last
    assert max(np.diff(sent)) <= 1_000_000_000


def _replay(*args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "services.cli", "replay", *args]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_sigterm_while_waiting_for_a_subscriber_exits_cleanly() -> None:
    proc = _replay(str(real_file(SHORT)), "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--wait-subscriber", "60")
    try:
        assert proc.stderr is not None
        assert "replaying" in proc.stderr.readline()  # it has started waiting
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("source", "code", "says"),
    [("dv://127.0.0.1", 2, "dv://HOST:PORT"), ("dv://127.0.0.1:{port}", 1, "127.0.0.1")],
)
def test_bad_live_sources_fail_with_a_clear_message(source: str, code: int, says: str) -> None:
    proc = _replay(source.format(port=free_port()), "--endpoint", f"tcp://127.0.0.1:{free_port()}")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert says in err and "Traceback" not in err
