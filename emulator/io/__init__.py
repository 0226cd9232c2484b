"""Recording readers: every supported file format, detected by content.

``open_recording(path)`` returns a :class:`~emulator.io.base.Recording` whose
``chunks`` yield event arrays in bounded memory; ``read_recording(path)`` reads
the whole file into one array. See :mod:`emulator.io.base` for the reader contract.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from emulator.io import aedat2, aedat4, aedat31, dat, eventstream, evt2, evt3, nmnist, speck_npz, tonic_npy
from emulator.io.base import (
    DEFAULT_CHUNK_EVENTS,
    PROBE_BYTES,
    Label,
    Recording,
    RecordingError,
    RecordingInfo,
    concat,
)
from proto.events import Events

READERS: tuple[ModuleType, ...] = (
    aedat4,
    aedat2,
    aedat31,
    eventstream,
    evt3,
    evt2,
    dat,
    speck_npz,
    tonic_npy,
    nmnist,
)
"""Readers in probing order: formats with magic bytes first, guessers last."""

__all__ = [
    "DEFAULT_CHUNK_EVENTS",
    "READERS",
    "Label",
    "Recording",
    "RecordingError",
    "RecordingInfo",
    "detect_format",
    "open_recording",
    "read_recording",
]


def _reader_for(path: Path) -> ModuleType:
    try:
        with path.open("rb") as f:
            head = f.read(PROBE_BYTES)
    except OSError as exc:
        raise RecordingError(path, None, "a readable file", exc.strerror or str(exc)) from exc
    for reader in READERS:
        if reader.probe(head, path):
            return reader
    names = ", ".join(r.FORMAT for r in READERS)
    raise RecordingError(path, 0, f"the start of a known recording format ({names})", repr(head[:16]))


def detect_format(path: Path | str) -> str:
    """The format name of ``path``, decided by its content."""
    return str(_reader_for(Path(path)).FORMAT)


def open_recording(path: Path | str, *, chunk_events: int = DEFAULT_CHUNK_EVENTS, lenient: bool = False) -> Recording:
    """Open ``path`` for chunked reading (see the module docstring of :mod:`emulator.io.base`)."""
    if chunk_events < 1:
        raise ValueError(f"chunk_events must be >= 1, got {chunk_events}")
    p = Path(path)
    opener = _reader_for(p).open_
    rec: Recording = opener(p, chunk_events, lenient)
    return rec


def read_recording(path: Path | str, *, lenient: bool = False) -> tuple[Events, Recording]:
    """Read a whole recording: ``(events, recording)`` (``recording.damage`` set if lenient)."""
    rec = open_recording(path, lenient=lenient)
    return concat(rec.chunks), rec
