"""``speck-edge emulate``: run a recording through the chip emulator and report what it did and cost."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from emulator.chip import Chip, ChipOutput
from emulator.config import ChipConfig
from emulator.io import open_recording
from emulator.power import PROCESSOR_RAILS, Rail, resting_energy_j
from proto.events import Events, make_events
from services.defaults import DEFAULT_CONFIG, resolve_chip_config, resolve_recording

CHUNK_EVENTS = 65_536
"""Events per chip step: large enough to amortise the per-step cost, small enough for a progress bar."""


@dataclass
class Totals:
    """Sums over every step of one emulation."""

    input_events: int = 0
    kept_events: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    synops: int = 0
    spikes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    active_j: dict[Rail, float] = field(default_factory=dict)
    decisions: int = 0
    passed: int = 0
    classes: dict[int, int] = field(default_factory=dict)
    latencies_us: list[np.ndarray] = field(default_factory=list)

    def add(self, out: ChipOutput) -> None:
        tel = out.telemetry
        self.input_events += tel.front.input_events
        self.kept_events += tel.front.kept_events
        for reason in ("blocked_sensor_events", "outside_sensor", "noise_dropped", "polarity_dropped", "roi_dropped"):
            self.dropped[reason] = self.dropped.get(reason, 0) + int(getattr(tel.front, reason))
        self.synops += tel.synops
        per_layer = np.array(tel.spikes_per_layer, np.int64)
        self.spikes = per_layer if self.spikes.size == 0 else self.spikes + per_layer
        for rail, joules in tel.active_energy_j.items():
            self.active_j[rail] = self.active_j.get(rail, 0.0) + joules
        passed = out.decisions[out.decisions["passed"]]
        self.decisions += len(out.decisions)
        self.passed += len(passed)
        for c in passed["class_index"].tolist():
            self.classes[c] = self.classes.get(c, 0) + 1
        self.latencies_us.append(tel.decision_latency_us[~np.isnan(tel.decision_latency_us)])


def _stats_us(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p99": None, "max": None}
    return {
        k: round(float(v), 3) for k, v in zip(("p50", "p99", "max"), np.percentile(values, [50, 99, 100]), strict=True)
    }


def warm_up(config: ChipConfig) -> float:
    """Seconds to load (or compile) the engine's numba code, once per process, by stepping one event
    through a throwaway chip: kept out of ``wall_s`` so that the real-time factor is the steady rate."""
    started = time.perf_counter()
    Chip.from_config(config).step(make_events([0], [0], [0], [1]))
    return time.perf_counter() - started


def emulate(config: ChipConfig, chunks: Iterator[Events]) -> tuple[Totals, Chip, float, float]:
    """Run every chunk through a fresh chip: ``(totals, chip, event-time span s, wall s)``; wall time
    counts reading the file and every step (call :func:`warm_up` first to leave numba's start-up out)."""
    chip = Chip.from_config(config)
    totals = Totals()
    first = last = None
    started = time.perf_counter()
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        first = int(chunk["t"][0]) if first is None else first
        last = int(chunk["t"][-1])
        totals.add(chip.step(chunk))
    wall = time.perf_counter() - started
    span = (last - first) / 1e6 if first is not None and last is not None else 0.0
    return totals, chip, span, wall


def report(
    config: ChipConfig, totals: Totals, chip: Chip, span_s: float, wall_s: float, startup_s: float
) -> dict[str, object]:
    resting = resting_energy_j(span_s)
    rails = [r.name.lower() for r in Rail]
    processor_resting = sum(resting[r] for r in PROCESSOR_RAILS)
    energy = {r.name.lower(): {"resting": resting.get(r, 0.0), "active": totals.active_j.get(r, 0.0)} for r in Rail}
    labels = config.readout.labels
    return {
        "input_events": totals.input_events,
        "kept_events": totals.kept_events,
        "dropped_events": totals.dropped,
        "synops": totals.synops,
        "spikes_per_layer": {layer.name: int(n) for layer, n in zip(config.layers, totals.spikes, strict=False)},
        "energy_j": energy,
        "mean_power_w": {  # processor (comparable to the paper's 0.42 mW resting) and sensor apart
            "resting": processor_resting / span_s if span_s else 0.0,
            "active": sum(totals.active_j.values()) / span_s if span_s else 0.0,
            "sensor": (sum(resting.values()) - processor_resting) / span_s if span_s else 0.0,
            "by_rail": {r: (energy[r]["resting"] + energy[r]["active"]) / span_s if span_s else 0.0 for r in rails},
        },
        "latency": {
            "path_ns": {
                layer.name: int(ns) for layer, ns in zip(config.layers, chip.params.layer_latency_ns, strict=True)
            },
            "readout_path_ns": chip.params.readout_latency_ns,
            "decision_us": _stats_us(np.concatenate(totals.latencies_us) if totals.latencies_us else np.zeros(0)),
        },
        "decisions": {
            "cycles": totals.decisions,
            "passed": totals.passed,
            "by_class": {
                (labels[c - 1] if 0 < c <= len(labels) else str(c)): n for c, n in sorted(totals.classes.items())
            },
        },
        "duration_s": round(span_s, 6),
        "startup_s": round(startup_s, 3),
        "wall_s": round(wall_s, 3),
        "realtime_factor": round(span_s / wall_s, 2) if wall_s else None,
    }


def cmd_emulate(args: argparse.Namespace) -> int:
    from emulator.mapping import map_layers

    config = resolve_chip_config(args.config or DEFAULT_CONFIG)
    map_layers(config)  # a net the chip cannot hold is refused (MappingError names the layer)
    if not config.dvs.destinations:
        print("warning: the config's DVS layer has no destination: no event reaches a core", file=sys.stderr)
    rec = open_recording(resolve_recording(args.input), lenient=args.lenient, chunk_events=CHUNK_EVENTS)
    from services.cli import progress

    startup = warm_up(config)
    totals, chip, span, wall = emulate(config, progress(rec.chunks, "emulating"))
    result = report(config, totals, chip, span, wall, startup)
    if args.json:
        print(json.dumps(result))
    else:
        _print_text(result)
    outside = totals.dropped.get("outside_sensor", 0)
    if outside:
        print(
            f"warning: {outside} of {totals.input_events} events lie outside the {config.dvs.width}x"
            f"{config.dvs.height} DVS array and were dropped (sensor {rec.info.width}x{rec.info.height})",
            file=sys.stderr,
        )
    if rec.damage is not None:
        print(f"warning: stopped early: {rec.damage}", file=sys.stderr)
    return 0


def _print_text(result: dict[str, object]) -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k:16} {json.dumps(v) if isinstance(v, dict) else v}")
        else:
            print(f"{key:18} {value}")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "emulate",
        help="run a recording through the chip emulator",
        description="Run a recording through the Speck emulator (DVS layer, noise filter, the cores, the readout) "
        "and print input_events, kept_events, synops, spikes_per_layer, energy_j per rail (resting, active), "
        "mean_power_w, modeled latency, readout decisions, startup_s (loading the engine's compiled code, "
        "once per process), wall_s and realtime_factor (duration_s / wall_s; wall_s includes decoding the file). Without --config it runs the paper's 5-core Speck net "
        "with fixed random weights. A net that does not fit the 9 cores is refused (see `speck-edge map`).",
    )
    p.add_argument(
        "--config",
        help="chip config JSON (docs/chip-config.md), or default-dynamic / default-vanilla (the bundled "
        "trained nets); default: default-dynamic (the random-weight Speck net before a bundle exists)",
    )
    p.add_argument("--input", required=True, help="the recording to run (any format `inspect` reads)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--lenient", action="store_true", help="on a damaged file, run the events before the damage")
    p.set_defaults(func=cmd_emulate)
