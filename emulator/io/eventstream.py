"""Event Stream ``.es`` recordings (the Sepia / Tarsier / faery format), DVS type.

Layout: the magic ``Event Stream`` (12 bytes), the version as 3 bytes (major,
minor, patch; major 2 is read here), a type byte (0 generic, 1 DVS, 2 ATIS,
4 color) and, for DVS, uint16 LE width and height. Then a byte-coded stream:

* ``0xFF``: overflow, ``t += 127`` µs, no event;
* ``0xFE``: reset marker, no event;
* any other byte ``b``: ``t += b >> 1``, polarity ``b & 1`` (1 = increase = ON),
  followed by uint16 LE x and uint16 LE y — one event (5 bytes in all).

Only the DVS type is read; the others are refused by name. Time origin:
``t = 0`` at the start of the stream (timestamps are deltas from 0).

**Orientation**: Event Stream puts y = 0 at the *bottom* row (faery's reader
turns it over the same way), so ``y = height − 1 − y_stored`` for an upright image.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from emulator.io.base import Recording, RecordingError, RecordingInfo, build
from emulator.io.walk import Bytes, Step, walk
from proto.events import EVENT_DTYPE, Events, event_words

FORMAT = "es"
MAGIC = b"Event Stream"
MAJOR_VERSION = 2
TYPES = {0: "generic", 1: "DVS", 2: "ATIS", 4: "color"}
DVS_TYPE = 1
HEADER_BYTES = len(MAGIC) + 3 + 1 + 4
EVENT_BYTES = 5
OVERFLOW_BYTE = 0xFF
OVERFLOW_US = 127
RESET_BYTE = 0xFE
TIME_ORIGIN = "recording start"

_S_T = 0  # decoder state slot: running timestamp (carried from block to block)
_E_X, _E_Y = 1, 2  # error codes: x or y outside the sensor

Decode = Callable[..., tuple[int, int, int]]
"""The numba byte-stream decoder (:func:`emulator.io.kernels.eventstream.decode`)."""


def probe(head: bytes, path: Path) -> bool:
    return head.startswith(MAGIC)


def read_header(path: Path) -> tuple[int, int, dict[str, str]]:
    """``(width, height, header)`` of a DVS Event Stream; refuse anything else by name."""
    with path.open("rb") as f:
        head = f.read(HEADER_BYTES)
    if not head.startswith(MAGIC):
        raise RecordingError(path, 0, f"the magic {MAGIC.decode()!r}", repr(head[: len(MAGIC)]))
    if len(head) < len(MAGIC) + 4:
        raise RecordingError(path, len(head), "the version (3 bytes) and type byte", "end of file")
    major, minor, patch, kind = head[len(MAGIC) : len(MAGIC) + 4]
    version = f"{major}.{minor}.{patch}"
    if major != MAJOR_VERSION:
        raise RecordingError(path, len(MAGIC), f"Event Stream version {MAJOR_VERSION}.x.y", version)
    if kind != DVS_TYPE:
        name = TYPES.get(kind, "unknown")
        raise RecordingError(
            path, len(MAGIC) + 3, f"type {DVS_TYPE} (DVS) — the only type read", f"type {kind} ({name})"
        )
    if len(head) < HEADER_BYTES:
        raise RecordingError(path, len(MAGIC) + 4, "uint16 width and height", f"{len(head) - len(MAGIC) - 4} bytes")
    width, height = struct.unpack_from("<HH", head, len(MAGIC) + 4)
    return width, height, {"version": version, "type": TYPES[kind]}


def _step(path: Path, width: int, height: int, state: np.ndarray, decode: Decode, buf: Bytes, offset: int) -> Step:
    out = np.zeros(buf.size // EVENT_BYTES + 1, dtype=EVENT_DTYPE)
    n, consumed, error = decode(buf, event_words(out), state, width, height)
    if not error:
        return Step(out[:n], consumed)
    x, y = struct.unpack_from("<HH", buf.data, consumed + 1)
    damage = RecordingError(path, offset + consumed, f"an event with x < {width} and y < {height}", f"x={x}, y={y}")
    return Step(out[:n], consumed, damage)


def _truncated(path: Path, offset: int, n_bytes: int) -> RecordingError:
    return RecordingError(
        path,
        offset,
        f"a {EVENT_BYTES}-byte event (time/polarity byte, uint16 x, uint16 y)",
        f"{n_bytes} trailing bytes",
    )


def _events(path: Path, width: int, height: int, chunk_events: int, rec: Recording) -> Iterator[Events]:
    from emulator.io.kernels.eventstream import decode  # numba: only once decoding starts

    state = np.zeros(1, dtype=np.int64)
    yield from walk(
        path,
        HEADER_BYTES,
        chunk_events * EVENT_BYTES,
        chunk_events,
        lambda buf, offset: _step(path, width, height, state, decode, buf, offset),
        lambda offset, n: _truncated(path, offset, n),
        rec,
    )


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    width, height, header = read_header(path)
    info = RecordingInfo(path, FORMAT, width, height, TIME_ORIGIN, header)
    return build(info, lambda rec: _events(path, width, height, chunk_events, rec), lenient)
