"""Pure pieces of the DVS replay: cutting the event stream into time windows, and
mapping event time to wall time.

Batches are windows of ``window_us`` event-time microseconds, aligned to the first
event: window k holds events with ``t0 + k·w ≤ t < t0 + (k+1)·w``. Empty windows
produce no batch. The :class:`Pacer` maps an event time to the wall time it is
due at:

    due_ns = start_ns + (t_us − t0_us) · 1000 / speed

computed from the fixed start each time, so rounding never accumulates into drift
over minutes or loops.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from proto.events import EVENT_DTYPE, Events, concat_events

MIN_SPEED = 0.1
MAX_SPEED = 1000.0


@dataclass(frozen=True)
class Window:
    """A batch of events and the event-time window it belongs to (µs, end exclusive).

    ``reordered`` counts events whose timestamp went backwards in the source; they were
    moved (stable sort by ``t``) so the batch is time-ordered, as the wire requires.
    """

    events: Events
    start_us: int
    end_us: int
    reordered: int = 0


def windows(chunks: Iterable[Events], window_us: int, t0_us: int | None = None) -> Iterator[Window]:
    """Cut a time-ordered stream of chunks into non-empty windows of ``window_us``.

    ``t0_us`` aligns the windows (default: the first event's timestamp). Events
    should be time-ordered; an event earlier than the current window (a timestamp
    going backwards) is put in the current window rather than lost, and each
    window is sorted by time (see :attr:`Window.reordered`). If ``chunks`` raises,
    the events it gave before are still yielded, then the exception propagates.
    """
    if window_us < 1:
        raise ValueError(f"window_us must be >= 1, got {window_us}")
    pending = np.zeros(0, dtype=EVENT_DTYPE)
    origin = t0_us
    try:
        for chunk in chunks:
            if len(chunk) == 0:
                continue
            if origin is None:
                origin = int(chunk["t"][0])
            pending = concat_events([pending, chunk]) if len(pending) else chunk
            # only windows that have closed (a later event exists) are complete
            last_k = (int(pending["t"][-1]) - origin) // window_us
            complete = pending[: _first_at_or_after(pending, origin + last_k * window_us)]
            yield from split_windows(complete, origin, window_us)
            pending = pending[len(complete) :]
    except Exception:  # the source failed (e.g. a damaged file): what it gave before still goes out
        if origin is not None:
            yield from split_windows(pending, origin, window_us)
        raise
    if origin is not None:
        yield from split_windows(pending, origin, window_us)


def _first_at_or_after(events: Events, t_us: int) -> int:
    return int(np.searchsorted(events["t"], np.uint64(max(t_us, 0)), side="left"))


def split_windows(events: Events, origin: int, window_us: int) -> Iterator[Window]:
    """The non-empty windows of ``events`` (aligned to ``origin``), each sorted by time."""
    if len(events) == 0:
        return
    t = events["t"]
    k = (t.astype(np.int64) - origin) // window_us
    k = np.maximum.accumulate(np.maximum(k, 0))  # keep backwards timestamps in the current window
    late = np.zeros(len(events), dtype=bool)
    late[1:] = t[1:] < np.maximum.accumulate(t)[:-1]
    if late.any():  # rare: make each window time-ordered, keeping equal times in file order
        order = np.lexsort((t, k))
        events, k, late = events[order], k[order], late[order]
    cuts = np.flatnonzero(np.diff(k)) + 1
    starts = np.concatenate(([0], cuts)).tolist()
    ends = np.concatenate((cuts, [len(events)])).tolist()
    reordered = np.add.reduceat(late, starts).tolist() if late.any() else [0] * len(starts)
    for a, b, r in zip(starts, ends, reordered, strict=True):
        w0 = origin + int(k[a]) * window_us
        yield Window(events[a:b], w0, w0 + window_us, int(r))


def check_speed(speed: float | None) -> float | None:
    """Validate a replay speed factor; ``None`` means as fast as possible."""
    if speed is not None and not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED} (or 'max'), got {speed}")
    return speed


@dataclass(frozen=True)
class Pacer:
    """Maps event time (µs) to the wall time (monotonic ns) when it is due."""

    start_ns: int
    t0_us: int
    speed: float

    def due_ns(self, t_us: int) -> int:
        return self.start_ns + round((t_us - self.t0_us) * 1000 / self.speed)
