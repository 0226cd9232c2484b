"""End to end: the real service processes (``speck-edge up`` / ``speck-edge run``) on a real DVS128 recording.

Every test runs its own pipeline on free ports (``tests.net.free_port``) with a private cache dir, so it never
meets another test or a running instance; everything is awaited by polling with a deadline (stdout lines of
``up``, /metrics scrapes, ZeroMQ SUBs), and every process is stopped in a ``finally`` (SIGINT, SIGKILL to its
process group on a timeout) and checked gone. The replay and the kill test share one running ``up``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar, Self

import msgpack
import pytest
import zmq

from emulator.io import read_recording
from proto.messages import Prediction, Telemetry
from proto.topics import find_topic
from tests.real_data import real_file
from tests.services.e2e_helpers import (
    FLOW_S,
    PIPELINE,
    START_S,
    Listener,
    Ports,
    ProcessGroup,
    Samples,
    Up,
    child_env,
    fifo_permitted,
    pipeline_config,
    poll,
    running_up,
    scrape,
    select,
    value,
    write_config,
)

RECORDING = "colleenpamchen-jAER/DVS128-2017-03-21-short.aedat"  # DVS128 (eDVS), 6.2 s, 130,114 events
PREDICTION = find_topic("prediction").wire
REALTIME_PRIORITY = 2
"""The live pipeline asks for SCHED_FIFO (a low priority): each data-path service must report what it got."""
TELEMETRY = find_topic("telemetry").wire


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Up, Ports]]:
    """One ``up`` replaying the recording in a loop, a bit faster than real time (shared by two tests)."""
    source = real_file(RECORDING)
    tmp = tmp_path_factory.mktemp("e2e_live")
    ports = Ports()
    config = pipeline_config(
        tmp / "live.toml", ports, source, sensor={"speed": 1.5, "loop": True},
        pipeline={"realtime_priority": REALTIME_PRIORITY},
    )  # fmt: skip
    with running_up(config, tmp) as up:
        yield up, ports
    assert up.proc.returncode == 0, f"`up` exited with {up.proc.returncode}"


def _problems_live(s: Samples) -> list[str]:
    """What the running pipeline's metrics do not show yet (empty: all good)."""
    problems = []
    for state in ("resting", "active"):
        if not any(v > 0 for v in select(s, "speck_power_watts", state=state).values()):
            problems.append(f"speck_power_watts{{state={state}}} all 0 or absent")
    if not any(v > 0 for v in select(s, "speck_energy_joules_total").values()):
        problems.append("speck_energy_joules_total all 0 or absent")
    for name in ("speck_pipeline_latency_seconds_count", "speck_chip_latency_seconds_count", "speck_synops_total"):
        if not (value(s, name) or 0) > 0:
            problems.append(f"{name} = {value(s, name)}")
    if not sum(select(s, "speck_predictions_total").values()) > 0:
        problems.append("speck_predictions_total: no prediction counted")
    for service in PIPELINE:
        if value(s, "speck_service_up", service=service) != 1:
            problems.append(f"speck_service_up{{service={service}}} = {value(s, 'speck_service_up', service=service)}")
    rt = REALTIME_PRIORITY if fifo_permitted(REALTIME_PRIORITY) else 0
    for service in PIPELINE:
        got = value(s, "speck_service_realtime_priority", service=service)
        if got != rt:
            problems.append(f"speck_service_realtime_priority{{service={service}}} = {got}, expected {rt}")
    ratio = value(s, "speck_input_masked_ratio")
    if ratio is None or not 0 < ratio < 1:
        problems.append(f"speck_input_masked_ratio = {ratio}, not in (0, 1)")
    return problems


