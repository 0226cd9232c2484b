"""jAER AEDAT 2.0 recordings from a DVS128 or eDVS.

Layout: ASCII header lines that start with ``#`` (the first is ``#!AER-DAT2.0``),
then big-endian records of (uint32 address, uint32 timestamp µs).

DVS128 address bits: bit 0 polarity (raw 0 = ON — jAER's extractor flips it),
bits 1–7 x, bits 8–14 y, bit 15 marks a special (external input) event.
jAER mirrors x (x_jaer = 127 − raw) and puts y = 0 at the bottom of the image.

**Orientation choice**: the product's image is upright with y = 0 at the *top*, so
``x = 127 − raw_x`` (jAER's x) and ``y = 127 − raw_y`` (jAER's y turned upside
down). Special events are skipped and counted in ``Recording.dropped["special"]``.
Timestamps are 32-bit and are unwrapped (a backwards jump of more than 2^31 µs
adds 2^32), so t is monotonic across the ~71-minute wrap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np

from emulator.io.base import Recording, RecordingError, RecordingInfo, build, pack_xyp, read_blocks
from proto.events import EVENT_DTYPE, Events, event_words

MAGIC = b"#!AER-DAT2.0"
RECORD_BYTES = 8
SENSOR_SIZE = 128
ADDRESS_BITS = 16
"""DVS128 addresses use bits 0–15; anything above is not a DVS128 address (corrupt)."""
SPECIAL_BIT = 1 << 15
TIMESTAMP_WRAP = 1 << 32
MAX_HEADER_LINE = 1 << 16
"""Longest header line read in one go (jAER's are under 200 bytes)."""
FORMAT = "aedat2"

# decoder state slots (carried from block to block)
_S_OFFSET, _S_PREV, _S_SPECIAL = 0, 1, 2


def probe(head: bytes, path: Path) -> bool:
    return head.startswith(MAGIC)


@numba.njit(cache=True, nogil=True)
def _decode(words: np.ndarray, out: np.ndarray, state: np.ndarray) -> tuple[int, int]:
    """Decode (address, timestamp) pairs of byte-swapped uint32 ``words`` into ``out`` (event words).

    Returns ``(n_events, bad_record)``; ``bad_record`` is −1 or the index of the
    first record whose address is not a DVS128 address (decoding stops there).
    """
    n = words.shape[0] // 2
    t_off = state[_S_OFFSET]
    prev = state[_S_PREV]
    half_wrap = np.uint64(TIMESTAMP_WRAP // 2)
    k = 0
    bad = -1
    for i in range(n):
        addr = _bswap32(words[2 * i])
        ts = np.uint64(_bswap32(words[2 * i + 1]))
        if addr >> ADDRESS_BITS:
            bad = i
            break
        if ts + half_wrap < prev:
            t_off += np.uint64(TIMESTAMP_WRAP)
        prev = ts
        if addr & SPECIAL_BIT:
            state[_S_SPECIAL] += np.uint64(1)
            continue
        out[k, 0] = ts + t_off
        out[k, 1] = pack_xyp(
            SENSOR_SIZE - 1 - ((addr >> 1) & 0x7F), SENSOR_SIZE - 1 - ((addr >> 8) & 0x7F), 1 - (addr & 1)
        )
        k += 1
    state[_S_OFFSET] = t_off
    state[_S_PREV] = prev
    return k, bad


@numba.njit(inline="always", cache=True)
def _bswap32(v: np.uint32) -> np.uint32:
    return ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | (v >> 24)


def _parse_header(path: Path) -> tuple[int, dict[str, str]]:
    """Return (byte offset where records start, header fields)."""
    header: dict[str, str] = {}
    with path.open("rb") as f:
        offset = 0
        while f.peek(1)[:1] == b"#":  # never readline() into the binary records: they may hold no newline
            line = f.readline(MAX_HEADER_LINE)
            text = line.decode("latin-1").strip().lstrip("#").strip()
            key, sep, value = text.partition(":")
            if sep:
                header.setdefault(key.strip(), value.strip())
            offset += len(line)
        return offset, header


def _events(path: Path, start: int, chunk_events: int, rec: Recording) -> Iterator[Events]:
    state = np.zeros(3, dtype=np.uint64)
    for offset, data in read_blocks(path, start, chunk_events * RECORD_BYTES, RECORD_BYTES):
        whole = len(data) - len(data) % RECORD_BYTES
        out = np.zeros(whole // RECORD_BYTES, dtype=EVENT_DTYPE)
        n, bad = _decode(np.frombuffer(data, dtype="<u4", count=whole // 4), event_words(out), state)
        rec.dropped["special"] = int(state[_S_SPECIAL])
        error = None
        if bad >= 0:
            word = int.from_bytes(data[bad * RECORD_BYTES : bad * RECORD_BYTES + 4], "big")
            error = RecordingError(path, offset + bad * RECORD_BYTES, "a DVS128 address below 2^16", f"0x{word:08x}")
        elif len(data) % RECORD_BYTES:
            tail = len(data) % RECORD_BYTES
            error = RecordingError(
                path,
                offset + len(data) - tail,
                "an 8-byte record (uint32 address, uint32 timestamp)",
                f"{tail} trailing bytes",
            )
        if n:
            yield out[:n]
        if error is not None:
            rec.damage = error
            return


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    start, header = _parse_header(path)
    with path.open("rb") as f:
        if not f.read(len(MAGIC)) == MAGIC:
            raise RecordingError(path, 0, "the magic line #!AER-DAT2.0")
    chip = header.get("AEChip", "")
    if chip and "DVS128" not in chip and "eDVS" not in chip:
        raise RecordingError(
            path, 0, "an AEChip line naming a DVS128 or eDVS (other jAER chips are not supported)", chip
        )
    info = RecordingInfo(path, FORMAT, SENSOR_SIZE, SENSOR_SIZE, "device clock", header)
    return build(info, lambda rec: _events(path, start, chunk_events, rec), lenient)
