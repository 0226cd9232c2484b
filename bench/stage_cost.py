"""What one message costs each stage, back to back and after the process slept: the cold-start cost.

Run: ``python -m bench.stage_cost [--recording FILE] [--idle-ms 0 1 10]``.

The filter, chip and readout stages run in this one process, without sockets, on a real DVS128
recording cut into 1 ms batches, as the sensor sends them at 1×. Each message is decoded, handled and
its outputs encoded. This is a stage's work per message, without the hop. The same messages are timed
three ways: back to back, and after sleeping 1 ms and 10 ms before each. In the running pipeline a
stage sleeps between messages: 1 ms for the filter and chip, and 10–50 ms for the readout between the
batches that close a readout cycle. So the slept rows show what a message costs there.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.pipeline import DEFAULT_RECORDING
from emulator.io import read_recording
from proto.codec import decode, encode
from proto.messages import EventBatch
from services.clock import SystemClock
from services.config import Settings
from services.launch import bound_heap, build_stage, settle_heap
from services.runtime import Outbox, Stage

BATCH_US = 1000
"""The sensor's default window: one message per ms at 1×."""

Frames = list[bytes]


def batches(recording: Path, out: Outbox) -> list[Frames]:
    """The recording as the sensor's 1 ms ``events.raw`` messages, on the wire."""
    events, rec = read_recording(recording)
    t = events["t"]
    edges = np.searchsorted(t, np.arange(int(t[0]), int(t[-1]) + BATCH_US, BATCH_US, dtype=np.uint64))
    width, height = rec.info.width, rec.info.height
    return [
        [bytes(f) for f in encode(EventBatch(events=events[a:b], width=width, height=height,
                                             **out.envelope("events.raw", 1)))]
        for a, b in itertools.pairwise(edges) if b > a
    ]  # fmt: skip


def run(stage: Stage, messages: Sequence[Frames], out: Outbox, idle_s: float) -> tuple[list[Frames], np.ndarray]:
    """``stage`` on every message (sleeping ``idle_s`` before each); its outputs and µs per message."""
    outputs: list[Frames] = []
    took = np.empty(len(messages))
    for i, frames in enumerate(messages):
        if idle_s:
            time.sleep(idle_s)  # the idle under test, not a wait for a result
        start = time.perf_counter_ns()
        produced = [encode(m) for m in stage.handle(decode(frames), out)]
        took[i] = (time.perf_counter_ns() - start) / 1e3
        outputs += [[bytes(f) for f in m] for m in produced]
    return outputs, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    parser.add_argument("--idle-ms", type=float, nargs="+", default=[0.0, 1.0, 10.0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per stage and row (default 2000)")
    args = parser.parse_args()
    out = Outbox("bench", SystemClock())
    settings = Settings()
    messages = batches(args.recording, out)[: args.messages]
    print(f"{args.recording.name}: {len(messages)} messages of {BATCH_US} µs; µs per message, p50 / p90:")
    bound_heap()  # the services' heap settings
    for name in ("filter", "chip", "readout"):
        rows = []
        for idle_ms in args.idle_ms:
            stage = build_stage(name, settings)  # compiled and warmed up; fresh state: the same work each row
            settle_heap()  # as each service does before its loop
            outputs, took = run(stage, messages, out, idle_ms / 1e3)
            p50, p90 = np.percentile(took, [50, 90])
            rows.append(f"idle {idle_ms:g} ms: {p50:.0f} / {p90:.0f}")
        print(f"  {name:8s} ({len(messages)} in, {len(outputs)} out)  " + ";  ".join(rows))
        messages = outputs[: args.messages]


if __name__ == "__main__":
    main()
