"""DAT kernel: the record decoder of :mod:`emulator.io.dat`."""

from __future__ import annotations

import numba
import numpy as np

from emulator.io.dat import _S_OFFSET, _S_PREV, RECORD_BYTES, TIMESTAMP_WRAP
from emulator.io.kernels import pack_xyp


@numba.njit(cache=True, nogil=True)
def decode(
    raw: np.ndarray, out: np.ndarray, state: np.ndarray, x_bits: int, y_bits: int, width: int, height: int
) -> tuple[int, int]:
    """Decode the whole records of ``raw`` into ``out`` (event words); returns ``(n_events, bad_record)`` (−1: none bad)."""
    t_off = state[_S_OFFSET]
    prev = state[_S_PREV]
    x_mask = (1 << x_bits) - 1
    y_mask = (1 << y_bits) - 1
    for i in range(raw.shape[0] // RECORD_BYTES):
        b = i * RECORD_BYTES
        ts = np.int64(raw[b]) | np.int64(raw[b + 1]) << 8 | np.int64(raw[b + 2]) << 16 | np.int64(raw[b + 3]) << 24
        data = (
            np.int64(raw[b + 4]) | np.int64(raw[b + 5]) << 8 | np.int64(raw[b + 6]) << 16 | np.int64(raw[b + 7]) << 24
        )
        x = data & x_mask
        y = (data >> x_bits) & y_mask
        p = (data >> (x_bits + y_bits)) & 0xF
        if x >= width or y >= height or p > 1:
            state[_S_OFFSET] = t_off
            state[_S_PREV] = prev
            return i, i
        if ts + (1 << 31) < prev:
            t_off += TIMESTAMP_WRAP
        prev = ts
        out[i, 0] = ts + t_off
        out[i, 1] = pack_xyp(x, y, p)
    state[_S_OFFSET] = t_off
    state[_S_PREV] = prev
    return raw.shape[0] // RECORD_BYTES, -1
