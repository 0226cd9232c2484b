"""Codec cost per event batch: encode and decode µs (median), against a plain copy of the payload.

Run: ``python bench/codec.py [--reps N]``. Columns, all medians over ``N`` calls:

* ``build`` — ``EventBatch(...)``: the sender's validation (coordinates, polarity, time order);
* ``encode`` — ``encode(msg)``: header + zero-copy payload view (no validation: done at build);
* ``decode`` — ``decode(frames)`` from bytes frames, full validation included;
* ``copy`` — ``events.tobytes()``, the cost of touching the payload once: the ratios'
  denominator, measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from proto.codec import decode, encode
from proto.events import Events, make_events
from proto.messages import EventBatch

SIZES = (1, 1024, 16384)
WIDTH = HEIGHT = 128  # Speck's DVS array, pixels


def random_events(n: int, rng: np.random.Generator) -> Events:
    """``n`` random time-ordered events on a 128 × 128 sensor."""
    t = np.sort(rng.integers(0, 1_000_000, n, dtype=np.uint64))
    return make_events(t, rng.integers(0, WIDTH, n), rng.integers(0, HEIGHT, n), rng.integers(0, 2, n))


def batch(events: Events) -> EventBatch:
    return EventBatch(
        events=events, width=WIDTH, height=HEIGHT, stream="bench", seq=len(events), sent_ns=time.time_ns()
    )


def median_us(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``fn()`` over ``reps`` calls, µs (after a few warm-up calls)."""
    for _ in range(min(reps, 10)):
        fn()
    samples = np.empty(reps, dtype=np.int64)
    for i in range(reps):
        start = time.perf_counter_ns()
        fn()
        samples[i] = time.perf_counter_ns() - start
    return float(np.median(samples)) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=2000, help="repetitions per measurement")
    reps = parser.parse_args().reps
    rng = np.random.default_rng(0)
    print(
        f"{'events':>7} {'build µs':>9} {'encode µs':>10} {'decode µs':>10} {'copy µs':>8} {'enc/copy':>9} {'dec/copy':>9}"
    )
    for n in SIZES:
        events = random_events(n, rng)
        msg = batch(events)
        frames = [bytes(f) for f in encode(msg)]  # as a SUB socket would deliver them
        if decode(frames) != msg:
            raise SystemExit(f"round trip of {n} events failed")
        build = median_us(partial(batch, events), reps)
        enc = median_us(partial(encode, msg), reps)
        dec = median_us(partial(decode, frames), reps)
        copy = median_us(msg.events.tobytes, reps)
        print(f"{n:>7} {build:>9.2f} {enc:>10.2f} {dec:>10.2f} {copy:>8.2f} {enc / copy:>9.1f} {dec / copy:>9.1f}")


if __name__ == "__main__":
    main()
