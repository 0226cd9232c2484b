"""The Prometheus exporter: telemetry and predictions over ZeroMQ in, ``/metrics`` over HTTP out.

Three parts, each testable alone (the only module of the product that imports prometheus_client):

* :class:`ExporterState` — no sockets: ``observe(msg, recv_ns)`` keeps each service's latest
  :class:`~proto.messages.Telemetry` (the contract is :mod:`services.telemetry`), counts
  predictions by label and fills two latency histograms; ``note_decode_error(reason)`` counts
  frames that did not decode. Thread-safe: the loop writes, HTTP scrapes read a snapshot.
* :class:`ExporterCollector` — builds fresh metric families from a snapshot on every scrape, all
  present from the first scrape (some without samples until telemetry arrives). A service is up
  while its telemetry is younger than ``stale_after_s`` on the injected clock and does not say
  ``up`` = 0. Counters keep a stale service's last values; gauges (power, masked ratio, uptime)
  come only from services that are up.

Metrics (base units; ``stage`` and ``service`` are service names, ``stage="exporter"`` the exporter):

* ``speck_service_up{service}``, ``speck_service_uptime_seconds{service}``,
  ``speck_exporter_messages_total{kind}``;
* ``speck_power_watts{rail,state}`` (``resting``: the chip's ``resting_power_w``; ``active``: the sum
  of every service's ``active_power_w``), ``speck_energy_joules_total{rail,state}`` (likewise from
  ``resting_energy_j`` and ``energy_j``);
* ``speck_events_total{stage}`` (``events_in``; sensor ``events_sent``), ``speck_events_out_total{stage}``,
  ``speck_messages_received_total{stage}``, ``speck_messages_sent_total{stage}`` (sensor ``batches_sent``),
  ``speck_events_dropped_total{stage,reason}``, ``speck_messages_dropped_total{stage,reason}``;
* chip: ``speck_synops_total``, ``speck_neuron_updates_total``, ``speck_model_time_seconds_total``,
  ``speck_spikes_total{layer}``, ``speck_input_masked_ratio``, ``speck_input_windows_total{masked}``;
* sensor: ``speck_sensor_late_batches_total``, ``speck_sensor_reordered_events_total``,
  ``speck_sensor_max_late_seconds``;
* readout: ``speck_decisions_total``, ``speck_predictions_total{label}`` (as received here),
  histograms ``speck_chip_latency_seconds`` (``extras["chip_latency_us"]``) and
  ``speck_pipeline_latency_seconds`` (``sent_ns − origin_ns`` when ``origin_ns`` > 0).
* :func:`run_exporter` — one SUB per service endpoint on ``telemetry|`` (plus ``prediction|`` on
  the readout's), polled with a timeout so ``stop`` is seen; :func:`serve` / :func:`shutdown`
  run the landing page ``/`` and ``/metrics`` on a background thread.

``recv_ns`` is the monotonic time (of the clock given to the collector) a message arrived.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final
from wsgiref.simple_server import WSGIServer

import zmq
from prometheus_client import disable_created_metrics
from prometheus_client.exposition import make_wsgi_app
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from proto.codec import ProtocolError, decode
from proto.messages import Message, Prediction, Telemetry
from proto.topics import SERVICES, Kind, find_topic
from services import exporter_http
from services import telemetry as t
from services.clock import Clock, SystemClock
from services.sockets import STOP_POLL_MS, subscriber

disable_created_metrics()  # no ``*_created`` series (PROMETHEUS_DISABLE_CREATED_SERIES)

EXPORTER_PORT: Final = 8790
"""Fixed default HTTP port, outside 9100–9999 (allocated to public exporters)."""
EXPORTER_HOST: Final = "127.0.0.1"
TELEMETRY_INTERVAL_S: Final = 1.0
STALE_AFTER_S: Final = 3 * TELEMETRY_INTERVAL_S
"""A service is down once its telemetry is older than three intervals (two may be lost)."""
EXPORTER_STAGE: Final = "exporter"
"""``stage`` label of the exporter's own decode errors and sequence gaps."""

