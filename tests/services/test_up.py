"""The supervisor of `speck-edge up`: restarts, failures before READY=1, clean exits."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from services import up
from services.up import MAX_RESTARTS, StartError, Supervisor

CHILD = """
import os, socket, sys, time
count = int(open(sys.argv[1]).read() or 0) if os.path.exists(sys.argv[1]) else 0
open(sys.argv[1], "w").write(str(count + 1))
plan = sys.argv[2].split(",")[min(count, len(sys.argv[2].split(",")) - 1)]
addr = "\\0" + os.environ["NOTIFY_SOCKET"][1:]
if plan == "die":  # exit before READY=1
    sys.exit(2)
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", addr)
if plan.startswith("exit"):
    sys.exit(int(plan[4:]))
time.sleep(60)
"""


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "RESTART_DELAY_S", 0.05)


def _supervisor(tmp_path: Path, plan: str) -> tuple[Supervisor, list[str]]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    lines: list[str] = []
    sup = Supervisor(None, threading.Event(), lines.append, names=("fake",))
    sup.children[0].argv = [sys.executable, str(script), str(tmp_path / "count"), plan]
    return sup, lines


def _run_until(sup: Supervisor, done: object, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while not done() and time.monotonic() < end:  # type: ignore[operator]
        sup.check()
        sup.stop.wait(0.05)  # polling child processes: nothing to wait on


def test_a_restart_that_dies_before_ready_is_retried(tmp_path: Path) -> None:
    sup, lines = _supervisor(tmp_path, "exit1,die,run")
    try:
        sup.start_all()
        _run_until(sup, lambda: any(line.startswith("restarted fake") for line in lines))
        assert sup.children[0].ready and sup.children[0].exited() is None
        assert any("exited before" in line or "before it was ready" in line for line in lines)
        assert int((tmp_path / "count").read_text()) == 3
    finally:
        sup.stop.set()
        sup.stop_all()


def test_clean_exits_restart_without_counting_as_failures(tmp_path: Path) -> None:
    sup, _ = _supervisor(tmp_path, "exit0")  # a replay that ends (loop off) and starts over
    try:
        sup.start_all()
        _run_until(sup, lambda: int((tmp_path / "count").read_text()) > MAX_RESTARTS + 2)
        assert not sup.children[0].restarts  # no failure recorded
    finally:
        sup.stop.set()
        sup.stop_all()


def test_repeated_failures_give_up(tmp_path: Path) -> None:
    sup, _ = _supervisor(tmp_path, "exit3")
    try:
        sup.start_all()
        with pytest.raises(StartError, match="failed"):
            _run_until(sup, lambda: False, deadline_s=60.0)
    finally:
        sup.stop.set()
        sup.stop_all()
