"""EVT 3.0 kernel: the word state machine of :mod:`emulator.io.evt3`."""

from __future__ import annotations

import numba
import numpy as np

from emulator.io.evt3 import (
    _S_BASE_X,
    _S_HIGH,
    _S_LOW,
    _S_OTHER,
    _S_POL,
    _S_TRIGGER,
    _S_WRAPS,
    _S_Y,
    ADDR_X,
    ADDR_Y,
    CONTINUED_4,
    CONTINUED_12,
    EXT_TRIGGER,
    OTHERS,
    TIME_HIGH,
    TIME_LOW,
    TIME_WRAP,
    VECT_8,
    VECT_12,
    VECT_BASE_X,
)
from emulator.io.kernels import pack_xyp


@numba.njit(cache=True, nogil=True, inline="always")
def _vector(
    out: np.ndarray, k: int, mask: np.int64, bits: int, x0: int, y: int, p: int, t: int, width: int, height: int
) -> int:
    """Emit the events of one vector word; −1 when one falls outside the sensor."""
    for i in range(bits):
        if (mask >> i) & 1:
            x = x0 + i
            if x >= width or y >= height:
                return -1
            out[k, 0] = t
            out[k, 1] = pack_xyp(x, y, p)
            k += 1
    return k


@numba.njit(cache=True, nogil=True)
def decode(
    words: np.ndarray, pos: int, out: np.ndarray, k: int, cap: int, state: np.ndarray, width: int, height: int
) -> tuple[int, int, int]:
    """The EVT 3.0 state machine (see :data:`emulator.io.evt2.Decoder`)."""
    high, low, y, base_x, pol = state[_S_HIGH], state[_S_LOW], state[_S_Y], state[_S_BASE_X], state[_S_POL]
    base = state[_S_WRAPS] * TIME_WRAP
    t = base + (high << 12) + low
    n = words.shape[0]
    bad = -1
    while pos < n and k < cap:
        w = np.int64(words[pos])
        kind = w >> 12
        if kind == ADDR_X:
            x = w & 0x7FF
            if x >= width or y >= height:
                bad = pos
                break
            out[k, 0] = t
            out[k, 1] = pack_xyp(x, y, (w >> 11) & 1)
            k += 1
        elif kind == ADDR_Y:
            y = w & 0x7FF
        elif kind == VECT_12 or kind == VECT_8:
            bits = 12 if kind == VECT_12 else 8
            k2 = _vector(out, k, w & ((1 << bits) - 1), bits, base_x, y, pol, t, width, height)
            if k2 < 0:
                bad = pos
                break
            k = k2
            base_x += bits
        elif kind == VECT_BASE_X:
            base_x = w & 0x7FF
            pol = (w >> 11) & 1
        elif kind == TIME_LOW:
            low = w & 0xFFF
            t = base + (high << 12) + low
        elif kind == TIME_HIGH:
            new = w & 0xFFF
            if new < high:
                state[_S_WRAPS] += 1
                base += TIME_WRAP
            high = new
            t = base + (high << 12) + low
        elif kind == EXT_TRIGGER:
            state[_S_TRIGGER] += 1
        elif kind == OTHERS or kind == CONTINUED_4 or kind == CONTINUED_12:
            state[_S_OTHER] += 1
        else:
            bad = pos
            break
        pos += 1
    state[_S_HIGH], state[_S_LOW], state[_S_Y], state[_S_BASE_X], state[_S_POL] = high, low, y, base_x, pol
    return k, pos, bad
