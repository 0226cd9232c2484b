"""``pipeline.realtime_priority``: which services ask for SCHED_FIFO, what a refusal does, and that the
ZeroMQ I/O thread (which carries every message) inherits the policy."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from services import launch
from services.config import Settings, load_settings
from services.notify import Notifier
from services.realtime import DATA_PATH, check_priority, current_priority, request_realtime, set_fifo

REPO = Path(__file__).resolve().parents[2]


class FakeScheduler:
    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.refuse = refuse

    def __call__(self, pid: int, policy: int, param: os.sched_param) -> None:
        if self.refuse:
            raise PermissionError(1, "Operation not permitted")
        self.calls.append((pid, policy, param.sched_priority))


@pytest.mark.parametrize("service", DATA_PATH)
def test_the_data_path_asks_for_fifo(service: str) -> None:
    fake = FakeScheduler()
    assert request_realtime(service, 7, flat_out=False, set_scheduler=fake, current=lambda: 0)
    assert fake.calls == [(0, os.SCHED_FIFO, 7)]


@pytest.mark.parametrize(
    ("service", "priority", "flat_out"),
    [("exporter", 7, False), ("chip", 0, False), ("chip", 7, True)],
    ids=["exporter", "off", "flat-out"],
)
def test_nothing_else_asks(service: str, priority: int, flat_out: bool) -> None:
    fake = FakeScheduler()
    assert not request_realtime(service, priority, flat_out=flat_out, set_scheduler=fake, current=lambda: 0)
    assert fake.calls == []


def test_a_service_its_supervisor_made_real_time_says_so_and_asks_nothing() -> None:
    """Under systemd's ``CPUSchedulingPolicy=fifo`` the sandbox would refuse the call: it is not made."""
    fake = FakeScheduler(refuse=True)
    assert request_realtime("chip", 7, flat_out=False, set_scheduler=fake, current=lambda: 10)
    assert fake.calls == []


def test_a_refusal_is_logged_with_the_fix_and_the_service_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="speck_edge.realtime"):
        refuse = FakeScheduler(refuse=True)
        assert not request_realtime("filter", 10, flat_out=False, set_scheduler=refuse, current=lambda: 0)
    (record,) = caplog.records
    assert "filter" in record.getMessage() and "RLIMIT_RTPRIO" in record.getMessage()


def test_what_a_supervisor_set_is_reported_truthfully(caplog: pytest.LogCaptureFixture) -> None:
    """systemd's drop-in may have set SCHED_FIFO already: a flat-out run under it is warned about, and
    a refused higher priority says the service stays at its own."""
    with caplog.at_level(logging.INFO, logger="speck_edge.realtime"):
        assert not request_realtime("chip", 10, flat_out=True, set_scheduler=FakeScheduler(), current=lambda: 10)
        assert not request_realtime("chip", 20, flat_out=False, set_scheduler=FakeScheduler(refuse=True),
                                    current=lambda: 10)  # fmt: skip
    flat, refused = (r.getMessage() for r in caplog.records)
    assert "flat out" in flat and "SCHED_FIFO 10" in flat and caplog.records[0].levelno == logging.WARNING
    assert "stays at SCHED_FIFO 10" in refused


@pytest.mark.parametrize("priority", [-1, 100])
def test_priorities_outside_1_to_99_are_refused(priority: int) -> None:
    with pytest.raises(ValueError, match="realtime_priority"):
        check_priority(priority)
    with pytest.raises(ValueError, match="realtime_priority"):
        request_realtime("chip", priority, flat_out=False, set_scheduler=FakeScheduler())
    with pytest.raises(ValueError, match="realtime_priority"):
        set_fifo(priority, FakeScheduler())


def test_set_fifo_says_whether_the_os_agreed() -> None:
    fake = FakeScheduler()
    assert set_fifo(5, fake) and fake.calls == [(0, os.SCHED_FIFO, 5)]
    assert not set_fifo(5, FakeScheduler(refuse=True))
    with pytest.raises(ValueError, match="not 0"):
        set_fifo(0, fake)