def test_replay_of_a_real_recording_predicts_and_fills_the_metrics(live: tuple[Up, Ports]) -> None:
    up, ports = live
    with Listener([ports.pub["readout"]], [PREDICTION]) as sub:
        preds = [m for _, m in zip(range(5), sub.messages(FLOW_S), strict=False)]
        assert len(preds) == 5 and all(isinstance(p, Prediction) for p in preds), preds
        assert not sub.malformed
    up.wait_line(r"latency [\d.]+ ms", FLOW_S)  # `up` prints them too

    last: list[str] = []

    def healthy() -> bool:
        s = scrape(ports.http)
        last[:] = ["no answer from /metrics"] if s is None else _problems_live(s)
        return not last

    try:
        poll(healthy, FLOW_S, "every metric of a running pipeline")
    except AssertionError as e:
        raise AssertionError(f"{e}; still wrong: {last}") from None
    s = scrape(ports.http)
    assert s is not None
    if not any("restarting" in line for line in up.lines):  # (the kill test, run later, causes drops on purpose)
        # A pipeline started downstream first loses nothing: no gaps, no no_subscriber, nothing undecodable.
        drops = {tuple(sorted(lab)): v for lab, v in select(s, "speck_messages_dropped_total").items() if v > 0}
        assert not drops, drops


def test_lossless_mode_delivers_every_event_of_the_recording(tmp_path: Path) -> None:
    source = real_file(RECORDING)
    n_events = len(read_recording(source)[0])
    ports = Ports()
    config = pipeline_config(tmp_path / "lossless.toml", ports, source, pipeline={"lossless": True},
                             sensor={"loop": False})  # fmt: skip
    # Criterion. With loop = false the sensor sends the recording once, logs how many events it sent and exits;
    # `up` restarts it (a new pass) no earlier than RESTART_DELAY_S = 1 s later. In that gap nothing feeds the
    # filter, and the filter publishes its cumulative events_in every 0.2 s: if nothing was lost, its telemetry
    # must say events_in == N (the recording's count) at least once before the second pass starts, and the
    # first sensor process must have sent N. A loss shows as a filter series that never equals N (it stalls
    # below N, or jumps from below N to past it once the second pass arrives). The sensor's count comes from
    # its log: a lossless pass can end before a telemetry subscriber has even connected.
    filter_in: list[int] = []
    with Listener([ports.pub["filter"]], [TELEMETRY]) as sub:
        up = Up(config, child_env(tmp_path / "cache"), tmp_path / "services.log")
        try:
            up.wait_started()
            for msg in sub.messages(FLOW_S):
                assert isinstance(msg, Telemetry)
                if msg.stream == "filter":
                    filter_in.append(int(msg.values["events_in"]))
                    if filter_in[-1] >= n_events:
                        break
            up.wait_line(r"^sensor exited with code 0; restarting$", FLOW_S)
            samples = scrape(ports.http)
        finally:
            leftovers = up.stop()
    assert not leftovers, f"processes outlived `up`: {leftovers}"
    assert up.proc.returncode == 0, f"`up` exited with {up.proc.returncode}"
    log = (tmp_path / "services.log").read_text(errors="replace")
    sent = [int(n) for n in re.findall(r"sensor done: (\d+) events", log)]
    assert sent and sent[0] == n_events, (n_events, sent)
    assert n_events in filter_in, (n_events, filter_in)
    assert samples is not None
    drops = {tuple(sorted(lab)): v for lab, v in select(samples, "speck_messages_dropped_total").items() if v > 0}
    assert not drops, drops


# ---------------------------------------------------------------- garbage on every topic


