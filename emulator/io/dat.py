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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator.io.base import Recording, RecordingError, RecordingInfo, build
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

Decode = Callable[..., tuple[int, int]]
"""The numba record decoder (:func:`emulator.io.kernels.dat.decode`)."""


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


def _step(path: Path, layout: Layout, state: np.ndarray, decode: Decode, raw: Bytes, offset: int) -> Step:
    out = np.zeros(raw.size // RECORD_BYTES, dtype=EVENT_DTYPE)
    x_bits, y_bits = FIELD_BITS[layout.version]
    n, bad = decode(raw, event_words(out), state, x_bits, y_bits, layout.width, layout.height)
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
    from emulator.io.kernels.dat import decode  # numba: only once decoding starts

    state = np.zeros(2, dtype=np.int64)
    yield from walk(
        path,
        layout.data_offset,
        chunk_events * RECORD_BYTES,
        chunk_events,
        lambda raw, offset: _step(path, layout, state, decode, raw, offset),
        lambda offset, n: _truncated(path, offset, n),
        rec,
    )


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    layout, header = read_layout(path)
    info = RecordingInfo(path, FORMAT, layout.width, layout.height, TIME_ORIGIN, header)
    return build(info, lambda rec: _events(path, layout, chunk_events, rec), lenient)
