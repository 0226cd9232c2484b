"""Streaming summary of an event recording (what ``speck-edge inspect`` prints)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from proto.events import Events


@dataclass(frozen=True)
class Summary:
    """Statistics over a whole event stream; times in µs, ``on_fraction`` in 0–1.

    ``x_range``/``y_range`` are the observed (min, max) addresses, ``None`` if empty.
    """

    events: int
    t_first_us: int | None
    t_last_us: int | None
    on_fraction: float
    monotonic: bool
    x_range: tuple[int, int] | None
    y_range: tuple[int, int] | None

    @property
    def duration_s(self) -> float:
        if self.t_first_us is None or self.t_last_us is None:
            return 0.0
        return (self.t_last_us - self.t_first_us) / 1e6


def summarize(chunks: Iterable[Events]) -> Summary:
    """One pass over the chunks, in bounded memory."""
    n = on = 0
    t_first = t_last = None
    monotonic = True
    xr: list[int] = []
    yr: list[int] = []
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        t = chunk["t"]
        if t_last is not None and int(t[0]) < t_last:
            monotonic = False
        if monotonic and len(t) > 1 and bool(np.any(t[1:] < t[:-1])):
            monotonic = False
        if t_first is None:
            t_first = int(t[0])
        t_last = int(t[-1])
        n += len(chunk)
        on += int(np.count_nonzero(chunk["p"]))
        xr = _extend(xr, chunk["x"])
        yr = _extend(yr, chunk["y"])
    return Summary(
        n,
        t_first,
        t_last,
        on / n if n else 0.0,
        monotonic,
        (xr[0], xr[1]) if xr else None,
        (yr[0], yr[1]) if yr else None,
    )


def _extend(rng: list[int], values: np.ndarray) -> list[int]:
    lo, hi = int(values.min()), int(values.max())
    return [min(rng[0], lo), max(rng[1], hi)] if rng else [lo, hi]
