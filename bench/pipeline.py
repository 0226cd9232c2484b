"""The whole edge service, measured: lossless throughput, real-time latency, memory.

Run: ``python -m bench.pipeline [--recording FILE] [--seconds 60] [--latency-seconds 30]``.

1. **Lossless throughput.** ``speck-edge up --lossless`` (PUSH/PULL, back-pressure) replays a real
   DVS128 recording in a loop as fast as the chip consumes it. After a warm-up, the rate is the growth
   of the chip's ``events_in`` (telemetry) over ``--seconds``; the sensor's ``events_sent`` and the
   filter's ``events_in`` are shown beside it, and every ``dropped_messages`` counter must stay 0.
2. **Latency at 1×.** ``speck-edge up`` replays the same recording in real time; a subscriber on
   ``prediction`` takes ``recv − origin`` (wall clock: the time the sensor sent the batch the
   prediction descends from, to the time the prediction arrives) for ``--latency-seconds``. Then
   again with ``pipeline.realtime_priority = --realtime-priority`` (the data path under SCHED_FIFO,
   :mod:`services.realtime`), the subscriber at the same priority where the OS permits.
3. **Transport floor.** The same number of ZeroMQ hops through processes that only forward, messages
   1 ms and 30 ms apart: the latency no stage logic can go below on this machine; then the same under
   SCHED_FIFO.
4. **Memory.** The summed RSS of the five service processes (``/proc/PID/status`` VmRSS) at the end
   of each run.

Each run gets its own ports and cache directory, so it never meets a running instance.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from proto.codec import decode
from proto.messages import Prediction, Telemetry
from proto.topics import find_topic
from services.cli import priority_arg
from services.realtime import set_fifo

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
DEFAULT_RECORDING = REAL / "colleenpamchen-jAER" / "DVS128-2017-03-21-short.aedat"
READY_TIMEOUT_S = 240.0
PID_LINE = re.compile(r"started (\w+) \(pid (\d+)\)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, recording: Path, lossless: bool, speed: float, realtime: int = 0) -> dict[str, str]:
    ports = {name: free_port() for name in ("sensor", "filter", "chip", "readout", "sl", "fl", "cl", "exp")}
    endpoints = {n: f"tcp://127.0.0.1:{ports[n]}" for n in ("sensor", "filter", "chip", "readout")}
    lossless_eps = {
        f"{n}_lossless": f"tcp://127.0.0.1:{ports[k]}" for n, k in (("sensor", "sl"), ("filter", "fl"), ("chip", "cl"))
    }
    lines = [
        "[pipeline]", f"lossless = {'true' if lossless else 'false'}", "telemetry_interval_s = 1.0",
        f"realtime_priority = {realtime}", "",
        "[endpoints]", *[f'{k} = "{v}"' for k, v in {**endpoints, **lossless_eps}.items()], "",
        "[sensor]", f'source = "{recording}"', f"speed = {speed}", "loop = true", "",
        "[exporter]", f"port = {ports['exp']}",
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return endpoints


class Pipeline:
    """``speck-edge up`` in a subprocess; the service pids it reports."""

    def __init__(self, config: Path, cache: Path) -> None:
        # the config file says it all: no SPECK_EDGE__ override from the caller's environment
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPECK_EDGE__")}
        env["SPECK_EDGE_CACHE"] = str(cache)
        cmd = [sys.executable, "-m", "services.cli", "up", "--config", str(config), "--quiet"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        self.pids: dict[str, int] = {}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if m := PID_LINE.search(line):
                self.pids[m.group(1)] = int(m.group(2))
            if "all services ready" in line:
                return
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"the pipeline did not get ready (up exited with {self.proc.poll()})")

    def memory_mb(self) -> dict[str, float]:
        """Summed over the five services: ``rss`` (each process's resident pages, shared library pages
        counted once per process) and ``pss`` (shared pages split between the processes sharing them:
        what the five occupy together), MB."""
        total = {"rss": 0, "pss": 0}
        for pid in self.pids.values():
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except FileNotFoundError:
                continue
            for key in total:
                m = re.search(rf"^{key.capitalize()}:\s+(\d+) kB", rollup, re.MULTILINE)
                total[key] += int(m.group(1)) if m else 0
        return {k: v / 1024 for k, v in total.items()}

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system, all threads) each service has used so far."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for name, pid in self.pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def telemetry_sub(ctx: zmq.Context[zmq.Socket[bytes]], endpoints: dict[str, str]) -> zmq.Socket[bytes]:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, find_topic("telemetry").wire)
    for ep in endpoints.values():
        sub.connect(ep)
    return sub


def latest_telemetry(sub: zmq.Socket[bytes], seconds: float, into: dict[str, Telemetry]) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if sub.poll(int(left * 1000) + 1):
            msg = decode(sub.recv_multipart(copy=False))
            if isinstance(msg, Telemetry):
                into[msg.stream] = msg


def value(t: dict[str, Telemetry], service: str, key: str) -> float:
    return float(t[service].values.get(key, 0)) if service in t else 0.0


def drops(t: dict[str, Telemetry]) -> dict[str, Any]:
    return {s: dict(m.groups.get("dropped_messages", {})) for s, m in t.items() if m.groups.get("dropped_messages")}


def throughput(recording: Path, seconds: float, warmup: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        endpoints = write_config(Path(tmp) / "bench.toml", recording, lossless=True, speed=0)
        pipe = Pipeline(Path(tmp) / "bench.toml", Path(tmp))
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            pipe.wait_ready()
            sub = telemetry_sub(ctx, endpoints)
            seen: dict[str, Telemetry] = {}
            latest_telemetry(sub, warmup, seen)
            start = {
                s: (value(seen, s, "events_in"), value(seen, s, "events_sent")) for s in ("sensor", "filter", "chip")
            }
            t0 = time.monotonic()
            latest_telemetry(sub, seconds, seen)
            dt = time.monotonic() - t0
            mem = pipe.memory_mb()
            chip = (value(seen, "chip", "events_in") - start["chip"][0]) / dt
            filt = (value(seen, "filter", "events_in") - start["filter"][0]) / dt
            sent = (value(seen, "sensor", "events_sent") - start["sensor"][1]) / dt
            print(f"lossless, {recording.name} looped, {dt:.0f} s after {warmup:.0f} s warm-up:")
            print(
                f"  sensor sent {sent / 1e6:.2f} M events/s, filter in {filt / 1e6:.2f} M/s, chip in {chip / 1e6:.2f} M/s"
            )
            print(
                f"  chip masked ratio {value(seen, 'chip', 'input_masked_ratio'):.2f}; drops: {drops(seen) or 'none'}"
            )
            print(f"  memory of the five services: RSS {mem['rss']:.0f} MB, PSS {mem['pss']:.0f} MB")
            sub.close(0)
        finally:
            ctx.term()
            pipe.stop()


@contextmanager
def scheduler_kept() -> Iterator[None]:
    """Whatever a run does to this process's scheduling, it is put back afterwards (lowering back to a
    normal policy is always permitted), so later runs and their children start as the bench did."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)


