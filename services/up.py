"""``speck-edge up``: run the five services as child processes, like a tiny systemd.

Children start downstream first (exporter, readout, chip, filter, then the sensor), so nothing the
sensor sends finds nobody listening. Each gets its own ``NOTIFY_SOCKET`` (:mod:`services.notify`):
``up`` waits for every ``READY=1`` before starting the next, then prints the predictions as they
come. A child that exits is started again after :data:`RESTART_DELAY_S` (more than
:data:`MAX_RESTARTS` restarts within :data:`RESTART_WINDOW_S` gives up: exit 1). Ctrl-C or SIGTERM
stops the children upstream first (SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from proto.codec import decode
from proto.errors import ProtocolError
from proto.messages import Prediction
from proto.topics import find_topic
from services.config import Settings
from services.notify import parse
from services.sockets import STOP_POLL_MS, subscriber

START_ORDER = ("exporter", "readout", "chip", "filter", "sensor")
READY_TIMEOUT_S = 180.0
"""A first start may compile the engine (numba, tens of seconds on a small machine)."""
RESTART_DELAY_S = 1.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
STOP_TIMEOUT_S = 12.0
"""Longer than a lossless output's linger (10 s), so a child that is still delivering is not killed."""


class StartError(RuntimeError):
    """A child that exited or never said READY=1: ``service``, ``why``."""

    def __init__(self, service: str, why: str) -> None:
        super().__init__(f"{service}: {why}")
        self.service, self.why = service, why


@dataclass
class Child:
    """One service process and the datagram socket it notifies on."""

    name: str
    argv: list[str]
    env: dict[str, str]
    notify: socket.socket
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    ready: bool = False

    @classmethod
    def create(cls, name: str, argv: list[str], env: Mapping[str, str]) -> Child:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        address = f"\0speck-edge-up-{os.getpid()}-{name}"
        sock.bind(address)
        return cls(name, argv, {**env, "NOTIFY_SOCKET": "@" + address[1:]}, sock)

    def start(self) -> None:
        self.ready = False
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL)

    def drain_notify(self) -> None:
        """Read every pending notify datagram (READY=1 marks the child ready)."""
        while True:
            try:
                data = self.notify.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if parse(data).get("READY") == "1":
                self.ready = True

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


def service_argv(name: str, config: Path | None) -> list[str]:
    return [sys.executable, "-m", "services.launch", name, *(["--config", str(config)] if config else [])]


class Supervisor:
    """Starts, watches, restarts and stops the children; ``say`` prints what happens."""

    def __init__(self, config: Path | None, stop: threading.Event, say: Callable[[str], None],
                 names: tuple[str, ...] = START_ORDER, env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.stop, self.say = stop, say
        base = dict(os.environ if env is None else env)
        self.children = [Child.create(n, service_argv(n, config), base) for n in names]

    def start_all(self) -> None:
        for child in self.children:
            child.start()
            self.wait_ready(child)
            self.say(f"started {child.name} (pid {child.proc.pid if child.proc else '?'})")

    def wait_ready(self, child: Child) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stop.is_set():
            child.drain_notify()
            if child.ready:
                return
            if (code := child.exited()) is not None:
                raise StartError(child.name, f"exited with code {code} before it was ready")
            if time.monotonic() > deadline:
                raise StartError(child.name, f"not ready within {READY_TIMEOUT_S:.0f} s")
            self.stop.wait(0.05)  # polling a child process: no event to wait on

    def check(self) -> None:
        """Restart any child that exited (the sensor too: a finished replay starts over). Failures — a
        non-zero exit, or dying again before READY=1 — count towards :data:`MAX_RESTARTS`."""
        for child in self.children:
            child.drain_notify()
            code = child.exited()
            while code is not None and not self.stop.is_set():
                if code != 0:
                    now = time.monotonic()
                    child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_S] + [now]
                    if len(child.restarts) > MAX_RESTARTS:
                        raise StartError(
                            child.name, f"failed {len(child.restarts)} times within {RESTART_WINDOW_S:.0f} s"
                        )
                self.say(f"{child.name} exited with code {code}; restarting")
                if self.stop.wait(RESTART_DELAY_S):
                    return
                child.start()
                try:
                    self.wait_ready(child)
                except StartError as err:
                    self.say(f"error: {err}")
                    if child.proc is not None and child.proc.poll() is None:  # not ready in time: replace it
                        child.proc.kill()
                        child.proc.wait()
                    code = child.exited() or 1
                    continue
                self.say(f"restarted {child.name} (pid {child.proc.pid if child.proc else '?'})")
                code = None

    def stop_all(self) -> None:
        """Stop the children one by one, upstream first: each has delivered what it sent (a lossless
        output lingers) before the next one stops reading."""
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
                try:
                    child.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.say(f"{child.name} did not stop within {STOP_TIMEOUT_S:.0f} s: killing it")
                    child.proc.kill()
                    child.proc.wait()
            child.notify.close()


def format_prediction(p: Prediction) -> str:
    latency = f"{(p.sent_ns - p.origin_ns) / 1e6:.2f} ms" if p.origin_ns else "n/a"
    chip = p.extras.get("chip_latency_us")
    chip_s = f", chip {chip:.0f} µs" if isinstance(chip, (int, float)) else ""
    return (f"{p.t_end_us / 1e6:10.3f} s  {p.label:<16} class {p.class_id:<2} score {p.score:<6g} "
            f"latency {latency}{chip_s}")  # fmt: skip


def up(settings: Settings, config: Path | None, stop: threading.Event, say: Callable[[str], None],
       duration_s: float | None = None, print_predictions: bool = True) -> int:  # fmt: skip
    """Run everything until ``stop`` (or ``duration_s``); the exit code."""
    sup = Supervisor(config, stop, say)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = subscriber(ctx, settings.endpoints.readout, [find_topic("prediction").wire])
    end = None if duration_s is None else time.monotonic() + duration_s
    try:
        sup.start_all()
        if stop.is_set():
            return 0
        e = settings.exporter
        say(f"all services ready; metrics at http://{e.host}:{e.port}/metrics; predictions follow (Ctrl-C stops)")
        while not stop.is_set() and (end is None or time.monotonic() < end):
            if sub.poll(STOP_POLL_MS):
                try:
                    msg = decode(sub.recv_multipart(copy=False))
                except ProtocolError as err:
                    say(f"malformed prediction dropped: {err.reason}")
                    continue
                if print_predictions and isinstance(msg, Prediction):
                    say(format_prediction(msg))
            sup.check()
        return 0
    except StartError as err:
        say(f"error: {err}")
        return 1
    finally:
        sub.close(0)
        ctx.term()
        sup.stop_all()
        say("stopped")
