"""The slow clock's tick arithmetic (:mod:`emulator.slow_clock`) for numba kernels: one time at a time."""

from __future__ import annotations

import numba
import numpy as np

from emulator.slow_clock import US_PER_S


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
