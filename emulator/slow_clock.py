"""The slow clock's tick arithmetic, shared by the engine (leak) and the noise filter.

Tick ``k`` of a ``hz`` clock starts at ``ceil(k · 10⁶ / hz)`` µs, so the tick of time ``t`` µs
is ``floor(t · hz / 10⁶)``. Rates are whole Hz (the config requires it), so both are exact in
integers; they are split (``t // 10⁶`` and ``t % 10⁶`` apart) so that Unix-epoch µs (~1.7e15)
at 100 kHz cannot overflow 64 bits.
"""

from __future__ import annotations

from typing import Final

import numba
import numpy as np
import numpy.typing as npt

US_PER_S: Final = 1_000_000


def ticks(t_us: npt.ArrayLike, slow_clock_hz: float) -> npt.NDArray[np.int64]:
    """Slow-clock tick index of each timestamp, ``floor(t · hz / 10⁶)``, exact and overflow-free."""
    t = np.asarray(t_us).astype(np.uint64)
    hz = np.uint64(slow_clock_hz)
    us = np.uint64(US_PER_S)
    return np.asarray((t // us) * hz + (t % us) * hz // us).astype(np.int64)


@numba.njit(cache=True, inline="always")
def tick_at(t: np.uint64, hz: np.uint64) -> np.int64:
    """:func:`ticks` of one time, inside numba."""
    us = np.uint64(US_PER_S)
    return np.int64((t // us) * hz + (t % us) * hz // us)


@numba.njit(cache=True, inline="always")
def tick_start(k: np.int64, hz: np.uint64) -> np.uint64:
    """The first µs of tick ``k``: ``ceil(k · 10⁶ / hz)``, without overflow."""
    ku, us = np.uint64(k), np.uint64(US_PER_S)
    q, r = ku // hz, ku % hz
    return q * us + (r * us + hz - np.uint64(1)) // hz
