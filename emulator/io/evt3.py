"""Prophesee RAW files in EVT 3.0: stateful 16-bit words.

Layout: an ASCII ``%`` header (``% evt 3.0`` or ``% format EVT3;height=720;width=1280``),
then little-endian 16-bit words whose top 4 bits give the word type:

====== ============= ==========================================================
type   name          payload (sets decoder state or emits events)
====== ============= ==========================================================
0x0    EVT_ADDR_Y    bits 10–0 y (bit 11: master/slave system type, ignored)
0x2    EVT_ADDR_X    bit 11 polarity, bits 10–0 x: one event at (x, y, t)
0x3    VECT_BASE_X   bit 11 polarity, bits 10–0 base x for the vectors that follow
0x4    VECT_12       12-bit mask: an event at base_x + i per set bit i; base_x += 12
0x5    VECT_8        8-bit mask: likewise; base_x += 8
0x6    EVT_TIME_LOW  bits 11–0: timestamp bits 11–0
0x7    CONTINUED_4   4 bits of extra data (counted in ``dropped["other"]``)
0x8    EVT_TIME_HIGH bits 11–0: timestamp bits 23–12
0xA    EXT_TRIGGER   external trigger (counted in ``dropped["trigger"]``)
0xE    OTHERS        vendor data (counted in ``dropped["other"]``)
0xF    CONTINUED_12  12 bits of extra data (counted in ``dropped["other"]``)
====== ============= ==========================================================

``t = wraps * 2^24 + (time_high << 12 | time_low)`` µs on the camera's clock; a
TIME_HIGH lower than the previous one is the 24-bit counter wrapping (~16.8 s) and
adds 2^24. Other word types (0x1, 0x9, 0xB–0xD) are corrupt. Geometry, probing,
chunking and damage handling are shared with :mod:`emulator.io.evt2`.

**Timestamps vs other readers.** Gen4.1 cameras repeat a TIME_HIGH/TIME_LOW pair
up to ~11 µs ahead of the events about every 1000 µs; the next TIME_LOW steps back
to the events' time. No event is stamped in between, so ``t`` stays monotonic.
expelliarmus 1.1.12 counts every TIME_LOW lower than the previous one as a 4096 µs
overflow (even right after the TIME_HIGH that carried it), so its t drifts ahead —
53.9 ms for the 8.8 ms ``evt3_sample.raw``, past what its TIME_HIGH words allow;
faery clamps t to the running maximum. x, y, p and order agree with both.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from emulator.io import evt2
from emulator.io.base import Recording, pack_xyp

FORMAT = "evt3"
WORD_BYTES = 2
TIME_WRAP = 1 << 24
"""TIME_HIGH + TIME_LOW make a 24-bit µs counter."""
VECT_MAX = 12
"""The most events one word emits (a full VECT_12)."""

ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8 = 0x0, 0x2, 0x3, 0x4, 0x5
TIME_LOW, CONTINUED_4, TIME_HIGH, EXT_TRIGGER, OTHERS, CONTINUED_12 = 0x6, 0x7, 0x8, 0xA, 0xE, 0xF

# decoder state slots (carried from block to block)
_S_HIGH, _S_LOW, _S_WRAPS, _S_Y, _S_BASE_X, _S_POL, _S_TRIGGER, _S_OTHER = range(8)


def probe(head: bytes, path: Path) -> bool:
    return evt2.raw_format(evt2.header_fields(head)) == FORMAT


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
def _decode(
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


ENCODING = evt2.RawEncoding(FORMAT, _decode, WORD_BYTES, VECT_MAX, 8, _S_TRIGGER, _S_OTHER)


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    return evt2.open_encoding(path, ENCODING, chunk_events, lenient)