def latency(recording: Path, seconds: float, realtime: int = 0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        endpoints = write_config(Path(tmp) / "bench.toml", recording, lossless=False, speed=1.0, realtime=realtime)
        pipe = Pipeline(Path(tmp) / "bench.toml", Path(tmp))
        # the subscriber like the data path: after the pipeline started (its supervisor and exporter
        # must not inherit it), before the first socket (whose I/O thread must)
        how = ""
        if realtime and set_fifo(realtime):
            how = "the subscriber at the same priority"
        elif realtime:
            how = "the subscriber under the normal scheduler (SCHED_FIFO not permitted)"
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            pipe.wait_ready()
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, find_topic("prediction").wire)
            sub.connect(endpoints["readout"])
            tele = telemetry_sub(ctx, endpoints)
            lat_ms: list[float] = []
            inside_ms: list[float] = []
            timing: dict[str, list[dict[str, float]]] = {}
            end = time.monotonic() + seconds
            poller = zmq.Poller()
            poller.register(sub, zmq.POLLIN)
            poller.register(tele, zmq.POLLIN)
            seen: dict[str, Telemetry] = {}
            cpu0, t0 = pipe.cpu_s(), time.monotonic()
            while (left := end - time.monotonic()) > 0:
                for sock, _ in poller.poll(int(left * 1000) + 1):
                    msg = decode(sock.recv_multipart(copy=False))
                    if isinstance(msg, Prediction) and msg.origin_ns:
                        lat_ms.append((time.time_ns() - msg.origin_ns) / 1e6)
                        inside_ms.append((msg.sent_ns - msg.origin_ns) / 1e6)
                    elif isinstance(msg, Telemetry):
                        seen[msg.stream] = msg
                        timing.setdefault(msg.stream, []).append(dict(msg.groups.get("timing_us", {})))
            mem = pipe.memory_mb()
            cpu1, dt = pipe.cpu_s(), time.monotonic() - t0
            a = np.array(lat_ms)
            mode = f"data path SCHED_FIFO {realtime}, {how}" if realtime else "normal scheduler"
            print(f"real time (1x), {mode}, {recording.name} looped, {seconds:.0f} s: {len(a)} predictions")
            if len(a):
                p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
                print(
                    f"  sensor -> prediction wall latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms, p99.9 {p999:.2f} ms, max {a.max():.2f} ms"
                )
                b = np.array(inside_ms)
                print(
                    f"  (sensor -> the readout's send: p50 {np.percentile(b, 50):.2f} ms, p99 {np.percentile(b, 99):.2f} ms)"
                )
            for stage in ("filter", "chip", "readout"):
                rows = [r for r in timing.get(stage, []) if r]
                if rows:
                    med = {
                        k: float(np.median([r.get(k, 0.0) for r in rows]))
                        for k in ("hop_p50", "hop_p99", "handle_p50", "handle_p99")
                    }
                    print(
                        f"  {stage:8s} per message, µs (median of intervals): hop p50 {med['hop_p50']:.0f} p99 {med['hop_p99']:.0f}, "
                        f"handle p50 {med['handle_p50']:.0f} p99 {med['handle_p99']:.0f}"
                    )
            print(f"  sensor late batches: {value(seen, 'sensor', 'late_batches'):.0f}; drops: {drops(seen) or 'none'}")
            prios = {s: int(value(seen, s, "realtime_priority")) for s in ("sensor", "filter", "chip", "readout")}
            print(f"  SCHED_FIFO priority per service (telemetry; 0 = normal): {prios}")
            use = {k: 100 * (cpu1[k] - cpu0.get(k, 0.0)) / dt for k in cpu1}
            print(f"  CPU, % of one core: {', '.join(f'{k} {v:.0f}' for k, v in use.items())}; "
                  f"all {sum(use.values()):.0f} of {100 * (os.cpu_count() or 1)}")  # fmt: skip
            print(f"  memory of the five services: RSS {mem['rss']:.0f} MB, PSS {mem['pss']:.0f} MB")
            sub.close(0)
            tele.close(0)
        finally:
            ctx.term()
            pipe.stop()


