"""``speck-edge``: the one command-line entry point (subcommands below)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import zmq

from emulator.io import RecordingError, open_recording
from emulator.stats import Summary, summarize
from proto.codec import decode
from proto.errors import ProtocolError
from proto.events import Events
from proto.messages import Message, Prediction, Telemetry
from proto.sequence import SequenceTracker
from proto.topics import ENDPOINTS, TOPICS, find_topic
from services import cli_emulate, cli_train
from services.clock import SystemClock
from services.config import Settings, SettingsError
from services.defaults import resolve_chip_config, resolve_recording
from services.pacing import check_speed
from services.sensor import Sensor, SensorConfig
from services.signals import stop_on_signals
from services.sockets import publisher, subscriber

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
LISTEN_POLL_MS = 200

INSPECT_KEYS = (
    "format",
    "width",
    "height",
    "events",
    "t_first_us",
    "t_last_us",
    "duration_s",
    "on_fraction",
    "monotonic",
)


def progress(chunks: Iterator[Events], desc: str) -> Iterator[Events]:
    """Show a progress bar (events read) on stderr when it is a terminal."""
    from tqdm import tqdm

    with tqdm(desc=desc, unit="ev", unit_scale=True, disable=not sys.stderr.isatty(), leave=False) as bar:
        for chunk in chunks:
            bar.update(len(chunk))
            yield chunk


def inspect_report(fmt: str, width: int, height: int, s: Summary) -> dict[str, object]:
    """The ``inspect`` fields, in order."""
    return {
        "format": fmt,
        "width": width,
        "height": height,
        "events": s.events,
        "t_first_us": s.t_first_us,
        "t_last_us": s.t_last_us,
        "duration_s": round(s.duration_s, 6),
        "on_fraction": round(s.on_fraction, 6),
        "monotonic": s.monotonic,
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    rec = open_recording(resolve_recording(args.file), lenient=args.lenient)
    summary = summarize(progress(rec.chunks, "reading"))
    report = inspect_report(rec.info.format, rec.info.width, rec.info.height, summary)
    if args.json:
        print(json.dumps(report))
        if any(rec.dropped.values()):  # the JSON object keeps exactly its keys: skips go to stderr
            print(f"skipped records: {json.dumps(rec.dropped)}", file=sys.stderr)
    else:
        for key, value in report.items():
            print(f"{key:12} {value}")
        for reason, count in rec.dropped.items():
            if count:
                print(f"{'skipped':12} {count} {reason} records")
    if rec.damage is not None:
        print(f"warning: stopped early: {rec.damage}", file=sys.stderr)
    return 0


def _speed(text: str) -> float | None:
    if text in ("max", "0"):
        return None
    try:
        return check_speed(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_replay(args: argparse.Namespace) -> int:
    cfg = SensorConfig(
        source=resolve_recording(args.file), endpoint=args.endpoint, speed=args.speed, loop=args.loop, window_us=args.window_us,
        stream=args.stream, wait_subscriber_s=args.wait_subscriber, lenient=args.lenient,
    )  # fmt: skip
    stop = threading.Event()
    stop_on_signals(stop)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = publisher(ctx, cfg.endpoint)
    try:
        print(f"replaying {cfg.source} on {cfg.endpoint} (topic events.raw)", file=sys.stderr)
        c = Sensor(cfg, sock, SystemClock(), stop).run()
    finally:
        sock.close(linger=0)
        ctx.term()
    print(
        f"sent {c.events_sent} events in {c.batches_sent} batches over {c.passes} pass(es); "
        f"{c.late_batches} batches late by > 2 ms (worst {c.max_late_us / 1000:.2f} ms); "
        f"{c.reordered_events} events with backwards timestamps reordered",
        file=sys.stderr,
    )
    if c.dropped:
        print(f"dropped: {json.dumps(c.dropped)}", file=sys.stderr)
    if c.damage is not None:
        print(f"warning: stopped early: {c.damage}", file=sys.stderr)
    return 0


def describe(msg: Message) -> str:
    """One line per message: kind, stream, seq, count, time span."""
    h = msg.header
    span = f"t {h.t_first_us}..{h.t_last_us} us ({(h.t_last_us - h.t_first_us) / 1000:.3f} ms)"
    line = f"{h.kind:<10} stream={h.stream} seq={h.seq} count={h.count} {span}"
    if isinstance(msg, Prediction):
        line += f" class={msg.class_id} label={msg.label} score={msg.score:.3f}"
    elif isinstance(msg, Telemetry):
        line += " " + " ".join(f"{k}={v}" for k, v in msg.values.items())
    return line


def cmd_listen(args: argparse.Namespace) -> int:
    topic = find_topic(args.topic)
    endpoints = args.endpoint or [ENDPOINTS[s] for s in topic.publishers if s in ENDPOINTS]
    stop = threading.Event()
    stop_on_signals(stop)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = subscriber(ctx, endpoints[0], [topic.wire])
    for extra in endpoints[1:]:
        sock.connect(extra)
    seen = 0
    bad: Counter[str] = Counter()
    seqs = SequenceTracker()
    try:
        while not stop.is_set() and (args.count is None or seen < args.count):
            if not sock.poll(LISTEN_POLL_MS, zmq.POLLIN):
                continue
            seen += 1
            try:
                msg = decode(sock.recv_multipart(copy=False))
            except ProtocolError as exc:
                bad[exc.reason] += 1
                print(f"bad message ({exc.reason}): {exc}", file=sys.stderr)
                continue
            seqs.track(msg.stream, msg.topic, msg.seq)
            print(describe(msg), flush=True)
    finally:
        sock.close(linger=0)
        ctx.term()
    print(
        f"{seen} messages; {sum(bad.values())} malformed {dict(bad) or ''}; "
        f"{seqs.lost} lost (sequence gaps); {seqs.restarts} sender restarts",
        file=sys.stderr,
    )
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_map(args: argparse.Namespace) -> int:
    from emulator.config_io import ConfigError
    from emulator.mapping import MappingError, as_json, format_table, map_layers

    try:
        config = resolve_chip_config(args.config)
    except ConfigError as err:
        if not args.json:
            raise
        print(json.dumps({"ok": False, "error": {"file": err.file, "path": err.path, "problem": err.problem}}))
        return EXIT_BAD_INPUT
    try:
        mapping = map_layers(config)
    except MappingError as err:
        print(json.dumps(err.as_json()) if args.json else str(err))
        return EXIT_BAD_INPUT
    print(json.dumps(as_json(mapping)) if args.json else format_table(mapping))
    return 0


def priority_arg(text: str) -> int:
    """An argparse type: a real-time priority, 0 (off) or 1-99."""
    from services.realtime import check_priority

    try:
        return check_priority(int(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _settings(args: argparse.Namespace) -> Settings:
    from services.config import load_settings

    settings = load_settings(args.config)
    if getattr(args, "lossless", False):
        settings = replace(settings, pipeline=replace(settings.pipeline, lossless=True))
    if getattr(args, "realtime_priority", None) is not None:
        settings = replace(settings, pipeline=replace(settings.pipeline, realtime_priority=args.realtime_priority))
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from services.launch import main as launch_main

    return launch_main([args.service, *(["--config", str(args.config)] if args.config else [])])


def cmd_up(args: argparse.Namespace) -> int:
    from services.up import up

    settings = _settings(args)
    if args.lossless:  # the children read the setting from the environment
        os.environ["SPECK_EDGE__PIPELINE__LOSSLESS"] = "true"
    if args.realtime_priority is not None:
        os.environ["SPECK_EDGE__PIPELINE__REALTIME_PRIORITY"] = str(args.realtime_priority)
    stop = threading.Event()
    stop_on_signals(stop)
    return up(settings, args.config, stop, lambda line: print(line, flush=True), args.duration, not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speck-edge",
        description="A software twin of SynSense's Speck chip (event camera + 9 spiking-convolution cores), "
        "run as a set of ZeroMQ edge services.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "inspect",
        help="print what a recording holds",
        description="Read an event recording (AEDAT 2/3.1/4, Prophesee EVT2/EVT3/DAT, N-MNIST .bin, Event Stream .es, "
        "tonic .npy, speck-edge .npz; the format is detected from the content) and print its format, "
        "sensor size, event count, time span, ON fraction and whether timestamps never decrease.",
    )
    p.add_argument("file", help="the recording to read")
    p.add_argument("--json", action="store_true", help="print one JSON object with exactly the fields listed above")
    p.add_argument(
        "--lenient", action="store_true", help="on a truncated/corrupt file, report the events before the damage"
    )
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "replay",
        help="run the sensor: replay a recording as event batches",
        description="Publish a recording (any format `inspect` reads) as event batches on topic events.raw, "
        "paced in real time from a monotonic clock (no drift) and scaled by --speed. A source of the form "
        "dv://HOST:PORT relays a live dv-processing NetworkWriter stream instead.",
    )
    p.add_argument("file", help="recording to replay, or dv://HOST:PORT for a live dv-processing stream")
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="time scale, 0.1 to 1000, or 'max' (or 0) for as fast as possible (default 1)",
    )
    p.add_argument("--loop", action="store_true", help="start again at the end (event time keeps increasing)")
    p.add_argument(
        "--endpoint", default=ENDPOINTS["sensor"], help="ZeroMQ endpoint to bind the publisher to (default %(default)s)"
    )
    p.add_argument(
        "--window-us", type=int, default=1000, help="event-time length of one batch in µs (default %(default)s)"
    )
    p.add_argument("--stream", default="sensor", help="stream id put in every message (default %(default)s)")
    p.add_argument(
        "--wait-subscriber",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for a first subscriber before starting (default: start at once)",
    )
    p.add_argument(
        "--lenient",
        action="store_true",
        help="on a truncated/corrupt file, replay the events before the damage and stop",
    )
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "listen",
        help="print the messages on a topic",
        description="Subscribe to TOPIC and print one line per message: kind, stream, sequence number, count and "
        f"time span. Topics: {', '.join(t.name for t in TOPICS)}.",
    )
    p.add_argument("topic", help="topic name, e.g. events.raw or prediction")
    p.add_argument(
        "--endpoint",
        action="append",
        help="publisher endpoint to connect to (repeatable; default: the topic's publishers)",
    )
    p.add_argument("--count", type=_positive, default=None, help="exit after this many messages")
    p.set_defaults(func=cmd_listen)

    cli_emulate.add_parser(sub)
    cli_train.add_parsers(sub)

    p = sub.add_parser(
        "map",
        help="show how a chip config's layers map onto the 9 cores",
        description="Load a chip config (see docs/chip-config.md), assign its layers to cores as sinabs does "
        "(max-flow over the cores each layer fits, or the cores the config pins) and print a per-core table: "
        "layer, kernel/neuron/bias words used and available. For a net that does not fit, say which layer "
        "fits no free core and why (exit code 2).",
    )
    p.add_argument("config", help="the chip config JSON file")
    p.add_argument("--json", action="store_true", help="print the mapping (or the failure) as one JSON object")
    p.set_defaults(func=cmd_map)

    config_help = "services config TOML (every key: deploy/config/default.toml); SPECK_EDGE__SECTION__KEY overrides"
    p = sub.add_parser(
        "up",
        help="run the whole edge service: sensor, filter, chip, readout, exporter",
        description="Start the five services as processes (downstream first, each waiting until it reports "
        "ready), print the predictions as they come, restart a service that dies, and stop everything on "
        "Ctrl-C. Without --config it replays the bundled default recording through the bundled chip "
        "config in real time, in a loop; Prometheus metrics at http://127.0.0.1:8790/metrics.",
    )
    p.add_argument("--config", type=Path, help=config_help)
    p.add_argument("--lossless", action="store_true", help="PUSH/PULL with back-pressure, replay as fast as the "
                   "chip consumes it (offline evaluation; no loss)")  # fmt: skip
    p.add_argument("--realtime-priority", type=priority_arg, metavar="N", help="run sensor, filter, chip and readout "
                   "under SCHED_FIFO at priority N (1-99; 0 = off, the default): a lower wall latency, if the OS "
                   "permits it (root, CAP_SYS_NICE or ulimit -r >= N); README \"Latency\"")  # fmt: skip
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS (default: run until Ctrl-C)")
    p.add_argument("--quiet", action="store_true", help="do not print every prediction")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser(
        "run",
        help="run one service in the foreground (what `up`, systemd and docker start)",
        description="Run one service until SIGTERM/SIGINT: sensor (replay or live camera), filter (noise filter "
        "and pre-processing), chip (attention input mask and the cores), readout (class decisions → "
        "predictions), exporter (Prometheus metrics). Speaks systemd's notify protocol when NOTIFY_SOCKET "
        "is set (READY=1 once its sockets are up, WATCHDOG=1, STOPPING=1).",
    )
    p.add_argument("service", choices=("sensor", "filter", "chip", "readout", "exporter"))
    p.add_argument("--config", type=Path, help=config_help)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (RecordingError, SettingsError, ValueError, FileNotFoundError, IsADirectoryError) as exc:
        print(f"speck-edge {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, zmq.ZMQError) as exc:  # unreachable camera, endpoint in use, no subscriber in time
        print(f"speck-edge {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
