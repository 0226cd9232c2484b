"""Helpers of the end-to-end tests: configs on free ports, a supervised ``speck-edge up`` / ``speck-edge run``
process group, /metrics scrapes, ZeroMQ listeners and polling with deadlines (never a blind sleep).
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

import zmq
from prometheus_client.parser import text_string_to_metric_families

from proto.codec import decode
from proto.errors import ProtocolError
from proto.messages import Message
from services.sockets import subscriber
from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ("sensor", "filter", "chip", "readout")
"""The services that publish (upstream first)."""
LOSSLESS = ("sensor", "filter", "chip")
START_S = 150.0
"""Deadline of a first start: numba may compile the engine (``READY_TIMEOUT_S`` of ``up`` is 180 s)."""
FLOW_S = 30.0
"""Deadline for something to happen on a running pipeline (data flows in milliseconds)."""
STOP_S = 20.0
POLL_S = 0.1
"""Pause between two polls of a condition that has no event to wait on (an HTTP scrape)."""

T = TypeVar("T")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def poll(check: Callable[[], T | None], timeout: float, what: str, interval: float = POLL_S) -> T:
    """``check()``'s first truthy result, polled until ``timeout``; AssertionError naming ``what`` if none came."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        threading.Event().wait(interval)  # the next poll (an HTTP scrape has no event to wait on)


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Ports:
    """Free ports for every endpoint of one pipeline, and the exporter's HTTP port."""

    pub: dict[str, str] = field(default_factory=lambda: {s: f"tcp://127.0.0.1:{free_port()}" for s in PIPELINE})
    lossless: dict[str, str] = field(default_factory=lambda: {s: f"tcp://127.0.0.1:{free_port()}" for s in LOSSLESS})
    http: int = field(default_factory=free_port)

    def endpoints(self, override: Mapping[str, str] | None = None) -> dict[str, str]:
        """The ``[endpoints]`` table (``override`` replaces some PUB endpoints)."""
        pub = {**self.pub, **(override or {})}
        return {**pub, **{f"{s}_lossless": e for s, e in self.lossless.items()}}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, doc: Mapping[str, Mapping[str, object]]) -> Path:
    path.write_text(
        "".join(f"[{section}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in body.items()) + "\n"
                for section, body in doc.items())
    )  # fmt: skip
    return path


def pipeline_config(path: Path, ports: Ports, source: Path, **sections: Mapping[str, object]) -> Path:
    """A config on ``ports`` replaying ``source``, telemetry every 0.2 s; ``sections`` add/replace keys."""
    doc: dict[str, dict[str, object]] = {
        "pipeline": {"telemetry_interval_s": 0.2},
        "endpoints": dict(ports.endpoints()),
        "sensor": {"source": str(source)},
        "exporter": {"host": "127.0.0.1", "port": ports.http},
    }
    for section, body in sections.items():
        doc[section] = {**doc.get(section, {}), **body}
    return write_config(path, doc)


@functools.cache
def fifo_permitted(priority: int) -> bool:
    """Whether a process started here may run under SCHED_FIFO at ``priority`` (asked in a child, so
    this process stays as it is)."""
    probe = f"import sys; from services.realtime import set_fifo; sys.exit(0 if set_fifo({priority}) else 1)"
    return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, check=False).returncode == 0


def child_env(cache: Path) -> dict[str, str]:
    """This environment without any ``SPECK_EDGE__…`` override (the config file says it all), a private cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECK_EDGE__")}
    env.update(SPECK_EDGE_CACHE=str(cache), PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    return env


# ---------------------------------------------------------------- processes


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class ProcessGroup:
    """Processes started in a session of their own, each stopped with SIGINT (SIGKILL to the whole
    group on a timeout) so that nothing outlives the test; ``children`` are pids they report."""

    def __init__(self, log: Path) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.procs: list[subprocess.Popen[str]] = []
        self.children: set[int] = set()

    def spawn(self, argv: list[str], env: Mapping[str, str], *, stdout: int | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout if stdout is not None else self._log,
            stderr=self._log, text=True, start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self) -> list[int]:
        """Stop everything; the pids of processes that were still alive at the end (killed by then)."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_S
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        leftovers = [pid for pid in sorted(self.children) if _alive(pid)]
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        self._log.close()
        return leftovers

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


_STARTED = re.compile(r"^(?:re)?started (\w+) \(pid (\d+)\)$")


class Up:
    """``python -m services.cli up --config CONFIG`` with its stdout read line by line in a thread."""

    def __init__(self, config: Path, env: Mapping[str, str], log: Path) -> None:
        self.group = ProcessGroup(log)
        self.proc = self.group.spawn(
            [sys.executable, "-m", "services.cli", "up", "--config", str(config)], env, stdout=subprocess.PIPE
        )
        self.lines: list[str] = []
        self.pids: dict[str, int] = {}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            with self._cond:
                self.lines.append(line)
                if m := _STARTED.match(line):
                    self.pids[m[1]] = int(m[2])
                    self.group.children.add(int(m[2]))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float, start: int = 0) -> tuple[int, re.Match[str]]:
        """The first line from index ``start`` on that matches ``pattern`` (its index and match)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    if m := rx.search(self.lines[i]):
                        return i, m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout:.0f} s; `up` said:\n"
                        + "\n".join(self.lines[-30:]) + f"\nservice logs:\n{self.group.log_tail()}"
                    )  # fmt: skip
                self._cond.wait(left)

    def wait_started(self) -> None:
        self.wait_line(r"^all services ready", START_S)

    def stop(self) -> list[int]:
        leftovers = self.group.stop()
        self._reader.join(5)
        return leftovers


# ---------------------------------------------------------------- observing


def scrape(port: int) -> Samples | None:
    """Every sample of ``/metrics`` as ``{(name, labels): value}``; None while nobody answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def select(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return {lab: v for (n, lab), v in samples.items() if n == name and want <= lab}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample called ``name`` with exactly ``labels`` (None if absent)."""
    return samples.get((name, frozenset(labels.items())))


class Listener:
    """A SUB on some endpoints and topics (in this process), decoding what arrives."""

    def __init__(self, endpoints: list[str], topics: list[bytes]) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock = subscriber(self.ctx, endpoints[0], topics)
        for e in endpoints[1:]:
            self.sock.connect(e)
        self.malformed: list[str] = []

    def messages(self, timeout: float) -> Iterator[Message]:
        """Decoded messages as they come, until ``timeout`` passes without the caller stopping."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(min(left, 0.5) * 1000) + 1):
                continue
            frames = self.sock.recv_multipart()
            try:
                yield decode(frames)
            except ProtocolError as e:
                self.malformed.append(e.reason)

    def first(self, predicate: Callable[[Message], bool], timeout: float, what: str) -> Message:
        for msg in self.messages(timeout):
            if predicate(msg):
                return msg
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def running_up(config: Path, tmp: Path) -> Iterator[Up]:
    """``speck-edge up`` on ``config`` until the block ends; then stopped, and no child may outlive it."""
    up = Up(config, child_env(tmp / "cache"), tmp / "services.log")
    try:
        up.wait_started()
        yield up
    finally:
        leftovers = up.stop()
        assert not leftovers, f"processes outlived `up`: {leftovers}"