CHIP_LATENCY_BUCKETS_S: Final = (5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3)
"""Modeled chip latency: the chip decides in tens of µs to a few ms."""
PIPELINE_LATENCY_BUCKETS_S: Final = (
    100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0,
)  # fmt: skip
"""Sensor send to prediction send, wall clock: sub-ms on one host up to a stalled second."""


class Histogram:
    """Bucket counts and sum of observations, for a fresh ``HistogramMetricFamily`` per scrape."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``."""
        les = [repr(float(b)) for b in self.bounds] + ["+Inf"]
        cumulative, total = [], 0
        for count in self.counts:
            total += count
            cumulative.append(total)
        return list(zip(les, cumulative, strict=True))

    def copy(self) -> Histogram:
        h = Histogram(self.bounds)
        h.counts, h.sum = list(self.counts), self.sum
        return h


@dataclass
class Snapshot:
    """A consistent copy of :class:`ExporterState` for one scrape."""

    telemetry: dict[str, tuple[Telemetry, int]] = field(default_factory=dict)
    """service → (latest telemetry, recv_ns)."""
    predictions: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    """The exporter's own drops: ``decode_<reason>`` and ``sequence_gap``."""
    chip_latency: Histogram = field(default_factory=lambda: Histogram(CHIP_LATENCY_BUCKETS_S))
    pipeline_latency: Histogram = field(default_factory=lambda: Histogram(PIPELINE_LATENCY_BUCKETS_S))


