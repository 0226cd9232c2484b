"""The slow clock's tick arithmetic, shared by the engine (leak) and the noise filter.

Tick ``k`` of a ``hz`` clock starts at ``ceil(k · 10⁶ / hz)`` µs, so the tick of time ``t`` µs
is ``floor(t · hz / 10⁶)``. Rates are whole Hz (the config requires it), so both are exact in
integers; they are split (``t // 10⁶`` and ``t % 10⁶`` apart) so that Unix-epoch µs (~1.7e15)
at 100 kHz cannot overflow 64 bits.

The same arithmetic inside numba kernels is :mod:`emulator.slow_clock_kernel` (kept apart so that
a process which needs only this numpy version never loads numba).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

US_PER_S: Final = 1_000_000


def ticks(t_us: npt.ArrayLike, slow_clock_hz: float) -> npt.NDArray[np.int64]:
    """Slow-clock tick index of each timestamp, ``floor(t · hz / 10⁶)``, exact and overflow-free."""
    t = np.asarray(t_us).astype(np.uint64)
    hz = np.uint64(slow_clock_hz)
    us = np.uint64(US_PER_S)
    return np.asarray((t // us) * hz + (t % us) * hz // us).astype(np.int64)
