"""N-MNIST / N-Caltech101 ``.bin`` recordings (ATIS saccade datasets, Orchard et al. 2015).

Layout: no header; 5-byte records. Byte 0 is x, byte 1 is y, bit 7 of byte 2 the
polarity (1 = ON), bits 6–0 of byte 2 then bytes 3–4 (big-endian) a 23-bit
timestamp in µs. A record with y = 240 marks a timestamp overflow: it is not an
event, and every later timestamp gains 2^23 µs. Overflow records are counted in
``Recording.dropped["overflow"]``.

**Overflow step**: tonic's ``read_mnist_file`` (after Orchard's original
``Read_Ndataset.m``) adds 2^13 µs per overflow record. We add 2^23 µs, the wrap
of a 23-bit counter. No public sample holds an overflow record (the datasets'
saccades last ~300 ms, well under 2^23 µs ≈ 8.4 s), so the two agree on all of them.

**Resolution**: the format does not say. At open, bytes 0 and 1 of every record
are scanned through a memory map (bounded memory): if every event has x < 34 and
y < 34 the file is N-MNIST (34×34), otherwise the ATIS array (304×240, N-Caltech101).

**Orientation**: y = 0 is the top row, as stored (tonic renders the digits and
faces upright that way, and so does this reader).

Time origin: ``t = 0`` is the start of the recording (each sample starts near 0).
No magic bytes: :func:`probe` needs the ``.bin`` extension and a plausible first
few records (y ≤ 240, timestamps not decreasing). It is tried last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from emulator.io.base import Recording, RecordingError, RecordingInfo, build
from emulator.io.walk import Bytes, Step, walk
from proto.events import EVENT_DTYPE, Events, event_words

FORMAT = "nmnist-bin"
EXTENSION = ".bin"
RECORD_BYTES = 5
OVERFLOW_Y = 240
OVERFLOW_US = 1 << 23
"""A 23-bit timestamp wraps every 2^23 µs (see the module docstring on tonic's 2^13)."""
NMNIST_SIZE = 34
ATIS_WIDTH, ATIS_HEIGHT = 304, 240
SCAN_RECORDS = 1 << 20
"""Records per block of the size scan at open."""
TIME_ORIGIN = "recording start"

# decoder state slots (carried from block to block)
_S_OFFSET, _S_OVERFLOWS = 0, 1

Decode = Callable[..., tuple[int, int]]
"""The numba record decoder (:func:`emulator.io.kernels.nmnist.decode`)."""


def probe(head: bytes, path: Path) -> bool:
    if path.suffix.lower() != EXTENSION:
        return False
    raw = np.frombuffer(head, dtype=np.uint8, count=len(head) // RECORD_BYTES * RECORD_BYTES).reshape(-1, RECORD_BYTES)
    y = raw[:, 1]
    if np.any(y > OVERFLOW_Y):
        return False
    ts = (raw[:, 2].astype(np.int64) & 0x7F) << 16 | raw[:, 3].astype(np.int64) << 8 | raw[:, 4]
    before_overflow = int(np.argmax(y == OVERFLOW_Y)) if np.any(y == OVERFLOW_Y) else len(y)
    return bool(np.all(np.diff(ts[:before_overflow]) >= 0))


def sensor_size(path: Path) -> tuple[int, int]:
    """(width, height): 34×34 when every event fits N-MNIST's array, else the ATIS 304×240."""
    n = path.stat().st_size // RECORD_BYTES
    if n == 0:
        return NMNIST_SIZE, NMNIST_SIZE
    records = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, RECORD_BYTES))
    for start in range(0, n, SCAN_RECORDS):  # numpy, a block at a time: opening never loads numba
        block = np.asarray(records[start : start + SCAN_RECORDS])
        x, y = block[:, 0], block[:, 1]
        if np.any(((x >= NMNIST_SIZE) | (y >= NMNIST_SIZE)) & (y != OVERFLOW_Y)):
            return ATIS_WIDTH, ATIS_HEIGHT
    return NMNIST_SIZE, NMNIST_SIZE


def _step(
    path: Path, width: int, height: int, state: np.ndarray, decode: Decode, rec: Recording, raw: Bytes, offset: int
) -> Step:
    out = np.zeros(raw.size // RECORD_BYTES, dtype=EVENT_DTYPE)
    n, bad = decode(raw, event_words(out), state, width, height)
    rec.dropped["overflow"] = int(state[_S_OVERFLOWS])
    if bad < 0:
        return Step(out[:n], raw.size - raw.size % RECORD_BYTES)
    b = bad * RECORD_BYTES
    error = RecordingError(
        path,
        offset + b,
        f"an event with x < {width} and y < {height}, or y = {OVERFLOW_Y} (overflow)",
        f"x={raw[b]}, y={raw[b + 1]}",
    )
    return Step(out[:n], b, error)


def _truncated(path: Path, offset: int, n_bytes: int) -> RecordingError:
    return RecordingError(path, offset, f"a {RECORD_BYTES}-byte record", f"{n_bytes} trailing bytes")


def _events(path: Path, width: int, height: int, chunk_events: int, rec: Recording) -> Iterator[Events]:
    from emulator.io.kernels.nmnist import decode  # numba: only once decoding starts

    state = np.zeros(2, dtype=np.int64)
    yield from walk(
        path,
        0,
        chunk_events * RECORD_BYTES,
        chunk_events,
        lambda raw, offset: _step(path, width, height, state, decode, rec, raw, offset),
        lambda offset, n: _truncated(path, offset, n),
        rec,
    )


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    width, height = sensor_size(path)
    info = RecordingInfo(path, FORMAT, width, height, TIME_ORIGIN)
    return build(info, lambda rec: _events(path, width, height, chunk_events, rec), lenient)
