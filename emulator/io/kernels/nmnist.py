"""N-MNIST kernel: the record decoder of :mod:`emulator.io.nmnist`."""

from __future__ import annotations

import numba
import numpy as np

from emulator.io.kernels import pack_xyp
from emulator.io.nmnist import _S_OFFSET, _S_OVERFLOWS, OVERFLOW_US, OVERFLOW_Y, RECORD_BYTES


@numba.njit(cache=True, nogil=True)
def decode(raw: np.ndarray, out: np.ndarray, state: np.ndarray, width: int, height: int) -> tuple[int, int]:
    """Decode the whole records of ``raw`` into ``out`` (event words).

    Returns ``(n_events, bad_record)``; ``bad_record`` is −1 or the index of the
    first record whose address lies outside the sensor (decoding stops there).
    """
    t_off = state[_S_OFFSET]
    k = 0
    for i in range(raw.shape[0] // RECORD_BYTES):
        b = i * RECORD_BYTES
        x = np.int64(raw[b])
        y = np.int64(raw[b + 1])
        if y == OVERFLOW_Y:
            t_off += OVERFLOW_US
            state[_S_OVERFLOWS] += 1
            continue
        if x >= width or y >= height:
            state[_S_OFFSET] = t_off
            return k, i
        out[k, 0] = t_off + ((np.int64(raw[b + 2]) & 0x7F) << 16 | np.int64(raw[b + 3]) << 8 | np.int64(raw[b + 4]))
        out[k, 1] = pack_xyp(x, y, raw[b + 2] >> 7)
        k += 1
    state[_S_OFFSET] = t_off
    return k, -1