FLOOR_HOPS = 4
"""sensor → filter → chip → readout → subscriber: the pipeline's hops between processes."""


def _forward(src: str, dst: str, stop: Any, realtime: int) -> None:
    """One stand-in stage: every message from ``src`` straight on to ``dst`` (no decode, no work)."""
    if realtime:
        set_fifo(realtime)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(src)
    pub.bind(dst)
    while not stop.is_set():
        if sub.poll(100):
            pub.send_multipart(sub.recv_multipart())
    ctx.destroy(0)


def transport_floor(messages: int = 300, realtime: int = 0) -> None:
    """What ZeroMQ alone costs here: ``FLOOR_HOPS`` hops through forwarding processes that do nothing,
    with messages 1 ms apart (a busy pipeline) and 30 ms apart (a prediction after quiet: every thread
    on the way has gone to sleep and must be woken); every process under SCHED_FIFO ``realtime`` if
    not 0."""
    import multiprocessing as mp

    ports = [free_port() for _ in range(FLOOR_HOPS)]
    eps = [f"tcp://127.0.0.1:{p}" for p in ports]
    stop = mp.Event()
    forwarders = [
        mp.Process(target=_forward, args=(eps[i], eps[i + 1], stop, realtime), daemon=True)
        for i in range(FLOOR_HOPS - 1)
    ]
    for f in forwarders:
        f.start()
    mode = "normal scheduler"
    if realtime:
        mode = f"SCHED_FIFO {realtime}" if set_fifo(realtime) else "normal scheduler (SCHED_FIFO not permitted)"
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    pub.bind(eps[0])
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(eps[-1])
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not sub.poll(50):  # until the chain is connected end to end (slow joiners): poll, no fixed sleep
            if time.monotonic() > deadline:
                raise RuntimeError("the forwarding chain never connected")
            pub.send_multipart([b"probe", b"-1"])
        while sub.poll(200):  # drain the probes still on their way
            sub.recv_multipart()
        print(f"transport floor, {mode}: {FLOOR_HOPS} ZeroMQ hops through do-nothing processes, "
              f"{messages} messages of 1.6 kB:")  # fmt: skip
        for gap_s in (0.001, 0.030):
            lat = []
            for seq in range(messages):
                pub.send_multipart([b"x", str(seq).encode(), str(time.time_ns()).encode(), bytes(1600)])
                while sub.poll(1000):  # its own message (a stray one is skipped), or it was lost
                    frames = sub.recv_multipart()
                    if frames[1] == str(seq).encode():
                        lat.append((time.time_ns() - int(frames[2])) / 1e6)
                        break
                time.sleep(gap_s)  # the pacing under test, not a wait for a result
            p50, p99 = np.percentile(lat[10:] or lat, [50, 99])
            print(f"  {gap_s * 1e3:.0f} ms apart: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({messages - len(lat)} lost)")
    finally:
        stop.set()
        for f in forwarders:
            f.join(5)
        ctx.destroy(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    parser.add_argument("--seconds", type=float, default=60.0, help="lossless measurement (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument(
        "--realtime-priority", type=priority_arg, default=10,
        help="the latency run is repeated with pipeline.realtime_priority = this (0: only the normal run)",
    )  # fmt: skip
    parser.add_argument("--skip", choices=("throughput", "latency", "floor"), action="append", default=[])
    args = parser.parse_args()
    if not args.recording.exists():
        sys.exit(f"no recording at {args.recording} (pass --recording)")
    if "throughput" not in args.skip:
        throughput(args.recording, args.seconds, args.warmup)
    if "latency" not in args.skip:
        latency(args.recording, args.latency_seconds)
        if args.realtime_priority:
            with scheduler_kept():
                latency(args.recording, args.latency_seconds, args.realtime_priority)
    if "floor" not in args.skip:
        transport_floor()
        if args.realtime_priority:
            with scheduler_kept():
                transport_floor(realtime=args.realtime_priority)


if __name__ == "__main__":
    main()
