"""Build and run one service process from :class:`~services.config.Settings` (``speck-edge run NAME``).

Socket layout (``E`` = ``settings.endpoints``):

=========  ==============================  =====================================  ==============================
service    input                           output (real time)                     output (lossless)
=========  ==============================  =====================================  ==============================
sensor     the recording / dv://           PUB ``E.sensor``: events.raw           PUSH ``E.sensor_lossless``
filter     SUB ``E.sensor`` / PULL          PUB ``E.filter``: events.filtered      PUSH ``E.filter_lossless``
chip       SUB ``E.filter`` / PULL          PUB ``E.chip``: spikes                 PUSH ``E.chip_lossless``
readout    SUB ``E.chip`` / PULL            PUB ``E.readout``: prediction          (the same PUB)
exporter   SUB every PUB: telemetry, and prediction; HTTP ``exporter.host:port``
=========  ==============================  =====================================  ==============================

Every service's telemetry goes out on its PUB. A service says ``READY=1`` (:mod:`services.notify`)
once its sockets are up and its code is compiled, so the first batch is not slowed by numba.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from proto.topics import find_topic
from services.clock import Clock, SystemClock
from services.config import Settings, bind_endpoint, load_settings
from services.notify import Notifier
from services.realtime import request_realtime
from services.runtime import Runtime, Sockets, Stage
from services.signals import stop_on_signals
from services.sockets import publisher, subscriber

if TYPE_CHECKING:
    from emulator.config import ChipConfig

log = logging.getLogger("speck_edge.launch")

SERVICE_NAMES = ("sensor", "filter", "chip", "readout", "exporter")
UPSTREAM = {"filter": "sensor", "chip": "filter", "readout": "chip"}
LOSSLESS_HWM = 4
"""Messages a lossless (PUSH/PULL) hop queues on each side before the sender waits: enough to keep
every stage busy, few enough that back-pressure reaches the sensor at once (a deep queue only
holds memory: 100 k queued batches took 1.7 GB)."""
FINAL_TELEMETRY_LINGER_MS = 1000
"""How long a stopping service waits to deliver its last telemetry (the final counters), which
LINGER=0 would drop when it was published just before the socket closed."""
LOSSLESS_LINGER_MS = 10_000
"""A lossless output delivers what is still queued for up to this long when its service exits (the
other sockets close with LINGER=0)."""
DOWNSTREAM_TOPIC = {"filter": "events.filtered", "chip": "spikes"}
"""What the next *stage* subscribes to (the readout's subscribers are clients, which may be none)."""
DOWNSTREAM_WAIT_S = 2.0
"""How long a (re)started stage holds its input until the next stage has subscribed."""

Context = zmq.Context[zmq.Socket[bytes]]


def _compiled_config(settings: Settings) -> ChipConfig:
    """The chip config, with the emulator's compiled code loaded (so the first batch is not slow)."""
    from emulator.chip import Chip
    from proto.events import make_events
    from services.defaults import resolve_chip_config

    config = resolve_chip_config(settings.chip.config)
    Chip.from_config(config).step(make_events([0], [0], [0], [1]))
    return config


def build_stage(name: str, settings: Settings) -> Stage:
    """The stage of a pipeline service (filter, chip, readout), its code compiled.

    Imports are per stage: the readout needs no numba, nor does the filter unless its noise filter
    filters, so their processes stay small."""
    if name == "readout":
        from services.defaults import resolve_chip_config
        from services.readout_stage import ReadoutStage

        return ReadoutStage(resolve_chip_config(settings.chip.config))
    if name == "filter":  # no numba unless its noise filter filters
        from services.defaults import resolve_chip_config
        from services.filter_stage import FilterStage

        filter_stage = FilterStage(resolve_chip_config(settings.chip.config))
        filter_stage.warm_up()
        return filter_stage
    if name == "chip":
        from emulator.attention import MaskParams
        from services.defaults import model_mask
        from services.stages import ChipStage

        c = settings.chip
        window, history, scorer = model_mask(c.config, c.mask_window_us, c.mask_history)
        if (window, history) != (c.mask_window_us, c.mask_history):
            log.info("input mask: the model's trained scorer judges %d µs windows over %d of them", window, history)
        mask = MaskParams(window_us=window, mask_ratio=c.mask_ratio, history=history)
        stage = ChipStage(_compiled_config(settings), mask, scorer)
        stage.warm_up()
        return stage
    raise ValueError(f"no pipeline stage called {name!r}; stages: {', '.join(UPSTREAM)}")


def stage_sockets(ctx: Context, name: str, settings: Settings, topic: str) -> Sockets:
    """Input from the upstream service, PUB (and in lossless mode PUSH) output."""
    e, lossless, hwm = settings.endpoints, settings.pipeline.lossless, settings.pipeline.hwm
    up = UPSTREAM[name]
    if lossless:
        pull = ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.setsockopt(zmq.RCVHWM, LOSSLESS_HWM)
        pull.connect(e.lossless_data(up))
        inputs = [pull]
    else:
        inputs = [subscriber(ctx, e.publisher(up), [find_topic(topic).wire], hwm=hwm)]
    host = settings.pipeline.bind_host
    pub = publisher(ctx, bind_endpoint(e.publisher(name), host), hwm=hwm)
    output = pub
    if lossless and name != "readout":
        output = ctx.socket(zmq.PUSH)
        output.setsockopt(zmq.LINGER, 0)
        output.setsockopt(zmq.SNDHWM, LOSSLESS_HWM)
        output.bind(bind_endpoint(e.lossless_data(name), host))
    return Sockets(inputs=inputs, output=output, telemetry=pub, lossless_output=lossless and name != "readout")


M_MMAP_THRESHOLD = -3
"""glibc ``mallopt`` parameter (malloc.h)."""
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
"""Arrays above this come from their own mmap and go back to the system when freed. Lossless replay,
60 s: 256 kB gave 484 MB of RSS at 1.54 M events/s (a page-faulted mmap per big array), 4 MB gave
423 MB at 1.76 M/s, glibc's dynamic default 660 MB at 2.1 M/s."""


def bound_heap() -> None:
    """Fix glibc's mmap threshold. Left dynamic, it rises to 32 MB after the first big array is freed,
    so later batch-sized arrays come from the heap, which fragments and never shrinks: a lossless
    replay (batches of thousands of events) grew the five processes by ~240 MB in a minute. No-op off
    glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def settle_heap() -> None:
    """Before the message loop: move everything start-up made (numba's and numpy's objects: hundreds of
    thousands) out of the garbage collector's sight, so a full collection, which would walk them all,
    costs microseconds instead of milliseconds in the middle of a batch (the p99 latency)."""
    gc.collect()
    gc.freeze()


def go_realtime(name: str, settings: Settings) -> bool:
    """:func:`~services.realtime.request_realtime` for service ``name``. Call it after the start-up work
    (compiling, generating a recording: not at real-time priority) and before the first socket (ZeroMQ
    starts its I/O thread with the first socket, and that thread must inherit the policy)."""
    p, s = settings.pipeline, settings.sensor
    flat_out = p.lossless or (s.speed == 0 and not s.live)
    return request_realtime(name, p.realtime_priority, flat_out=flat_out)


def run_stage(
    ctx: Context, settings: Settings, stop: threading.Event, clock: Clock, notifier: Notifier, *, name: str
) -> None:
    stage = build_stage(name, settings)
    go_realtime(name, settings)
    sockets = stage_sockets(ctx, name, settings, stage.input_topic)
    runtime = Runtime(stage, sockets, clock, stop, settings.pipeline.telemetry_interval_s, notifier)
    settle_heap()
    downstream = DOWNSTREAM_TOPIC.get(name) if not settings.pipeline.lossless else None
    try:
        runtime.run(find_topic(downstream).wire if downstream else None, DOWNSTREAM_WAIT_S)
    finally:
        for sock in sockets.inputs:
            sock.close(0)
        sockets.telemetry.close(FINAL_TELEMETRY_LINGER_MS)  # the final counters: let them go out
        if sockets.output is not None and sockets.output is not sockets.telemetry:
            sockets.output.close(LOSSLESS_LINGER_MS)  # deliver what is queued before exiting


def run_sensor(ctx: Context, settings: Settings, stop: threading.Event, clock: Clock, notifier: Notifier) -> None:
    from services.defaults import resolve_recording
    from services.sensor import Sensor, SensorConfig

    s, p = settings.sensor, settings.pipeline
    cfg = SensorConfig(
        source=resolve_recording(s.source), endpoint=settings.endpoints.sensor,
        speed=None if p.lossless or s.speed == 0 else s.speed, loop=s.loop, window_us=s.window_us,
        stream=p.stream, telemetry_interval_s=p.telemetry_interval_s,
        wait_subscriber_s=0.0 if p.lossless else DOWNSTREAM_WAIT_S, must_have_subscriber=False,
    )  # fmt: skip
    go_realtime("sensor", settings)
    pub = publisher(ctx, bind_endpoint(cfg.endpoint, p.bind_host), hwm=p.hwm)
    data = None
    if p.lossless:
        data = ctx.socket(zmq.PUSH)
        data.setsockopt(zmq.LINGER, 0)
        data.setsockopt(zmq.SNDHWM, LOSSLESS_HWM)
        data.bind(bind_endpoint(settings.endpoints.sensor_lossless, p.bind_host))
    notifier.ready("sensor running")
    settle_heap()
    try:
        sensor = Sensor(cfg, pub, clock, stop, data_sock=data, telemetry_stream="sensor", heartbeat=notifier.watchdog)
        counters = sensor.run()
        log.info("sensor done: %d events in %d batches", counters.events_sent, counters.batches_sent)
    finally:
        notifier.stopping()
        pub.close(FINAL_TELEMETRY_LINGER_MS)  # its final counters (events sent) go out, not dropped
        if data is not None:
            data.close(LOSSLESS_LINGER_MS)  # the last batches may still be queued: deliver them


def run_exporter_service(
    ctx: Context, settings: Settings, stop: threading.Event, clock: Clock, notifier: Notifier
) -> None:
    from services.exporter import ExporterState, run_exporter, serve, shutdown

    state = ExporterState()
    server, _, port = serve(settings.exporter.host, settings.exporter.port, state, clock)
    log.info("metrics at http://%s:%d/metrics", settings.exporter.host, port)
    notifier.ready(f"metrics on port {port}")
    try:
        endpoints = {name: settings.endpoints.publisher(name) for name in ("sensor", "filter", "chip", "readout")}
        run_exporter(ctx, endpoints, state, stop, clock=clock, heartbeat=notifier.watchdog)
    finally:
        notifier.stopping()
        shutdown(server)


RUNNERS: dict[str, Callable[[Context, Settings, threading.Event, Clock, Notifier], None]] = {
    "sensor": run_sensor,
    "exporter": run_exporter_service,
    **{name: partial(run_stage, name=name) for name in UPSTREAM},
}


def run_service(name: str, settings: Settings, stop: threading.Event, notifier: Notifier | None = None) -> None:
    """Run service ``name`` until ``stop`` is set (or, for the sensor, the recording ends)."""
    if name not in RUNNERS:
        raise ValueError(f"unknown service {name!r}; services: {', '.join(SERVICE_NAMES)}")
    ctx: Context = zmq.Context()
    try:
        RUNNERS[name](ctx, settings, stop, SystemClock(), notifier or Notifier())
    finally:
        ctx.term()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.launch SERVICE [--config TOML]``: what ``speck-edge run`` and ``up`` start."""
    parser = argparse.ArgumentParser(prog="speck-edge run", description="Run one speck-edge service.")
    parser.add_argument("service", choices=SERVICE_NAMES)
    parser.add_argument("--config", type=Path, help="services config TOML (deploy/config/default.toml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.service} %(levelname)s %(message)s")
    settings = load_settings(args.config)
    bound_heap()
    stop = threading.Event()
    stop_on_signals(stop)
    run_service(args.service, settings, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
