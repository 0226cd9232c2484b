"""What every recording reader shares: metadata, the error type, chunked reading.

A reader is a module with two functions:

* ``probe(head: bytes, path: Path) -> bool`` — does this file look like my format?
  ``head`` is the file's first ``PROBE_BYTES`` bytes; decide by content, use the
  extension only to break ties between formats with no magic bytes.
* ``open_(path: Path, chunk_events: int, lenient: bool) -> Recording`` — parse the
  header and return a :class:`Recording` whose ``chunks`` iterator yields event
  arrays of at most ``chunk_events`` events, reading the file a block at a time
  (bounded memory however large the file is).

Damage (a truncated or corrupt file) raises :class:`RecordingError` naming the
file, the byte offset and what was expected there. With ``lenient=True`` a reader
instead stops at the damage: every event before it is still yielded, and the error
is kept in ``Recording.damage`` so the caller can report it — nothing is lost
silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from proto.events import Events, concat_events

PROBE_BYTES = 4096
"""How much of a file format detection looks at."""

DEFAULT_CHUNK_EVENTS = 1 << 20
"""Events per chunk when the caller does not say: 16 MiB of events, a few ms of work."""


class RecordingError(ValueError):
    """A recording that cannot be read as its format says.

    Carries ``path``, ``offset`` (byte offset in the file where the damage starts,
    or ``None`` when no offset applies) and ``expected`` (what a valid file has
    there), plus ``found`` (what was there instead) when known.
    """

    def __init__(self, path: Path | str, offset: int | None, expected: str, found: str = "") -> None:
        self.path = Path(path)
        self.offset = offset
        self.expected = expected
        self.found = found
        where = f" at byte offset {offset}" if offset is not None else ""
        got = f", found {found}" if found else ""
        super().__init__(f"{self.path}{where}: expected {expected}{got}")


@dataclass(frozen=True)
class Label:
    """One labelled span of a recording (e.g. a DVS128 Gesture ``_labels.csv`` row)."""

    label: int
    t_start_us: int
    t_end_us: int


@dataclass(frozen=True)
class RecordingInfo:
    """What a reader knows about a recording before (and after) reading its events.

    ``time_origin`` says what ``t = 0`` means for this file's timestamps, e.g.
    ``"unix epoch"`` (AEDAT 4) or ``"device clock"`` (counters that start at an
    arbitrary value when the camera powers up). Timestamps are never shifted.
    """

    path: Path
    format: str
    width: int
    height: int
    time_origin: str
    header: dict[str, str] = field(default_factory=dict)
    labels: tuple[Label, ...] = ()


@dataclass
class Recording:
    """An opened recording: metadata plus a one-shot iterator of event chunks.

    ``damage`` is set (instead of raising) when the reader was opened leniently
    and stopped at a truncated or corrupt part of the file.
    """

    info: RecordingInfo
    chunks: Iterator[Events]
    damage: RecordingError | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    """Records skipped on purpose, by reason (e.g. special/trigger events), never silently."""

    def __iter__(self) -> Iterator[Events]:
        return self.chunks


Prober = Callable[[bytes, Path], bool]
Opener = Callable[[Path, int, bool], Recording]


def build(info: RecordingInfo, events: Callable[[Recording], Iterator[Events]], lenient: bool) -> Recording:
    """Make a :class:`Recording` whose chunks come from ``events(recording)``.

    The ``events`` generator yields decoded chunks, and on damage stores a
    :class:`RecordingError` in ``recording.damage`` and returns. Unless ``lenient``,
    that error is raised after the last good chunk.
    """
    rec = Recording(info, iter(()))
    rec.chunks = _guard(events(rec), rec, lenient)
    return rec


def _guard(chunks: Iterator[Events], rec: Recording, lenient: bool) -> Iterator[Events]:
    yield from chunks
    if rec.damage is not None and not lenient:
        raise rec.damage


def read_blocks(path: Path, start: int, block_bytes: int, record_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, data)`` blocks of whole records from ``start`` to the end of the file.

    Each block holds a multiple of ``record_bytes`` bytes, except possibly the last,
    whose leftover tail (a truncated record) the caller turns into an error.
    """
    block = max(record_bytes, block_bytes - block_bytes % record_bytes)
    with path.open("rb") as f:
        f.seek(start)
        offset = start
        while True:
            data = f.read(block)
            if not data:
                return
            yield offset, data
            offset += len(data)


def concat(chunks: Iterator[Events] | list[Events]) -> Events:
    """All chunks as one array (an empty event array when there are none)."""
    return concat_events(list(chunks))
