"""Prophesee DAT recordings (ATIS / Gen1 datasets such as N-CARS and Gen1 Automotive).

Layout: a ``%`` text header (:mod:`emulator.io.percent_header`; e.g. ``% Data file
containing N9Chronocam7Event2dE events``, ``% Version 2``, ``% Date …``, sometimes
``% Width``/``% Height`` or ``% geometry WxH``), then one byte event type and one
byte event size (8), then 8-byte little-endian records: uint32 t (µs), uint32 data.

========= ============= ============= ==============
version   x             y             p (1 = ON)
========= ============= ============= ==============
2         bits 0–13     bits 14–27    bits 28–31
1         bits 0–8      bits 9–16     bits 17–20
========= ============= ============= ==============

Only change-detection events are read: types 0x00 (Event2d) and 0x0C (EventCD);
any other type (e.g. 0x0E external triggers) is refused by name. A missing
``% Version`` line means version 2 (what faery assumes too).

**Resolution**: from the header when it says; otherwise 304×240, the ATIS / Gen1
array that N-CARS and the other DAT datasets were recorded with.
**Orientation**: y = 0 is the top row, as Prophesee stores it.
**Timestamps**: 32-bit µs counters are unwrapped (a backwards jump of more than
2^31 µs adds 2^32), so t is monotonic across the ~71-minute wrap. Time origin:
``t = 0`` is the start of the recording (Prophesee's recorders reset the clock).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from emulator.io.base import Recording, RecordingError, RecordingInfo, build, pack_xyp
from emulator.io.percent_header import parse_percent_header
from emulator.io.walk import Bytes, Step, walk
from proto.events import EVENT_DTYPE, Events, event_words

FORMAT = "dat"
EXTENSION = ".dat"
RECORD_BYTES = 8
CD_TYPES = {0x00: "Event2d", 0x0C: "EventCD"}
DEFAULT_WIDTH, DEFAULT_HEIGHT = 304, 240
"""ATIS / Prophesee Gen1, the sensor of N-CARS and Gen1 Automotive (used when the header has no size)."""
TIMESTAMP_WRAP = 1 << 32
TIME_ORIGIN = "recording start"

# (x bits, y bits) per DAT version; p is the 4 bits above y
FIELD_BITS = {"1": (9, 8), "2": (14, 14)}

# decoder state slots (carried from block to block)
_S_OFFSET, _S_PREV = 0, 1


@dataclass(frozen=True)
class Layout:
    """What the header says about the records."""

    version: str
    width: int
    height: int
    data_offset: int
    """Where the first record starts (after the header and the type/size bytes)."""


def probe(head: bytes, path: Path) -> bool:
    if not head.startswith(b"%"):
        return False
    text = head.split(b"\n", 1)[0]
    return b"Data file containing" in text or path.suffix.lower() == EXTENSION


@numba.njit(cache=True, nogil=True)
def _decode(
    raw: np.ndarray, out: np.ndarray, state: np.ndarray, x_bits: int, y_bits: int, width: int, height: int
) -> tuple[int, int]:
    """Decode the whole records of ``raw`` into ``out`` (event words); returns ``(n_events, bad_record)`` (−1: none bad)."""
    t_off = state[_S_OFFSET]
    prev = state[_S_PREV]
    x_mask = (1 << x_bits) - 1
    y_mask = (1 << y_bits) - 1
    for i in range(raw.shape[0] // RECORD_BYTES):
        b = i * RECORD_BYTES
        ts = np.int64(raw[b]) | np.int64(raw[b + 1]) << 8 | np.int64(raw[b + 2]) << 16 | np.int64(raw[b + 3]) << 24
        data = (
            np.int64(raw[b + 4]) | np.int64(raw[b + 5]) << 8 | np.int64(raw[b + 6]) << 16 | np.int64(raw[b + 7]) << 24
        )
        x = data & x_mask
        y = (data >> x_bits) & y_mask
        p = (data >> (x_bits + y_bits)) & 0xF
        if x >= width or y >= height or p > 1:
            state[_S_OFFSET] = t_off
            state[_S_PREV] = prev
            return i, i
        if ts + (1 << 31) < prev:
            t_off += TIMESTAMP_WRAP
        prev = ts
        out[i, 0] = ts + t_off
        out[i, 1] = pack_xyp(x, y, p)
    state[_S_OFFSET] = t_off
    state[_S_PREV] = prev
    return raw.shape[0] // RECORD_BYTES, -1


def read_layout(path: Path) -> tuple[Layout, dict[str, str]]:
    """Parse the header and the type/size bytes; refuse what this reader cannot decode."""
    offset, header = parse_percent_header(path)
    with path.open("rb") as f:
        f.seek(offset)
        type_size = f.read(2)
    if len(type_size) < 2:
        raise RecordingError(
            path, offset, "2 bytes (event type, event size) after the % header", f"{len(type_size)} bytes"
        )
    event_type, event_size = type_size
    if event_type not in CD_TYPES:
        raise RecordingError(path, offset, "event type 0x00 (Event2d) or 0x0C (EventCD)", f"0x{event_type:02x}")
    if event_size != RECORD_BYTES:
        raise RecordingError(path, offset + 1, f"event size {RECORD_BYTES}", str(event_size))
    version = header.get("Version", "2").split(".")[0]
    if version not in FIELD_BITS:
        raise RecordingError(path, 0, "% Version 1 or 2", header.get("Version", ""))
    width, height = _size(path, header)
    return Layout(version, width, height, offset + 2), header


def _size(path: Path, header: dict[str, str]) -> tuple[int, int]:
    width, height = header.get("Width"), header.get("Height")
    if width is None and "geometry" in header:
        width, _, height = header["geometry"].partition("x")
    if width is None or height is None:
        return DEFAULT_WIDTH, DEFAULT_HEIGHT
    try:
        return int(width), int(height)
    except ValueError as exc:
        raise RecordingError(
            path, 0, "integer % Width / % Height (or % geometry WxH)", f"{width!r} x {height!r}"
        ) from exc


def _step(path: Path, layout: Layout, state: np.ndarray, raw: Bytes, offset: int) -> Step:
    out = np.zeros(raw.size // RECORD_BYTES, dtype=EVENT_DTYPE)
    x_bits, y_bits = FIELD_BITS[layout.version]
    n, bad = _decode(raw, event_words(out), state, x_bits, y_bits, layout.width, layout.height)
    if bad < 0:
        return Step(out, n * RECORD_BYTES)
    b = bad * RECORD_BYTES
    data = int.from_bytes(raw[b + 4 : b + 8].tobytes(), "little")
    x, y, p = data & ((1 << x_bits) - 1), (data >> x_bits) & ((1 << y_bits) - 1), data >> (x_bits + y_bits)
    error = RecordingError(
        path, offset + b, f"an event with x < {layout.width}, y < {layout.height}, p 0 or 1", f"x={x}, y={y}, p={p}"
    )
    return Step(out[:n], b, error)


def _truncated(path: Path, offset: int, n_bytes: int) -> RecordingError:
    return RecordingError(
        path, offset, f"an {RECORD_BYTES}-byte record (uint32 t, uint32 data)", f"{n_bytes} trailing bytes"
    )


def _events(path: Path, layout: Layout, chunk_events: int, rec: Recording) -> Iterator[Events]:
    state = np.zeros(2, dtype=np.int64)
    yield from walk(
        path,
        layout.data_offset,
        chunk_events * RECORD_BYTES,
        chunk_events,
        lambda raw, offset: _step(path, layout, state, raw, offset),
        lambda offset, n: _truncated(path, offset, n),
        rec,
    )


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    layout, header = read_layout(path)
    info = RecordingInfo(path, FORMAT, layout.width, layout.height, TIME_ORIGIN, header)
    return build(info, lambda rec: _events(path, layout, chunk_events, rec), lenient)