class ExporterState:
    """What the exporter has heard; ``observe`` from the loop, ``snapshot`` from scrapes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._s = Snapshot()
        self._last_seq: dict[tuple[str, str, str], int] = {}

    def observe(self, msg: Message, recv_ns: int, service: str | None = None) -> None:
        """Take one decoded message; ``service`` defaults to ``msg.stream``. Other kinds are only counted."""
        key = service if service is not None else msg.stream
        with self._lock:
            self._s.messages[msg.KIND.value] += 1
            self._track_seq(key, msg)
            if isinstance(msg, Telemetry):
                self._s.telemetry[key] = (msg, recv_ns)
            elif isinstance(msg, Prediction):
                self._prediction(msg)

    def note_decode_error(self, reason: str) -> None:
        """Count frames that did not decode (``ProtocolError.reason``)."""
        with self._lock:
            self._s.dropped[t.DECODE_PREFIX + reason] += 1

    def snapshot(self) -> Snapshot:
        with self._lock:
            s = self._s
            return Snapshot(
                dict(s.telemetry), Counter(s.predictions), Counter(s.messages), Counter(s.dropped),
                s.chip_latency.copy(), s.pipeline_latency.copy(),
            )  # fmt: skip

    def _prediction(self, msg: Prediction) -> None:
        self._s.predictions[msg.label] += 1
        chip_us = msg.extras.get(t.CHIP_LATENCY_US)
        if chip_us is not None and chip_us >= 0:
            self._s.chip_latency.observe(chip_us / 1e6)
        if msg.origin_ns > 0 and msg.sent_ns >= msg.origin_ns:  # skip a negative span (clock step)
            self._s.pipeline_latency.observe((msg.sent_ns - msg.origin_ns) / 1e9)

    def _track_seq(self, service: str, msg: Message) -> None:
        key = (service, msg.stream, msg.topic)
        last = self._last_seq.get(key)
        if last is not None and msg.seq > last + 1:  # a lower seq is a restart, not a gap
            self._s.dropped[t.SEQUENCE_GAP] += msg.seq - last - 1
        self._last_seq[key] = msg.seq


def services_up(snap: Snapshot, now_ns: int, stale_after_s: float) -> dict[str, bool]:
    """Each pipeline service (and any other heard from) → whether its telemetry is fresh and says up."""
    up = dict.fromkeys(SERVICES, False)
    for service, (msg, recv_ns) in snap.telemetry.items():
        fresh = now_ns - recv_ns <= stale_after_s * 1e9
        up[service] = fresh and msg.values.get(t.SERVICE_UP, 1) != 0
    return up


def _rail_sum(tele: Iterable[Telemetry], group: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for msg in tele:
        for rail, value in msg.groups.get(group, {}).items():
            total[rail] = total.get(rail, 0.0) + value
    return total


_Family = GaugeMetricFamily | CounterMetricFamily


class ExporterCollector(Collector):
    """Fresh metric families from an :class:`ExporterState` on every ``collect()``."""

    def __init__(self, state: ExporterState, clock: Clock, stale_after_s: float = STALE_AFTER_S) -> None:
        self.state, self.clock, self.stale_after_s = state, clock, stale_after_s

    def collect(self) -> Iterator[Metric]:
        snap = self.state.snapshot()
        up = services_up(snap, self.clock.monotonic_ns(), self.stale_after_s)
        tele = {service: msg for service, (msg, _) in snap.telemetry.items()}
        live = {service: msg for service, msg in tele.items() if up[service]}
        yield from self._health(snap, up, live)
        yield from self._power(tele, live)
        yield from self._flow(snap, tele)
        yield from self._chip(tele.get("chip"), "chip" in live)
        yield from self._sensor(tele.get("sensor"))
        yield from self._readout(snap, tele.get("readout"))
        yield from self._timing(live)

    def _health(self, snap: Snapshot, up: dict[str, bool], live: dict[str, Telemetry]) -> Iterator[Metric]:
        g = GaugeMetricFamily("speck_service_up", "1 if the service's telemetry is fresh", labels=["service"])
        for service, ok in up.items():
            g.add_metric([service], int(ok))
        yield g
        g = GaugeMetricFamily("speck_service_uptime_seconds", "Seconds since the service started", labels=["service"])
        for service, msg in live.items():
            if t.UPTIME_S in msg.values:
                g.add_metric([service], msg.values[t.UPTIME_S])
        yield g
        g = GaugeMetricFamily(
            "speck_service_realtime_priority",
            "SCHED_FIFO priority the service runs at; 0 = the normal scheduler",
            labels=["service"],
        )
        for service, msg in live.items():
            if t.REALTIME_PRIORITY in msg.values:
                g.add_metric([service], msg.values[t.REALTIME_PRIORITY])
        yield g
        c = CounterMetricFamily("speck_exporter_messages", "Messages the exporter decoded, by kind", labels=["kind"])
        for kind in Kind:
            c.add_metric([kind.value], snap.messages[kind.value])
        yield c

    def _power(self, tele: dict[str, Telemetry], live: dict[str, Telemetry]) -> Iterator[Metric]:
        chip_live = [live["chip"]] if "chip" in live else []
        chip = [tele["chip"]] if "chip" in tele else []
        watts = {
            "resting": _rail_sum(chip_live, t.RESTING_POWER_W),
            "active": _rail_sum(live.values(), t.ACTIVE_POWER_W),
        }
        joules = {"resting": _rail_sum(chip, t.RESTING_ENERGY_J), "active": _rail_sum(tele.values(), t.ENERGY_J)}
        for family, by_state in (
            (GaugeMetricFamily("speck_power_watts", "Modeled power by rail", labels=["rail", "state"]), watts),
            (CounterMetricFamily("speck_energy_joules", "Modeled energy by rail", labels=["rail", "state"]), joules),
        ):
            for state, rails in by_state.items():
                for rail, value in sorted(rails.items()):
                    family.add_metric([rail, state], value)
            yield family

    def _flow(self, snap: Snapshot, tele: dict[str, Telemetry]) -> Iterator[Metric]:
        def per_stage(name: str, doc: str, key: str, sensor_key: str) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=["stage"])
            for service, msg in tele.items():
                value = msg.values.get(sensor_key if service == "sensor" else key)
                if value is not None:
                    c.add_metric([service], value)
            return c

        yield per_stage("speck_events", "Events each stage received", t.EVENTS_IN, "events_sent")
        yield per_stage("speck_events_out", "Events (spikes, predictions) each stage sent", t.EVENTS_OUT, "events_sent")
        yield per_stage("speck_messages_received", "Data messages each stage received", t.MESSAGES_IN, t.MESSAGES_IN)
        yield per_stage("speck_messages_sent", "Data messages each stage sent", t.MESSAGES_OUT, "batches_sent")
        events = CounterMetricFamily("speck_events_dropped", "Events dropped on purpose", labels=["stage", "reason"])
        messages = CounterMetricFamily(
            "speck_messages_dropped", "Messages lost or undecodable", labels=["stage", "reason"]
        )
        for service, msg in tele.items():
            for group, family in ((t.DROPPED_EVENTS, events), ("dropped", events), (t.DROPPED_MESSAGES, messages)):
                for reason, value in sorted(msg.groups.get(group, {}).items()):
                    family.add_metric([service, reason], value)
        for reason, count in sorted(snap.dropped.items()):
            messages.add_metric([EXPORTER_STAGE, reason], count)
        yield events
        yield messages

    def _chip(self, msg: Telemetry | None, live: bool) -> Iterator[Metric]:
        v = msg.values if msg is not None else {}
        yield _single(CounterMetricFamily, "speck_synops", "Synaptic operations", v.get(t.SYNOPS))
        yield _single(CounterMetricFamily, "speck_neuron_updates", "Neuron state updates", v.get(t.NEURON_UPDATES))
        yield _single(CounterMetricFamily, "speck_model_time_seconds", "Event time processed", v.get(t.MODEL_TIME_S))
        spikes = CounterMetricFamily("speck_spikes", "Output spikes by layer", labels=["layer"])
        for layer, value in sorted((msg.groups.get(t.SPIKES, {}) if msg is not None else {}).items()):
            spikes.add_metric([layer], value)
        yield spikes
        ratio = v.get(t.INPUT_MASKED_RATIO) if live else None
        yield _single(GaugeMetricFamily, "speck_input_masked_ratio", "Masked / all input windows (0-1)", ratio)
        windows = CounterMetricFamily("speck_input_windows", "Input windows, masked or not", labels=["masked"])
        if t.WINDOWS in v:
            masked = v.get(t.MASKED_WINDOWS, 0)
            windows.add_metric(["true"], masked)
            windows.add_metric(["false"], v[t.WINDOWS] - masked)
        yield windows
        path = GaugeMetricFamily(
            "speck_chip_path_latency_seconds",
            "Modeled latency from the sensor to each layer's output",
            labels=["layer"],
        )
        for layer, ns in sorted((msg.groups.get(t.PATH_LATENCY_NS, {}) if msg is not None else {}).items()):
            path.add_metric([layer], ns / 1e9)
        yield path

    def _sensor(self, msg: Telemetry | None) -> Iterator[Metric]:
        v = msg.values if msg is not None else {}
        late = v.get("late_batches")
        yield _single(CounterMetricFamily, "speck_sensor_late_batches", "Batches sent over 2 ms late", late)
        yield _single(CounterMetricFamily, "speck_sensor_reordered_events", "Events sorted back into time order",
                      v.get("reordered_events"))  # fmt: skip
        max_late = v.get("max_late_us")
        yield _single(GaugeMetricFamily, "speck_sensor_max_late_seconds", "Latest batch lateness maximum",
                      max_late / 1e6 if max_late is not None else None)  # fmt: skip

    def _readout(self, snap: Snapshot, msg: Telemetry | None) -> Iterator[Metric]:
        decisions = msg.values.get(t.DECISIONS) if msg is not None else None
        yield _single(CounterMetricFamily, "speck_decisions", "Decisions the readout made", decisions)
        c = CounterMetricFamily("speck_predictions", "Predictions the exporter received, by label", labels=["label"])
        for label, count in sorted(snap.predictions.items()):
            c.add_metric([label], count)
        yield c
        for name, doc, hist in (
            ("speck_chip_latency_seconds", "Modeled chip latency of each decision", snap.chip_latency),
            ("speck_pipeline_latency_seconds", "Sensor send to prediction send (wall clock)", snap.pipeline_latency),
        ):
            yield HistogramMetricFamily(name, doc, buckets=hist.buckets(), sum_value=hist.sum)

    def _timing(self, live: dict[str, Telemetry]) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "speck_stage_timing_seconds",
            "Per stage over its last telemetry interval: hop (upstream send to receive) and handle "
            "(step, encode, send) wall time: stat p50, p99, max",
            labels=["stage", "step", "stat"],
        )
        for service, msg in sorted(live.items()):
            timing = msg.groups.get(t.TIMING_US, {})
            for key, value in sorted(timing.items()):
                step, _, stat = key.partition("_")
                if stat in _STATS:
                    g.add_metric([service, step, stat], value / 1e6)
        yield g


_STATS = ("p50", "p99", "max")
"""Not a ``quantile`` label: that one is reserved for summaries."""


def _single(cls: type[_Family], name: str, doc: str, value: float | None) -> _Family:
    """A family with one unlabelled sample, or none when ``value`` is unknown."""
    family = cls(name, doc)
    if value is not None:
        family.add_metric([], value)
    return family


def registry_for(state: ExporterState, clock: Clock, stale_after_s: float = STALE_AFTER_S) -> CollectorRegistry:
    """A fresh registry holding only the exporter's collector (never the global ``REGISTRY``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExporterCollector(state, clock, stale_after_s))
    return registry


