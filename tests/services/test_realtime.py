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

import pytest

from services import launch
from services.config import Settings, load_settings
from services.notify import Notifier
from services.realtime import DATA_PATH, check_priority, current_priority, request_realtime

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
    assert request_realtime(service, 7, lossless=False, set_scheduler=fake)
    assert fake.calls == [(0, os.SCHED_FIFO, 7)]


@pytest.mark.parametrize(
    ("service", "priority", "lossless"),
    [("exporter", 7, False), ("chip", 0, False), ("chip", 7, True)],
    ids=["exporter", "off", "lossless"],
)
def test_nothing_else_asks(service: str, priority: int, lossless: bool) -> None:
    fake = FakeScheduler()
    assert not request_realtime(service, priority, lossless=lossless, set_scheduler=fake)
    assert fake.calls == []


def test_a_refusal_is_logged_with_the_fix_and_the_service_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="speck_edge.realtime"):
        assert not request_realtime("filter", 10, lossless=False, set_scheduler=FakeScheduler(refuse=True))
    (record,) = caplog.records
    assert "filter" in record.getMessage() and "RLIMIT_RTPRIO" in record.getMessage()


@pytest.mark.parametrize("priority", [-1, 100])
def test_priorities_outside_1_to_99_are_refused(priority: int) -> None:
    with pytest.raises(ValueError, match="realtime_priority"):
        check_priority(priority)
    with pytest.raises(ValueError, match="realtime_priority"):
        request_realtime("chip", priority, lossless=False, set_scheduler=FakeScheduler())


def test_run_service_asks_before_its_context_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_service`` passes the settings on, and does so before ZeroMQ starts its I/O thread."""
    events: list[tuple[str, object]] = []
    monkeypatch.setattr(launch, "request_realtime", lambda *a, **k: events.append(("realtime", (a, k))))
    real_context = launch.zmq.Context

    def context() -> object:
        events.append(("context", None))
        return real_context()

    monkeypatch.setattr(launch.zmq, "Context", context)
    monkeypatch.setitem(launch.RUNNERS, "chip", lambda *a: events.append(("run", None)))
    settings = load_settings(None, {"SPECK_EDGE__PIPELINE__REALTIME_PRIORITY": "12"})
    launch.run_service("chip", settings, threading.Event(), Notifier({}))
    assert [e[0] for e in events] == ["realtime", "context", "run"]
    assert events[0][1] == (("chip", 12), {"lossless": False})


def test_the_default_is_the_normal_scheduler() -> None:
    assert Settings().pipeline.realtime_priority == 0


PROBE = """
import json, os, sys, zmq
from services.realtime import current_priority, request_realtime
applied = request_realtime("chip", 3, lossless=False)
ctx = zmq.Context()
sock = ctx.socket(zmq.PUB)  # starts the I/O thread
sock.bind("inproc://probe")
tids = [int(t) for t in os.listdir("/proc/self/task")]
threads = {t: [os.sched_getscheduler(t), os.sched_getparam(t).sched_priority] for t in tids}
print(json.dumps({"applied": applied, "threads": threads, "main": current_priority()}))
sock.close(0)
ctx.term()
"""


def test_zeromq_threads_inherit_the_policy() -> None:
    """In a fresh process (the policy must not leak into the test run): every thread, the I/O thread
    included, runs under SCHED_FIFO at the priority asked for."""
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    if not report["applied"]:
        pytest.skip(f"SCHED_FIFO is not permitted here (root, CAP_SYS_NICE or RLIMIT_RTPRIO >= 3): {result.stderr}")
    assert report["main"] == 3
    assert len(report["threads"]) >= 2, report  # the main thread and ZeroMQ's I/O thread (and reaper)
    assert all(policy == [os.SCHED_FIFO, 3] for policy in report["threads"].values()), report
    assert current_priority() == 0  # this process untouched
