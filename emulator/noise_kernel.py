"""The noise filter's per-event loop (numba); the semantics are in :mod:`emulator.noise`."""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from emulator.noise import NO_CUT
from emulator.slow_clock_kernel import tick_at, tick_start


@numba.njit(cache=True, inline="always")
def _neighbour_recent(last: npt.NDArray[np.int64], x: int, y: int, cut: np.int64, r: int) -> bool:
    """Whether a pixel in the clipped square of radius ``r`` around ``(y, x)`` has ``last > cut``."""
    h, w = last.shape
    x0, x1 = max(x - r, 0), min(x + r + 1, w)
    found = False
    for yy in range(max(y - r, 0), min(y + r + 1, h)):
        row = last[yy]
        for xx in range(x0, x1):
            found |= row[xx] > cut  # no early exit: branch-free is faster on random streams
    return found


@numba.njit(cache=True, inline="always")
def _rate_ok(
    block: npt.NDArray[np.int64],
    count: npt.NDArray[np.int32],
    prev: npt.NDArray[np.int32],
    x: np.uint64,
    y: np.uint64,
    b: np.int64,
    max_events: int,
) -> bool:
    """Count the event in its pixel's block ``b``; whether the pixel is below the hot-pixel rate."""
    if b > block[y, x]:
        prev[y, x] = count[y, x] if b == block[y, x] + 1 else 0
        count[y, x] = 0
        block[y, x] = b
    count[y, x] += 1
    return count[y, x] <= max_events and prev[y, x] <= max_events


@numba.njit(cache=True)
def filter_kernel(
    words: npt.NDArray[np.uint64],
    out: npt.NDArray[np.uint64],
    last: npt.NDArray[np.int64],
    block: npt.NDArray[np.int64],
    count: npt.NDArray[np.int32],
    prev: npt.NDArray[np.int32],
    mode: int,
    thr: int,
    r: int,
    hz: np.uint64,
    block_ticks: int,
    max_events: int,
) -> int:
    """Filter ``words`` into ``out`` (updating the state arrays in place); returns the kept count.

    A pixel is recent iff ``age < thr`` with ``age = max(now − last, 0)``, i.e. iff ``last > now − thr``
    (never when ``thr ≤ 0``). The tick is recomputed only when ``t`` leaves the current tick.
    """
    k = 0
    t_lo, t_hi = np.uint64(1), np.uint64(0)  # empty: the first event computes its tick
    now, cut, b = np.int64(0), np.int64(0), np.int64(0)
    for i in range(words.shape[0]):
        t, w1 = words[i, 0], words[i, 1]
        if t < t_lo or t >= t_hi:
            now = tick_at(t, hz)
            t_lo, t_hi = tick_start(now, hz), tick_start(now + 1, hz)
            cut = now - thr if thr > 0 else np.int64(NO_CUT)
            b = now // block_ticks
        x, y = w1 & np.uint64(0xFFFF), (w1 >> np.uint64(16)) & np.uint64(0xFFFF)
        if mode == 2:  # low_pass
            keep = last[y, x] <= cut
            stamp = keep
        else:  # neighbourhood, hot_pixel
            stamp = mode == 1 or _rate_ok(block, count, prev, x, y, b, max_events)
            keep = stamp and _neighbour_recent(last, int(x), int(y), cut, r)
        if stamp and now > last[y, x]:
            last[y, x] = now
        if keep:
            out[k, 0] = t
            out[k, 1] = w1
            k += 1
    return k
