"""Decode a byte stream block by block, carrying partial records over to the next block.

Shared by the readers whose records do not line up with block boundaries
(variable-length records, packets) and by fixed-size ones alike. :func:`walk`
reads the file a block at a time, puts in front of each block the bytes the
previous one left unconsumed, and hands the buffer to the format's *decode step*.
A step decodes every whole record it can and returns a :class:`Step`: the events,
how many bytes it consumed, and the damage it found, if any. Bytes still
unconsumed at the end of the file are a truncated record: ``truncated(offset,
n_bytes)`` builds the error that says what was expected there.

Memory stays bounded by the block size plus one partial record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from emulator.io.base import Recording, RecordingError, read_blocks
from proto.events import Events

Bytes = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Step:
    """What a decode step made of one buffer."""

    events: Events
    consumed: int
    """Bytes from the start of the buffer that are fully decoded (the rest is carried over)."""
    damage: RecordingError | None = None


DecodeStep = Callable[[Bytes, int], Step]
"""``decode(buffer, file_offset_of_buffer) -> Step``."""

Truncation = Callable[[int, int], RecordingError]
"""``truncated(file_offset, n_bytes) -> error`` for a partial record at the end of the file."""


def walk(
    path: Path,
    start: int,
    block_bytes: int,
    chunk_events: int,
    decode: DecodeStep,
    truncated: Truncation,
    rec: Recording,
) -> Iterator[Events]:
    """Yield chunks of at most ``chunk_events`` events decoded from ``path[start:]``.

    On damage (or a truncated tail) the error goes to ``rec.damage`` after the
    last good events are yielded; :func:`emulator.io.base.build` raises it unless lenient.
    """
    carry: Bytes = np.zeros(0, dtype=np.uint8)
    tail_offset = start
    for block_offset, data in read_blocks(path, start, block_bytes, 1):
        block = np.frombuffer(data, dtype=np.uint8)
        buf = np.concatenate((carry, block)) if carry.size else block
        buf_offset = block_offset - carry.size
        step = decode(buf, buf_offset)
        yield from split(step.events, chunk_events)
        if step.damage is not None:
            rec.damage = step.damage
            return
        carry = buf[step.consumed :]
        tail_offset = buf_offset + step.consumed
    if carry.size:
        rec.damage = truncated(tail_offset, int(carry.size))


def split(events: Events, chunk_events: int) -> Iterator[Events]:
    """Non-empty slices of at most ``chunk_events`` events."""
    for i in range(0, len(events), chunk_events):
        yield events[i : i + chunk_events]
