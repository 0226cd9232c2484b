"""The exporter: state + collector against hand-built telemetry, HTTP on port 0, and the ZeroMQ loop."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import pytest
import zmq
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from proto.codec import decode, encode
from proto.messages import Message, Prediction, Telemetry
from services.clock import FakeClock
from services.exporter import (
    CHIP_LATENCY_BUCKETS_S,
    EXPORTER_PORT,
    PIPELINE_LATENCY_BUCKETS_S,
    STALE_AFTER_S,
    ExporterCollector,
    ExporterState,
    run_exporter,
    serve,
    shutdown,
)
from services.sockets import publisher, send_frames
from tests.net import free_port

S = 10**9
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _wire(msg: Message) -> Message:
    """Through the codec and back, as the exporter would receive it."""
    return decode([bytes(f) for f in encode(msg)])


def _tele(stream: str, seq: int = 0, values: Mapping[str, float] | None = None, **groups: Any) -> Telemetry:
    msg = Telemetry(stream=stream, seq=seq, sent_ns=1, values=dict(values or {}), groups=groups)
    out = _wire(msg)
    assert isinstance(out, Telemetry)
    return out


def _pred(label: str, seq: int, sent_ns: int = 0, origin_ns: int = 0, chip_us: float | None = None) -> Prediction:
    extras = {"chip_latency_us": chip_us} if chip_us is not None else {}
    msg = Prediction(
        stream="readout", seq=seq, sent_ns=sent_ns, origin_ns=origin_ns, class_id=0, label=label, score=0.9,
        t_start_us=0, t_end_us=1000, latency_us=12.0, extras=extras,
    )  # fmt: skip
    out = _wire(msg)
    assert isinstance(out, Prediction)
    return out


def _text(state: ExporterState, clock: FakeClock) -> str:
    registry = CollectorRegistry()
    registry.register(ExporterCollector(state, clock))
    return generate_latest(registry).decode()


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(state: ExporterState, clock: FakeClock) -> Samples:
    return _samples(_text(state, clock))


def _v(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


FILTER = _tele(
    "filter",
    values={"up": 1, "uptime_s": 12.5, "events_in": 1000, "events_out": 600, "messages_in": 10, "messages_out": 9},
    energy_j={"dvs": 1e-6, "io": 2e-6},
    active_power_w={"dvs": 1e-3, "io": 2e-3},
    dropped_events={"noise": 300, "roi": 100},
    dropped_messages={"sequence_gap": 2, "decode_bad_msgpack": 1},
    timing_us={"hop_p50": 300.0, "hop_p99": 900.0, "hop_max": 1500.0, "handle_p50": 120.0, "handle_p99": 400.0},
)
CHIP = _tele(
    "chip",
    values={
        "up": 1,
        "uptime_s": 12.0,
        "realtime_priority": 10,
        "events_in": 600,
        "events_out": 50,
        "synops": 123456,
        "neuron_updates": 789,
        "windows": 40,
        "masked_windows": 10,
        "input_masked_ratio": 0.25,
        "model_time_s": 4.0,
    },
    spikes={"conv0": 40, "fc": 10},
    resting_power_w={"dvs": 1e-4, "logic": 5e-4},
    resting_energy_j={"dvs": 4e-4, "logic": 2e-3},
    energy_j={"logic": 3e-6, "io": 1e-6},
    active_power_w={"logic": 4e-3},
    dropped_events={"masked": 5},
    path_latency_ns={"conv0": 3936, "fc": 6182},
)
SENSOR = _tele(
    "sensor",
    values={"events_sent": 1100, "batches_sent": 11, "late_batches": 3, "max_late_us": 2500.0, "reordered_events": 7},
    dropped={"queue_full": 4},
)
READOUT = _tele("readout", values={"up": 1, "decisions": 5, "predictions": 5, "events_in": 50})


def _fed(clock: FakeClock) -> ExporterState:
    state = ExporterState()
    for msg in (FILTER, CHIP, SENSOR, READOUT):
        state.observe(msg, clock.monotonic_ns())
    return state


def test_every_family_is_present_before_any_telemetry() -> None:
    text = _text(ExporterState(), FakeClock())
    names = {f.name for f in text_string_to_metric_families(text)}
    assert names >= {
        "speck_service_up", "speck_power_watts", "speck_energy_joules", "speck_chip_latency_seconds",
        "speck_pipeline_latency_seconds", "speck_predictions", "speck_decisions", "speck_events", "speck_events_out",
        "speck_events_dropped", "speck_messages_dropped", "speck_synops", "speck_neuron_updates", "speck_spikes",
        "speck_input_masked_ratio", "speck_input_windows", "speck_sensor_late_batches",
        "speck_service_uptime_seconds", "speck_service_realtime_priority", "speck_exporter_messages",
    }  # fmt: skip
    samples = _samples(text)
    assert {_v(samples, "speck_service_up", service=s) for s in ("sensor", "filter", "chip", "readout")} == {0}
    assert _v(samples, "speck_chip_latency_seconds_count") == 0
    assert "_created" not in text


def test_values_map_to_metrics() -> None:
    clock = FakeClock()
    s = _scrape(_fed(clock), clock)
    assert _v(s, "speck_power_watts", rail="dvs", state="active") == pytest.approx(1e-3)
    assert _v(s, "speck_power_watts", rail="io", state="active") == pytest.approx(2e-3)
    assert _v(s, "speck_power_watts", rail="logic", state="active") == pytest.approx(4e-3)
    assert _v(s, "speck_power_watts", rail="logic", state="resting") == pytest.approx(5e-4)
    assert _v(s, "speck_energy_joules_total", rail="io", state="active") == pytest.approx(3e-6)  # filter + chip
    assert _v(s, "speck_energy_joules_total", rail="dvs", state="resting") == pytest.approx(4e-4)
    assert _v(s, "speck_events_total", stage="sensor") == 1100
    assert _v(s, "speck_events_total", stage="chip") == 600
    assert _v(s, "speck_events_out_total", stage="filter") == 600
    assert _v(s, "speck_events_dropped_total", stage="filter", reason="noise") == 300
    assert _v(s, "speck_events_dropped_total", stage="chip", reason="masked") == 5
    assert _v(s, "speck_events_dropped_total", stage="sensor", reason="queue_full") == 4
    assert _v(s, "speck_messages_dropped_total", stage="filter", reason="decode_bad_msgpack") == 1
    assert _v(s, "speck_messages_sent_total", stage="sensor") == 11
    assert _v(s, "speck_synops_total") == 123456
    assert _v(s, "speck_neuron_updates_total") == 789
    assert _v(s, "speck_spikes_total", layer="fc") == 10
    assert _v(s, "speck_input_masked_ratio") == 0.25
    assert _v(s, "speck_input_windows_total", masked="true") == 10
    assert _v(s, "speck_input_windows_total", masked="false") == 30
    assert _v(s, "speck_sensor_late_batches_total") == 3
    assert _v(s, "speck_sensor_max_late_seconds") == pytest.approx(2.5e-3)
    assert _v(s, "speck_decisions_total") == 5
    assert _v(s, "speck_service_uptime_seconds", service="filter") == 12.5
    assert _v(s, "speck_service_realtime_priority", service="chip") == 10
    assert ("speck_service_realtime_priority", (("service", "filter"),)) not in s  # it did not say
    assert _v(s, "speck_exporter_messages_total", kind="telemetry") == 4
    assert _v(s, "speck_exporter_messages_total", kind="prediction") == 0


def test_service_up_goes_stale_and_stale_gauges_disappear() -> None:
    clock = FakeClock(start_ns=100 * S)
    state = _fed(clock)
    assert {_v(_scrape(state, clock), "speck_service_up", service=x) for x in ("filter", "chip", "readout")} == {1}
    clock.now += int(STALE_AFTER_S * S)
    assert _v(_scrape(state, clock), "speck_service_up", service="chip") == 1  # exactly at the limit: still up
    clock.now += 1
    state.observe(_tele("filter", seq=1, values={"up": 1}), clock.monotonic_ns())
    s = _scrape(state, clock)
    assert _v(s, "speck_service_up", service="chip") == 0
    assert _v(s, "speck_service_up", service="filter") == 1
    assert ("speck_power_watts", (("rail", "logic"), ("state", "resting"))) not in s  # chip is down
    assert ("speck_input_masked_ratio", ()) not in s
    assert _v(s, "speck_synops_total") == 123456  # counters keep the last value


def test_up_zero_at_exit_means_down() -> None:
    clock = FakeClock()
    state = ExporterState()
    state.observe(_tele("chip", values={"up": 0}), clock.monotonic_ns())
    assert _v(_scrape(state, clock), "speck_service_up", service="chip") == 0


def test_latency_histograms_and_predictions() -> None:
    clock = FakeClock()
    state = ExporterState()
    state.observe(_pred("wave", 0, sent_ns=2_000_300_000, origin_ns=2_000_000_000, chip_us=7.0), 0)  # 300 µs
    state.observe(_pred("wave", 1, sent_ns=5_000_000_000, origin_ns=4_000_000_000, chip_us=3000.0), 0)  # 1 s
    state.observe(_pred("clap", 2, sent_ns=10, chip_us=50_000.0), 0)  # untracked origin, chip over 20 ms
    s = _scrape(state, clock)
    assert _v(s, "speck_predictions_total", label="wave") == 2
    assert _v(s, "speck_predictions_total", label="clap") == 1
    assert _v(s, "speck_chip_latency_seconds_count") == 3
    assert _v(s, "speck_chip_latency_seconds_sum") == pytest.approx(7e-6 + 3e-3 + 5e-2)
    assert _v(s, "speck_chip_latency_seconds_bucket", le="1e-05") == 1
    assert _v(s, "speck_chip_latency_seconds_bucket", le="0.005") == 2
    assert _v(s, "speck_chip_latency_seconds_bucket", le="+Inf") == 3
    assert _v(s, "speck_pipeline_latency_seconds_count") == 2
    assert _v(s, "speck_pipeline_latency_seconds_bucket", le="0.00025") == 0
    assert _v(s, "speck_pipeline_latency_seconds_bucket", le="0.0005") == 1
    assert _v(s, "speck_pipeline_latency_seconds_bucket", le="1.0") == 2
    bounds = {k[1][0][1] for k in s if k[0] == "speck_chip_latency_seconds_bucket"}
    assert len(bounds) == len(CHIP_LATENCY_BUCKETS_S) + 1
    assert min(PIPELINE_LATENCY_BUCKETS_S) < 1e-3 and min(CHIP_LATENCY_BUCKETS_S) < 1e-4


def test_decode_errors_and_sequence_gaps_are_counted_for_the_exporter() -> None:
    clock = FakeClock()
    state = ExporterState()
    state.note_decode_error("garbage_header")
    state.note_decode_error("garbage_header")
    state.observe(_tele("chip", seq=0), 0)
    state.observe(_tele("chip", seq=4), 0)  # 3 lost
    state.observe(_tele("chip", seq=0), 0)  # a restart, not a gap
    s = _scrape(state, clock)
    assert _v(s, "speck_messages_dropped_total", stage="exporter", reason="decode_garbage_header") == 2
    assert _v(s, "speck_messages_dropped_total", stage="exporter", reason="sequence_gap") == 3


def test_service_argument_overrides_the_stream_name() -> None:
    clock = FakeClock()
    state = ExporterState()
    state.observe(_tele("cam0", values={"events_sent": 5}), 0, service="sensor")
    s = _scrape(state, clock)
    assert _v(s, "speck_service_up", service="sensor") == 1
    assert _v(s, "speck_events_total", stage="sensor") == 5


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_exposition() -> None:
    clock = FakeClock()
    state = _fed(clock)
    state.observe(_pred("wave", 0, sent_ns=2_000_300_000, origin_ns=2_000_000_000, chip_us=7.0), 0)
    for text in (_text(ExporterState(), clock), _text(state, clock)):
        done = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.headers["Content-Type"], r.read().decode()


def test_http_serves_landing_page_and_metrics_on_port_zero() -> None:
    assert not 9100 <= EXPORTER_PORT <= 9999
    clock = FakeClock()
    state = _fed(clock)
    server, thread, port = serve("127.0.0.1", 0, state, clock)
    try:
        assert port > 0
        status, ctype, body = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and ctype.startswith("text/html")
        assert "/metrics" in body and "chip" in body and "up" in body
        status, ctype, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert _v(_samples(body), "speck_synops_total") == 123456
        with pytest.raises(urllib.error.HTTPError) as e:
            _get(f"http://127.0.0.1:{port}/nope")
        assert e.value.code == 404
    finally:
        shutdown(server)
        thread.join(5)
    assert not thread.is_alive()


def _await_subscriptions(sock: zmq.Socket[bytes], topics: set[bytes], deadline: float) -> None:
    """Block until the XPUB ``sock`` has seen a subscription to each of ``topics`` (the handshake, no sleep)."""
    seen: set[bytes] = set()
    while not topics <= seen:
        left_ms = int((deadline - time.monotonic()) * 1000)
        assert left_ms > 0, f"no subscription to {topics - seen}"
        if sock.poll(left_ms, zmq.POLLIN):
            frame = sock.recv()
            if frame[:1] == b"\x01":
                seen.add(frame[1:])


def _poll_until(cond: Any, deadline: float) -> None:
    """Look at the exporter's state until ``cond()`` holds, failing at ``deadline``."""
    while not cond():
        assert time.monotonic() < deadline, "exporter did not see the messages in time"
        threading.Event().wait(0.001)  # yield to the loop thread between looks


