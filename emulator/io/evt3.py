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

from emulator.io import evt2
from emulator.io.base import Recording

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


ENCODING = evt2.RawEncoding(FORMAT, "emulator.io.kernels.evt3", WORD_BYTES, VECT_MAX, 8, _S_TRIGGER, _S_OTHER)


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    return evt2.open_encoding(path, ENCODING, chunk_events, lenient)
