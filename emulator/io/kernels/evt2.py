"""EVT 2.0 kernel: the word state machine of :mod:`emulator.io.evt2`."""

from __future__ import annotations

import numba
import numpy as np

from emulator.io.evt2 import (
    _S_HIGH,
    _S_OTHER,
    _S_TRIGGER,
    _S_WRAPS,
    CD_ON,
    CONTINUED,
    EXT_TRIGGER,
    OTHERS,
    TIME_HIGH,
    TIME_HIGH_WRAP,
)
from emulator.io.kernels import pack_xyp


@numba.njit(cache=True, nogil=True)
def decode(
    words: np.ndarray, pos: int, out: np.ndarray, k: int, cap: int, state: np.ndarray, width: int, height: int
) -> tuple[int, int, int]:
    """The EVT 2.0 state machine (see :data:`Decoder`)."""
    high = state[_S_HIGH]
    base = state[_S_WRAPS] * TIME_HIGH_WRAP
    n = words.shape[0]
    bad = -1
    while pos < n and k < cap:
        w = words[pos]
        kind = w >> 28
        if kind <= CD_ON:
            x = (w >> 11) & 0x7FF
            y = w & 0x7FF
            if x >= width or y >= height:
                bad = pos
                break
            out[k, 0] = base + ((high << 6) | ((w >> 22) & 0x3F))
            out[k, 1] = pack_xyp(x, y, kind)
            k += 1
        elif kind == TIME_HIGH:
            new = np.int64(w & 0xFFFFFFF)
            if new < high:
                state[_S_WRAPS] += 1
                base += TIME_HIGH_WRAP
            high = new
        elif kind == EXT_TRIGGER:
            state[_S_TRIGGER] += 1
        elif kind == OTHERS or kind == CONTINUED:
            state[_S_OTHER] += 1
        else:
            bad = pos
            break
        pos += 1
    state[_S_HIGH] = high
    return k, pos, bad
