"""AEDAT 3.1 kernels: the packet walk and polarity decoding of :mod:`emulator.io.aedat31`."""

from __future__ import annotations

import numba
import numpy as np

from emulator.io.aedat31 import (
    _E_COUNTS,
    _E_OVERFLOW,
    _E_PAST_END,
    _E_SIZE,
    _E_TS,
    _E_TYPE,
    _E_X,
    _E_Y,
    _S_INVALID,
    _S_LEFT,
    _S_OVERFLOW,
    _S_TYPE,
    ADDRESS_MASK,
    PACKET_HEADER_BYTES,
    POLARITY_SIZE,
    POLARITY_TS_OFFSET,
    POLARITY_TYPE,
    TS_OVERFLOW_SHIFT,
)
from emulator.io.kernels import pack_xyp


@numba.njit(cache=True, nogil=True)
def _u32(buf: np.ndarray, p: int) -> np.int64:
    return np.int64(buf[p]) | np.int64(buf[p + 1]) << 8 | np.int64(buf[p + 2]) << 16 | np.int64(buf[p + 3]) << 24


@numba.njit(cache=True, nogil=True)
def _i32(buf: np.ndarray, p: int) -> np.int64:
    v = _u32(buf, p)
    return v - (1 << 32) if v >= 1 << 31 else v


@numba.njit(cache=True, nogil=True)
def _i16(buf: np.ndarray, p: int) -> np.int64:
    v = np.int64(buf[p]) | np.int64(buf[p + 1]) << 8
    return v - (1 << 16) if v >= 1 << 15 else v


@numba.njit(cache=True, nogil=True)
def _packet_error(buf: np.ndarray, pos: int, bytes_to_end: int) -> int:
    """0 if the packet header at ``pos`` is sound and its events fit in the file, else an error code."""
    etype = _i16(buf, pos)
    size, ts_offset, capacity, number, valid = (
        _i32(buf, pos + 4),
        _i32(buf, pos + 8),
        _i32(buf, pos + 16),
        _i32(buf, pos + 20),
        _i32(buf, pos + 24),
    )
    if etype < 0:
        return _E_TYPE
    if size <= 0 or (etype == POLARITY_TYPE and (size != POLARITY_SIZE or ts_offset != POLARITY_TS_OFFSET)):
        return _E_SIZE
    if capacity < 0 or number < 0 or valid < 0 or number > capacity or valid > number:
        return _E_COUNTS
    if _i32(buf, pos + 12) < 0:
        return _E_OVERFLOW
    if capacity * size > bytes_to_end - PACKET_HEADER_BYTES:
        return _E_PAST_END
    return 0


@numba.njit(cache=True, nogil=True)
def decode(
    buf: np.ndarray, bytes_to_end: int, out: np.ndarray, state: np.ndarray, skipped: np.ndarray, width: int, height: int
) -> tuple[int, int, int]:
    """Walk packets through ``buf`` (``bytes_to_end``: bytes from ``buf[0]`` to the end of the file).

    Events go to ``out`` (event words). Returns ``(n_events, consumed, error)``;
    on error, ``consumed`` is the offset
    of the bad packet header or event. A packet may span buffers (``state``).
    """
    n = buf.shape[0]
    pos = 0
    k = 0
    while True:
        if state[_S_LEFT] == 0:  # expecting a packet header
            if pos + PACKET_HEADER_BYTES > n:
                break
            error = _packet_error(buf, pos, bytes_to_end - pos)
            if error:
                return k, pos, error
            etype = _i16(buf, pos)
            state[_S_TYPE] = etype
            state[_S_OVERFLOW] = _i32(buf, pos + 12)
            state[_S_LEFT] = np.int64(_i32(buf, pos + 16)) * _i32(buf, pos + 4)
            if etype != POLARITY_TYPE:
                skipped[etype] += _i32(buf, pos + 20)
            pos += PACKET_HEADER_BYTES
        elif state[_S_TYPE] != POLARITY_TYPE:  # skip the events of other packets
            take = min(state[_S_LEFT], n - pos)
            pos += take
            state[_S_LEFT] -= take
            if state[_S_LEFT]:
                break
        else:
            k, pos, error = polarity(buf, pos, out, k, state, width, height)
            if error:
                return k, pos, error
            if state[_S_LEFT]:
                break
    return k, pos, 0


@numba.njit(cache=True, nogil=True)
def polarity(
    buf: np.ndarray, pos: int, out: np.ndarray, k: int, state: np.ndarray, width: int, height: int
) -> tuple[int, int, int]:
    """Decode the current polarity packet's whole events in ``buf`` from ``pos``: ``(k, pos, error)``."""
    while state[_S_LEFT] and pos + POLARITY_SIZE <= buf.shape[0]:
        data = _u32(buf, pos)
        if data & 1:
            ts = _i32(buf, pos + 4)
            x = (data >> 17) & ADDRESS_MASK
            y = (data >> 2) & ADDRESS_MASK
            if ts < 0 or x >= width or y >= height:
                return k, pos, _E_TS if ts < 0 else (_E_X if x >= width else _E_Y)
            out[k, 0] = (state[_S_OVERFLOW] << TS_OVERFLOW_SHIFT) | ts
            out[k, 1] = pack_xyp(x, y, (data >> 1) & 1)
            k += 1
        else:
            state[_S_INVALID] += 1
        pos += POLARITY_SIZE
        state[_S_LEFT] -= POLARITY_SIZE
    return k, pos, 0
