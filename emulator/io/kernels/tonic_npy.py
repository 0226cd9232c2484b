"""tonic .npy kernel: the row checker and packer of :mod:`emulator.io.tonic_npy`."""

from __future__ import annotations

import numba
import numpy as np

from emulator.io.kernels import pack_xyp
from emulator.io.tonic_npy import MAX_T_US, MS_TO_US, SENSOR_SIZE


@numba.njit(cache=True, nogil=True)
def pack(rows: np.ndarray, t_us: np.ndarray, narrow_int: bool, out: np.ndarray) -> int:
    """Check and pack rows into ``out`` (event words); returns the number of good rows before a bad one.

    A row is bad when x or y is outside 0–127, p is not 0 or 1, or t (µs) is negative,
    not finite, or (``narrow_int``) an integer product that wrapped around.
    """
    for i in range(rows.shape[0]):
        x, y, p, t = rows[i, 0], rows[i, 1], rows[i, 2], t_us[i]
        if not (0 <= x < SENSOR_SIZE and 0 <= y < SENSOR_SIZE and (p == 0 or p == 1) and 0 <= t < MAX_T_US):
            return i
        if narrow_int and np.int64(t) != np.int64(rows[i, 3]) * MS_TO_US:
            return i
        out[i, 0] = np.int64(t)
        out[i, 1] = pack_xyp(np.int64(x), np.int64(y), np.int64(p))
    return rows.shape[0]