class Relay:
    """A man in the middle of every PUB → SUB hop: SUB on each service's real endpoint, XPUB on the endpoint
    its subscribers were told; forwards everything and slips malformed frame sets in between — only once the
    topic has all its subscribers on that hop, so every one of them is delivered and can be counted exactly."""

    ROUNDS = 5
    EVERY: ClassVar[dict[bytes, int]] = {TELEMETRY: 2, PREDICTION: 4}
    """A round of garbage after every ``EVERY`` (default 20) forwarded messages of a topic, ``ROUNDS`` per hop."""
    SUBSCRIBERS: ClassVar[dict[bytes, int]] = {PREDICTION: 2}
    """Subscribers a topic has on a hop (default 1): the prediction's are the exporter and the test."""

    def __init__(self, real: dict[str, str], fake: dict[str, str]) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.hops: dict[zmq.Socket[bytes], tuple[str, zmq.Socket[bytes]]] = {}
        self.outputs: dict[zmq.Socket[bytes], str] = {}
        for service in PIPELINE:
            sub = self.ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(real[service])
            pub = self.ctx.socket(zmq.XPUB)
            pub.setsockopt(zmq.LINGER, 0)
            pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, not only a topic's first
            pub.bind(fake[service])
            self.hops[sub] = (service, pub)
            self.outputs[pub] = service
        self.subscribers: Counter[tuple[str, bytes]] = Counter()
        self.forwarded: Counter[tuple[str, bytes]] = Counter()
        self.rounds: Counter[tuple[str, bytes]] = Counter()
        self.sent: Counter[tuple[bytes, str]] = Counter()
        """(topic, decode reason) → malformed frame sets sent."""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    HOPS = (("sensor", "events.raw"), ("filter", "events.filtered"), ("chip", "spikes"), ("readout", "prediction"),
            *((s, "telemetry") for s in PIPELINE))  # fmt: skip

    def done(self) -> bool:
        return all(self.rounds[s, find_topic(t).wire] >= self.ROUNDS for s, t in self.HOPS)

    @staticmethod
    def _garbage(frames: list[bytes]) -> list[tuple[str, list[bytes]]]:
        topic = frames[0]
        bad = [("garbage_header", [topic, b"\xc1"]), ("bad_frame_count", [topic])]
        if len(frames) == 3:  # a batch: its payload one byte too long
            bad.append(("payload_misaligned", [topic, frames[1], frames[2] + b"\x00"]))
        else:
            head = msgpack.unpackb(frames[1])
            bad.append(("bad_version", [topic, msgpack.packb({**head, "v": 999})]))
        return bad

    def _forward(self, sub: zmq.Socket[bytes]) -> None:
        service, out = self.hops[sub]
        frames = sub.recv_multipart()
        out.send_multipart(frames)
        key = (service, frames[0])
        self.forwarded[key] += 1
        if (
            self.subscribers[key] >= self.SUBSCRIBERS.get(frames[0], 1)
            and self.rounds[key] < self.ROUNDS
            and self.forwarded[key] % self.EVERY.get(frames[0], 20) == 0
        ):
            for reason, bad in self._garbage(frames):
                out.send_multipart(bad)
                self.sent[frames[0], reason] += 1
            self.rounds[key] += 1

    def _run(self) -> None:
        poller = zmq.Poller()
        for sock in [*self.hops, *self.outputs]:
            poller.register(sock, zmq.POLLIN)
        while not self.stop.is_set():
            for sock, _ in poller.poll(100):
                if sock in self.hops:
                    self._forward(sock)
                else:
                    note = sock.recv()
                    self.subscribers[self.outputs[sock], note[1:]] += 1 if note[:1] == b"\x01" else -1

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in [*self.hops, *self.outputs]:
            sock.close(0)
        self.ctx.term()