def _heard(state: ExporterState) -> int:
    """Messages the exporter decoded plus frames it counted as undecodable."""
    snap = state.snapshot()
    return sum(snap.messages.values()) + sum(snap.dropped.values())


def test_loop_over_tcp_counts_values_and_garbage(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    endpoints = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("sensor", "chip", "readout")}
    pubs = {name: publisher(ctx, ep) for name, ep in endpoints.items()}
    state, stop = ExporterState(), threading.Event()
    loop = threading.Thread(target=run_exporter, args=(ctx, endpoints, state, stop), kwargs={"poll_ms": 20})
    loop.start()
    deadline = time.monotonic() + 10
    try:
        for name, sock in pubs.items():
            topics = {b"telemetry|", b"prediction|"} if name == "readout" else {b"telemetry|"}
            _await_subscriptions(sock, topics, deadline)
        send_frames(pubs["sensor"], encode(Telemetry(stream="cam0", seq=0, sent_ns=1, values={"events_sent": 42})))
        send_frames(pubs["chip"], encode(CHIP))
        pred = Prediction(
            stream="readout", seq=0, sent_ns=2_000_000, origin_ns=1_000_000, class_id=1, label="clap", score=1.0,
            t_start_us=0, t_end_us=1, latency_us=1.0, extras={"chip_latency_us": 20.0},
        )  # fmt: skip
        send_frames(pubs["readout"], encode(pred))
        pubs["readout"].send_multipart([b"telemetry|", b"\xc1not msgpack"])  # garbage on a subscribed topic
        pubs["readout"].send_multipart([b"telemetry|"])  # too few frames
        pubs["readout"].send_multipart([b"prediction|", b"\x80"])  # a map without the keys
        _poll_until(lambda: _heard(state) >= 6, deadline)
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    s = _scrape(state, FakeClock())
    assert _v(s, "speck_events_total", stage="sensor") == 42  # filed under the endpoint's service, not "cam0"
    assert _v(s, "speck_synops_total") == 123456
    assert _v(s, "speck_predictions_total", label="clap") == 1
    assert _v(s, "speck_chip_latency_seconds_bucket", le="2e-05") == 1
    assert _v(s, "speck_pipeline_latency_seconds_sum") == pytest.approx(1e-3)
    for reason in ("decode_garbage_header", "decode_bad_frame_count", "decode_missing_field"):
        assert _v(s, "speck_messages_dropped_total", stage="exporter", reason=reason) == 1
    assert _v(s, "speck_exporter_messages_total", kind="telemetry") == 2


def test_loop_stops_promptly_with_nothing_published(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    stop = threading.Event()
    loop = threading.Thread(
        target=run_exporter, args=(ctx, {"chip": f"tcp://127.0.0.1:{free_port()}"}, ExporterState(), stop)
    )
    loop.start()
    stop.set()
    loop.join(2)
    assert not loop.is_alive()


def test_modeled_path_latency_per_layer_in_seconds() -> None:
    clock = FakeClock()
    samples = _scrape(_fed(clock), clock)
    for layer, ns in CHIP.groups["path_latency_ns"].items():
        assert _v(samples, "speck_chip_path_latency_seconds", layer=layer) == pytest.approx(ns / 1e9)


def test_per_stage_timing_in_seconds_by_step_and_stat() -> None:
    clock = FakeClock()
    samples = _scrape(_fed(clock), clock)
    for key, us in FILTER.groups["timing_us"].items():
        step, stat = key.split("_")
        got = _v(samples, "speck_stage_timing_seconds", stage="filter", step=step, stat=stat)
        assert got == pytest.approx(us / 1e6)
    assert not any(name == "speck_stage_timing_seconds" and dict(labels)["stage"] == "chip" for name, labels in samples)
