"""Event Stream kernel: the byte-stream decoder of :mod:`emulator.io.eventstream`."""

from __future__ import annotations

import numba
import numpy as np

from emulator.io.eventstream import _E_X, _E_Y, _S_T, EVENT_BYTES, OVERFLOW_BYTE, OVERFLOW_US, RESET_BYTE
from emulator.io.kernels import pack_xyp


@numba.njit(cache=True, nogil=True)
def decode(buf: np.ndarray, out: np.ndarray, state: np.ndarray, width: int, height: int) -> tuple[int, int, int]:
    """Decode ``buf`` up to its last whole event into ``out`` (event words).

    Returns ``(n_events, consumed, error)``: ``consumed`` bytes are fully decoded
    (a partial event at the end is left for the next buffer); ``error`` is 0, or
    ``_E_X`` / ``_E_Y`` for the event starting at ``consumed``.
    """
    n = buf.shape[0]
    t = state[_S_T]
    pos = 0
    k = 0
    while pos < n:
        b = np.int64(buf[pos])
        if b == OVERFLOW_BYTE:
            t += OVERFLOW_US
            pos += 1
            continue
        if b == RESET_BYTE:
            pos += 1
            continue
        if pos + EVENT_BYTES > n:
            break
        x = np.int64(buf[pos + 1]) | np.int64(buf[pos + 2]) << 8
        y = np.int64(buf[pos + 3]) | np.int64(buf[pos + 4]) << 8
        if x >= width or y >= height:
            state[_S_T] = t
            return k, pos, _E_X if x >= width else _E_Y
        t += b >> 1
        out[k, 0] = t
        out[k, 1] = pack_xyp(x, height - 1 - y, b & 1)
        k += 1
        pos += EVENT_BYTES
    state[_S_T] = t
    return k, pos, 0