def serve(
    host: str, port: int, state: ExporterState, clock: Clock, *, stale_after_s: float = STALE_AFTER_S
) -> tuple[WSGIServer, threading.Thread, int]:
    """Serve ``/`` and ``/metrics`` for ``state`` on ``host:port`` (0 = a free port) from a daemon
    thread; returns ``(server, thread, bound_port)``. Stop it with :func:`shutdown`."""
    metrics = make_wsgi_app(registry_for(state, clock, stale_after_s))

    def up() -> dict[str, bool]:
        return services_up(state.snapshot(), clock.monotonic_ns(), stale_after_s)

    return exporter_http.start(host, port, exporter_http.router(metrics, up))


def shutdown(server: WSGIServer) -> None:
    """Stop a server from :func:`serve` and close its socket."""
    exporter_http.stop(server)


def run_exporter(
    ctx: zmq.Context[zmq.Socket[bytes]],
    endpoints: Mapping[str, str],
    state: ExporterState,
    stop: threading.Event,
    *,
    clock: Clock | None = None,
    prediction_service: str = "readout",
    poll_ms: int = STOP_POLL_MS,
    heartbeat: Callable[[], None] | None = None,
    heartbeat_s: float = 1.0,
) -> None:
    """Feed ``state`` from each service's PUB endpoint until ``stop`` is set.

    One SUB per ``endpoints`` entry (service → endpoint) on ``telemetry|``; the one of
    ``prediction_service`` also on ``prediction|``. Telemetry is filed under the endpoint's service
    name, whatever stream it names. Undecodable frames are counted by reason and dropped.
    ``heartbeat`` (e.g. the systemd watchdog) is called every ``heartbeat_s`` while the loop runs.
    """
    clock = clock if clock is not None else SystemClock()
    telemetry, prediction = find_topic("telemetry").wire, find_topic("prediction").wire
    poller, services = zmq.Poller(), dict[zmq.Socket[bytes], str]()
    try:
        for service, endpoint in endpoints.items():
            topics = [telemetry, prediction] if service == prediction_service else [telemetry]
            sock = subscriber(ctx, endpoint, topics)
            services[sock] = service
            poller.register(sock, zmq.POLLIN)
        next_beat = 0
        while not stop.is_set():
            for sock, _ in poller.poll(poll_ms):
                _receive(sock, services[sock], state, clock)
            if heartbeat is not None and clock.monotonic_ns() >= next_beat:
                heartbeat()
                next_beat = clock.monotonic_ns() + int(heartbeat_s * 1e9)
    finally:
        for sock in services:
            sock.close(linger=0)


def _receive(sock: zmq.Socket[bytes], service: str, state: ExporterState, clock: Clock) -> None:
    frames = sock.recv_multipart(copy=False)
    try:
        msg = decode(frames)
    except ProtocolError as e:
        state.note_decode_error(e.reason)
        return
    state.observe(msg, clock.monotonic_ns(), service)
