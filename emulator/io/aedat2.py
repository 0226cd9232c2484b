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

Decoded with vectorised numpy (no numba: the sensor process reads AEDAT 2.0 without it).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np

from emulator.io.base import Recording, RecordingError, RecordingInfo, build, read_blocks
from proto.events import EVENT_DTYPE, Events, event_words

MAGIC = b"#!AER-DAT2.0"
RECORD_BYTES = 8
SENSOR_SIZE = 128
ADDRESS_BITS = 16
"""DVS128 addresses use bits 0–15; anything above is not a DVS128 address (corrupt)."""
SPECIAL_BIT = 1 << 15
TIMESTAMP_WRAP = 1 << 32
HALF_WRAP = np.uint64(TIMESTAMP_WRAP // 2)
PART_RECORDS = 1 << 15
"""Records decoded per vectorised step (sized for the CPU cache)."""
MAX_HEADER_LINE = 1 << 16
"""Longest header line read in one go (jAER's are under 200 bytes)."""
FORMAT = "aedat2"

# decoder state slots (carried from block to block)
_S_OFFSET, _S_PREV, _S_SPECIAL = 0, 1, 2


def probe(head: bytes, path: Path) -> bool:
    return head.startswith(MAGIC)


@cache
def _event_table() -> np.ndarray:
    """The event words of every 16-bit DVS128 address: ``(0, x | y << 16 | p << 32)``, upright (1 MiB, made once)."""
    addr = np.arange(1 << ADDRESS_BITS, dtype=np.uint64)
    x = SENSOR_SIZE - 1 - ((addr >> 1) & 0x7F)
    y = SENSOR_SIZE - 1 - ((addr >> 8) & 0x7F)
    table = np.zeros((len(addr), 2), dtype=np.uint64)
    table[:, 1] = x | (y << 16) | ((1 - (addr & 1)) << 32)
    return table


def _decode(records: np.ndarray, out: np.ndarray, state: np.ndarray) -> tuple[int, int]:
    """Decode big-endian uint32 (address, timestamp) pairs into ``out`` (event words), vectorised.

    Returns ``(n_events, bad_record)`` as :func:`_decode_part`, which it runs on
    :data:`PART_RECORDS` records at a time (its temporaries stay in the CPU cache).
    """
    words = records.reshape(-1, 2)
    k = 0
    for start in range(0, len(words), PART_RECORDS):
        n, bad = _decode_part(words[start : start + PART_RECORDS], out[k:], state)
        k += n
        if bad >= 0:
            return k, start + bad
    return k, -1


def _decode_part(words: np.ndarray, out: np.ndarray, state: np.ndarray) -> tuple[int, int]:
    """Decode (address, timestamp) rows of big-endian uint32 ``words`` into ``out`` (event words).

    Returns ``(n_events, bad_record)``; ``bad_record`` is −1 or the index of the
    first record whose address is not a DVS128 address (decoding stops there).
    ``state`` carries the timestamp offset, the previous record's raw timestamp and
    the count of special events from block to block. A timestamp more than 2^31 below
    the previous record's (special events included) is the 32-bit counter wrapping:
    it adds 2^32 to that timestamp and every later one. Special events are counted,
    not decoded. Every byte of ``out[:n_events]`` is written (padding zeroed).
    """
    addr = words[:, 0].astype(np.intp)
    bad = -1
    rare = len(addr) > 0 and addr.max() >= SPECIAL_BIT  # a special event or a bad address somewhere
    if rare:
        not_dvs = addr >> ADDRESS_BITS != 0
        if not_dvs.any():
            bad = int(not_dvs.argmax())
            addr = addr[:bad]
    n = len(addr)
    if n == 0:
        return 0, bad
    ts = words[:n, 1].astype(np.uint64)
    first_wraps = ts[0] + HALF_WRAP < state[_S_PREV]
    offset: np.ndarray | np.uint64 = state[_S_OFFSET]
    if first_wraps or ts.max() - ts.min() > HALF_WRAP:  # else no timestamp is 2^31 below the one before
        wrapped = np.empty(n, dtype=bool)
        wrapped[0] = first_wraps
        np.less(ts[1:] + HALF_WRAP, ts[:-1], out=wrapped[1:])
        offsets = state[_S_OFFSET] + np.cumsum(wrapped, dtype=np.uint64) * np.uint64(TIMESTAMP_WRAP)
        state[_S_OFFSET] = offsets[-1]
        offset = offsets
    state[_S_PREV] = ts[-1]
    if rare:
        special = (addr & SPECIAL_BIT) != 0
        state[_S_SPECIAL] += np.uint64(np.count_nonzero(special))
        keep = ~special
        addr, ts = addr[keep], ts[keep]
        if isinstance(offset, np.ndarray):
            offset = offset[keep]
    k = len(addr)
    np.take(_event_table(), addr, axis=0, mode="clip", out=out[:k])  # addresses are < 2^16 here
    np.add(ts, offset, out=out[:k, 0])
    return k, bad


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
        out = np.empty(whole // RECORD_BYTES, dtype=EVENT_DTYPE)  # _decode writes every byte
        n, bad = _decode(np.frombuffer(data, dtype=">u4", count=whole // 4), event_words(out), state)
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