class Started(Exception):
    """Raised by the first socket: the runner got as far as its sockets."""


def _order(monkeypatch: pytest.MonkeyPatch, settings: Settings, runner: str) -> list[object]:
    """What a service runner does, in order, up to its first socket."""
    events: list[object] = []
    monkeypatch.setattr(launch, "request_realtime", lambda *a, **k: events.append(("realtime", a, k)))

    def first_socket(*args: object, **kwargs: object) -> None:
        events.append("socket")
        raise Started

    monkeypatch.setattr(launch, "stage_sockets", first_socket)
    monkeypatch.setattr(launch, "publisher", first_socket)
    stage = SimpleNamespace(input_topic="events.raw")
    monkeypatch.setattr(launch, "build_stage", lambda name, s: events.append("compiled") or stage)
    with pytest.raises(Started):
        launch.RUNNERS[runner](None, settings, threading.Event(), None, Notifier({}))  # type: ignore[arg-type]
    return events


@pytest.mark.parametrize("name", ["filter", "chip", "readout"])
def test_a_stage_asks_after_compiling_and_before_its_first_socket(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    settings = load_settings(None, {"SPECK_EDGE__PIPELINE__REALTIME_PRIORITY": "12"})
    events = _order(monkeypatch, settings, name)
    assert events == ["compiled", ("realtime", (name, 12), {"flat_out": False}), "socket"]


@pytest.mark.parametrize(
    ("env", "flat_out"),
    [({}, False), ({"SPECK_EDGE__SENSOR__SPEED": "0"}, True), ({"SPECK_EDGE__PIPELINE__LOSSLESS": "true"}, True),
     ({"SPECK_EDGE__SENSOR__SPEED": "0", "SPECK_EDGE__SENSOR__SOURCE": "dv://127.0.0.1:7777"}, False)],
    ids=["paced", "speed-0", "lossless", "live-camera"],
)  # fmt: skip
def test_the_sensor_asks_before_its_socket_unless_flat_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], flat_out: bool
) -> None:
    recording = tmp_path / "rec.aedat"  # never opened: the runner stops at its first socket
    settings = load_settings(None, {"SPECK_EDGE__SENSOR__SOURCE": str(recording), **env,
                                    "SPECK_EDGE__PIPELINE__REALTIME_PRIORITY": "12"})  # fmt: skip
    events = _order(monkeypatch, settings, "sensor")
    assert events == [("realtime", ("sensor", 12), {"flat_out": flat_out}), "socket"]


def test_the_default_is_the_normal_scheduler() -> None:
    assert Settings().pipeline.realtime_priority == 0


PROBE = """
import json, os, sys, zmq
import services.launch  # the service's imports, and the threads they start (numpy's BLAS pool)
from services.realtime import current_priority, request_realtime
before = set(os.listdir("/proc/self/task"))
applied = request_realtime("chip", 3, flat_out=False)
ctx = zmq.Context()
sock = ctx.socket(zmq.PUB)  # the first socket starts ZeroMQ's threads
sock.bind("inproc://probe")
new = [int(t) for t in set(os.listdir("/proc/self/task")) - before]
threads = {t: [os.sched_getscheduler(t), os.sched_getparam(t).sched_priority] for t in new}
print(json.dumps({"applied": applied, "threads": threads, "main": current_priority()}))
sock.close(0)
ctx.term()
"""


def test_zeromq_threads_inherit_the_policy() -> None:
    """In a fresh process (the policy must not leak into the test run), with the service's imports:
    the main thread and every thread started after the request (ZeroMQ's I/O thread, which carries
    every message, and its reaper) run under SCHED_FIFO at the priority asked for."""
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    if not report["applied"]:
        pytest.skip(f"SCHED_FIFO is not permitted here (root, CAP_SYS_NICE or RLIMIT_RTPRIO >= 3): {result.stderr}")
    assert report["main"] == 3
    assert len(report["threads"]) >= 1, report  # ZeroMQ's I/O thread at least
    assert all(policy == [os.SCHED_FIFO, 3] for policy in report["threads"].values()), report
    assert current_priority() == 0  # this process untouched
