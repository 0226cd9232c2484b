"""AEDAT 4 kernels: the ``EVTS`` flatbuffer walk and the checked event copy of :mod:`emulator.io.aedat4_packets`."""

from __future__ import annotations

import numba
import numpy as np

from emulator.io.aedat4_packets import _BAD_ID, _BAD_PREFIX, _BAD_VTABLE, _OK, _OUT_OF_BOUNDS, EVENT_BYTES, EVENTS_ID
from proto.events import PADDING_MASK

_EVTS = np.frombuffer(EVENTS_ID, dtype=np.uint8)


@numba.njit(cache=True, nogil=True, inline="always")
def _u16(b: np.ndarray, pos: int) -> int:
    return int(np.int64(b[pos]) | (np.int64(b[pos + 1]) << 8))


@numba.njit(cache=True, nogil=True, inline="always")
def _u32(b: np.ndarray, pos: int) -> int:
    return _u16(b, pos) | (_u16(b, pos + 2) << 16)


@numba.njit(cache=True, nogil=True)
def event_vector(b: np.ndarray) -> tuple[int, int, int, int]:
    """``(start, count, code, where)`` of the event vector of a size-prefixed EVTS flatbuffer."""
    n = b.shape[0]
    if n < 12 or _u32(b, 0) + 4 != n:
        return 0, 0, _BAD_PREFIX, 0
    for i in range(4):
        if b[8 + i] != _EVTS[i]:
            return 0, 0, _BAD_ID, 8
    table = 4 + _u32(b, 4)
    if table + 4 > n:
        return 0, 0, _OUT_OF_BOUNDS, 4
    soffset = _u32(b, table)
    vtable = table - (soffset - (1 << 32) if soffset >= 1 << 31 else soffset)
    if vtable < 4 or vtable + 4 > n:
        return 0, 0, _OUT_OF_BOUNDS, table
    vt_size = _u16(b, vtable)
    if vt_size < 4 or vt_size % 2 or vtable + vt_size > n:
        return 0, 0, _BAD_VTABLE, vtable
    rel = _u16(b, vtable + 4) if vt_size >= 6 else 0
    if rel == 0:
        return 0, 0, _OK, 0  # no event vector: an empty packet
    if table + rel + 4 > n:
        return 0, 0, _OUT_OF_BOUNDS, vtable + 4
    vec = table + rel + _u32(b, table + rel)
    if vec + 4 > n or vec + 4 + EVENT_BYTES * _u32(b, vec) > n:
        return 0, 0, _OUT_OF_BOUNDS, table + rel
    return vec + 4, _u32(b, vec), _OK, 0


@numba.njit(cache=True, nogil=True)
def copy_events(src: np.ndarray, dst: np.ndarray, width: int, height: int) -> int:
    """Copy event words ``src`` into ``dst`` (see ``proto.events.event_words``), zeroing the
    struct padding, and checking each event on the way: inside the sensor, on 0/1, t ≥ 0
    (as int64). Returns the index of the first bad event (nothing from it on is copied), or −1.
    """
    top = np.uint64(1 << 63)
    for i in range(src.shape[0]):
        t, xyp = src[i, 0], src[i, 1]
        if (xyp & 0xFFFF) >= width or ((xyp >> 16) & 0xFFFF) >= height or ((xyp >> 32) & 0xFF) > 1 or t >= top:
            return i
        dst[i, 0] = t
        dst[i, 1] = xyp & PADDING_MASK
    return -1