def test_garbage_on_every_topic_is_counted_by_reason_and_the_pipeline_keeps_predicting(tmp_path: Path) -> None:
    # No product change needed: every service reads its own bind endpoint and its upstream's from the
    # config, so each service gets a config of its own in which the upstream endpoints are the relay's.
    source = real_file(RECORDING)
    ports, fake = Ports(), Ports()
    base: dict[str, Mapping[str, object]] = {
        "pipeline": {"telemetry_interval_s": 0.2},
        "sensor": {"source": str(source), "loop": True, "speed": 1.5},
        "exporter": {"host": "127.0.0.1", "port": ports.http},
    }
    configs = {
        name: write_config(tmp_path / f"{name}.toml", {
            **base, "endpoints": fake.endpoints({name: ports.pub[name]} if name in PIPELINE else {}),
        })
        for name in ("exporter", "readout", "chip", "filter", "sensor")
    }  # fmt: skip
    env = child_env(tmp_path / "cache")
    group = ProcessGroup(tmp_path / "services.log")
    procs = {}
    try:
        with Relay(ports.pub, fake.pub) as relay, Listener([fake.pub["readout"]], [PREDICTION]) as sub:
            for name, config in configs.items():  # downstream first, like `up`
                procs[name] = group.spawn([sys.executable, "-m", "services.cli", "run", name, "--config", str(config)],
                                          env)  # fmt: skip
                group.children.add(procs[name].pid)
            try:
                poll(relay.done, START_S, "the relay to send every round of garbage")
            except AssertionError as e:
                raise AssertionError(f"{e}: rounds {dict(relay.rounds)}\n{group.log_tail()}") from None
            sent = Counter(relay.sent)

            # The pipeline goes on predicting after the garbage: predictions sent after it.
            after_ns = time.time_ns()
            sub.first(lambda m: isinstance(m, Prediction) and m.sent_ns > after_ns, FLOW_S,
                      "a prediction after the garbage")  # fmt: skip

            expected: Counter[tuple[str, str]] = Counter()
            consumer = {"events.raw|": "filter", "events.filtered|": "chip", "spikes|": "readout",
                        "prediction|": "exporter", "telemetry|": "exporter"}  # fmt: skip
            for (topic, reason), n in sent.items():
                expected[consumer[topic.decode()], f"decode_{reason}"] += n
            last: dict[tuple[str, str], float | None] = {}

            def counted() -> bool:
                s = scrape(ports.http)
                if s is None:
                    return False
                last.clear()
                for (stage, reason), n in expected.items():
                    got = value(s, "speck_messages_dropped_total", stage=stage, reason=reason)
                    if got != n:
                        last[stage, reason] = got
                return not last

            try:
                poll(counted, FLOW_S, "the drop counters to match the garbage sent")
            except AssertionError as e:
                raise AssertionError(f"{e}: expected {dict(expected)}, differing {last}") from None
            s = scrape(ports.http)
            assert s is not None
            assert all(value(s, "speck_service_up", service=x) == 1 for x in PIPELINE)
            gaps = {tuple(sorted(lab)): v for lab, v in select(s, "speck_messages_dropped_total",
                                                               reason="sequence_gap").items() if v}  # fmt: skip
            assert not gaps, f"garbage must not upset the sequence tracking: {gaps}"
            assert all(p.poll() is None for p in procs.values()), "a service died of the garbage"
            assert Counter(sub.malformed) == {r: n for (t, r), n in sent.items() if t == PREDICTION}
    finally:
        leftovers = group.stop()
    assert not leftovers, leftovers


# ---------------------------------------------------------------- a crash


def test_killed_chip_is_restarted_and_the_gap_is_counted(live: tuple[Up, Ports]) -> None:
    up, ports = live
    old = up.pids["chip"]
    mark = len(up.lines)
    os.kill(old, signal.SIGKILL)
    up.wait_line(rf"^chip exited with code -{signal.SIGKILL.value}; restarting$", FLOW_S, mark)
    _, m = up.wait_line(r"^restarted chip \(pid (\d+)\)$", START_S, mark)
    new = int(m[1])
    assert new != old
    restarted_ns = time.time_ns()
    with Listener([ports.pub["chip"], ports.pub["readout"]], [TELEMETRY, PREDICTION]) as sub:
        sub.first(lambda m: isinstance(m, Telemetry) and m.stream == "chip" and m.values.get("pid") == new
                  and m.values.get("events_out", 0) > 0, FLOW_S, "spikes from the new chip")  # fmt: skip
        sub.first(lambda m: isinstance(m, Prediction) and m.sent_ns > restarted_ns, FLOW_S,
                  "a prediction after the restart")  # fmt: skip

    def gap_counted() -> bool:
        s = scrape(ports.http)
        return s is not None and (
            (value(s, "speck_messages_dropped_total", stage="filter", reason="no_subscriber") or 0) > 0
            and (value(s, "speck_events_dropped_total", stage="filter", reason="no_subscriber") or 0) > 0
        )

    poll(gap_counted, FLOW_S, "filter's no_subscriber drops while the chip was down")
    assert up.proc.poll() is None
