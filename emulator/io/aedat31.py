"""AEDAT 3.1 recordings from cAER / libcaer (the DVS128 Gesture dataset).

Layout: ASCII header lines starting with ``#`` — the first ``#!AER-DAT3.1``, the
last ``#!END-HEADER`` — then event packets. Each packet is a 28-byte
little-endian header (int16 eventType, int16 eventSource, int32 eventSize,
int32 eventTSOffset, int32 eventTSOverflow, int32 eventCapacity, int32
eventNumber, int32 eventValid) followed by eventCapacity × eventSize bytes.

Polarity packets (eventType 1, eventSize 8) hold uint32 data + int32 timestamp
(µs): data bit 0 valid, bit 1 polarity (1 = ON), bits 2–16 y, bits 17–31 x.
The full timestamp is ``(eventTSOverflow << 31) | timestamp``. Invalid events
are skipped and counted in ``Recording.dropped["invalid"]``; packets of other
types are skipped, their events counted in ``dropped["packet_type_<N>"]``.

**Orientation**: AEDAT 3.1 puts (0, 0) at the *upper* left, like OpenCV — the
one change from 3.0, whose origin was the lower left (iniVation's AEDAT 3.0
notes); libcaer's DVS128 driver mirrors x and y from the chip's addresses to get
there. So x and y are kept as stored, and y = 0 is the top row.

**Resolution**: ``dvsSizeX``/``dvsSizeY`` when the header carries the source's
XML info, else the camera named on the ``#Source`` line, else the DVS128's 128×128.

**Damage**: a packet whose header is implausible or whose events run past the
end of the file is damage at the packet header's offset (so a truncated file
keeps every event of the packets before the cut). An address outside the
sensor or a negative timestamp is damage at that event's offset.

**Labels**: DVS128 Gesture's ``<name>_labels.csv`` beside the file (header
``class,startTime_usec,endTime_usec``; classes 1–11 as in the CSV, times in the
events' clock) becomes ``RecordingInfo.labels``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emulator.io.base import Label, Recording, RecordingError, RecordingInfo, build
from emulator.io.walk import Bytes, Step, walk
from proto.events import EVENT_DTYPE, Events, event_words

FORMAT = "aedat3.1"
MAGIC = b"#!AER-DAT3.1"
END_HEADER = b"#!END-HEADER"
MAX_HEADER_LINE = 1 << 20
PACKET_HEADER = struct.Struct("<hhiiiiii")
PACKET_HEADER_BYTES = PACKET_HEADER.size  # 28
POLARITY_TYPE = 1
POLARITY_SIZE = 8
POLARITY_TS_OFFSET = 4
TS_OVERFLOW_SHIFT = 31
ADDRESS_MASK = 0x7FFF
"""x and y are 15-bit fields."""
MAX_EVENT_TYPES = 1 << 15
"""eventType is an int16: counts of skipped packets are kept per non-negative type."""
DEFAULT_SIZE = (128, 128)
SOURCE_SIZES = {"DVS128": (128, 128), "DAVIS240": (240, 180), "DAVIS346": (346, 260), "DVXplorer": (640, 480)}
LABELS_SUFFIX = "_labels.csv"
LABELS_HEADER = "class,startTime_usec,endTime_usec"
TIME_ORIGIN = "device clock"

# decoder state slots (carried from block to block)
_S_LEFT, _S_TYPE, _S_OVERFLOW, _S_INVALID = 0, 1, 2, 3
# error codes of the decoder
_E_TYPE, _E_SIZE, _E_COUNTS, _E_OVERFLOW, _E_PAST_END, _E_X, _E_Y, _E_TS = 1, 2, 3, 4, 5, 6, 7, 8


def probe(head: bytes, path: Path) -> bool:
    return head.startswith(MAGIC)


def read_header(path: Path) -> tuple[int, dict[str, str], list[str]]:
    """``(data_offset, fields, lines)`` of the ``#`` header; the offset is just past ``#!END-HEADER``."""
    fields: dict[str, str] = {}
    lines: list[str] = []
    offset = 0
    with path.open("rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise RecordingError(path, 0, "the magic line #!AER-DAT3.1")
        f.seek(0)
        while True:
            line = f.readline(MAX_HEADER_LINE)
            if not line.startswith(b"#"):
                raise RecordingError(path, offset, "a '#' header line or #!END-HEADER", repr(line[:16]))
            offset += len(line)
            if line.rstrip() == END_HEADER:
                return offset, fields, lines
            text = line.decode("latin-1").strip().lstrip("#")
            lines.append(text)
            key, sep, value = text.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())


def sensor_size(lines: list[str]) -> tuple[int, int]:
    """The DVS array size the header states (see the module docstring), else 128×128."""
    text = "\n".join(lines)
    x = re.search(r"dvsSizeX\D{0,40}?(\d+)", text)
    y = re.search(r"dvsSizeY\D{0,40}?(\d+)", text)
    if x and y:
        return int(x[1]), int(y[1])
    for line in lines:
        if line.startswith("Source"):
            name = line.partition(":")[2].strip()
            for prefix, size in SOURCE_SIZES.items():
                if name.startswith(prefix):
                    return size
    return DEFAULT_SIZE


def read_labels(path: Path) -> tuple[Label, ...]:
    """The labelled spans of ``<name>_labels.csv`` beside ``path`` (none if there is no such file)."""
    csv_path = path.with_name(path.stem + LABELS_SUFFIX)
    if not csv_path.is_file():
        return ()
    labels = []
    offset = 0
    with csv_path.open("rb") as f:
        for number, raw in enumerate(f):
            line = raw.decode("latin-1").strip()
            if number == 0 and line != LABELS_HEADER:
                raise RecordingError(csv_path, 0, f"the header line {LABELS_HEADER}", repr(line))
            if number and line:
                labels.append(_label(csv_path, offset, line))
            offset += len(raw)
    return tuple(labels)


def _label(csv_path: Path, offset: int, line: str) -> Label:
    try:
        label, start, end = (int(v) for v in line.split(","))
    except ValueError as exc:
        raise RecordingError(
            csv_path, offset, "a row of three integers: class,startTime_usec,endTime_usec", repr(line)
        ) from exc
    return Label(label, start, end)


def _describe(error: int, buf: Bytes, pos: int, bytes_to_end: int, width: int, height: int) -> tuple[str, str]:
    """(expected, found) for a decoder error code."""
    if error in (_E_X, _E_Y, _E_TS):
        data, ts = struct.unpack_from("<Ii", buf.data, pos)
        found = f"x={(data >> 17) & ADDRESS_MASK}, y={(data >> 2) & ADDRESS_MASK}, timestamp={ts}"
        return f"a polarity event with x < {width}, y < {height} and a non-negative timestamp", found
    etype, _, size, ts_offset, overflow, capacity, number, valid = PACKET_HEADER.unpack_from(buf.data, pos)
    if error == _E_TYPE:
        return "a packet header with a non-negative eventType", f"eventType {etype}"
    if error == _E_SIZE:
        return (
            "a positive eventSize (8, with eventTSOffset 4, for polarity packets)",
            f"eventType {etype}, eventSize {size}, eventTSOffset {ts_offset}",
        )
    if error == _E_COUNTS:
        return "0 <= eventValid <= eventNumber <= eventCapacity", f"{valid}, {number}, {capacity}"
    if error == _E_OVERFLOW:
        return "a non-negative eventTSOverflow", str(overflow)
    return (
        f"eventCapacity x eventSize = {capacity * size} bytes of events after the packet header",
        f"{bytes_to_end - PACKET_HEADER_BYTES} bytes to the end of the file",
    )


class _Decoder:
    """One reading pass: the decoder's state and the per-buffer step."""

    def __init__(self, path: Path, width: int, height: int, rec: Recording) -> None:
        self.path, self.width, self.height, self.rec = path, width, height, rec
        self.file_bytes = path.stat().st_size
        self.state = np.zeros(4, dtype=np.int64)
        self.skipped = np.zeros(MAX_EVENT_TYPES, dtype=np.int64)
        from emulator.io.kernels import aedat31 as kernels  # numba: only once decoding starts

        self._decode = kernels.decode

    def step(self, buf: Bytes, offset: int) -> Step:
        out = np.zeros(buf.size // POLARITY_SIZE + 1, dtype=EVENT_DTYPE)
        to_end = self.file_bytes - offset
        n, consumed, error = self._decode(
            buf, to_end, event_words(out), self.state, self.skipped, self.width, self.height
        )
        self._count_dropped()
        if not error:
            return Step(out[:n], consumed)
        expected, found = _describe(error, buf, consumed, to_end - consumed, self.width, self.height)
        return Step(out[:n], consumed, RecordingError(self.path, offset + consumed, expected, found))

    def truncated(self, offset: int, n_bytes: int) -> RecordingError:
        return RecordingError(self.path, offset, f"a {PACKET_HEADER_BYTES}-byte packet header", f"{n_bytes} bytes")

    def _count_dropped(self) -> None:
        self.rec.dropped["invalid"] = int(self.state[_S_INVALID])
        for etype in np.flatnonzero(self.skipped):
            self.rec.dropped[f"packet_type_{etype}"] = int(self.skipped[etype])


def _events(path: Path, start: int, width: int, height: int, chunk_events: int, rec: Recording) -> Iterator[Events]:
    decoder = _Decoder(path, width, height, rec)
    yield from walk(path, start, chunk_events * POLARITY_SIZE, chunk_events, decoder.step, decoder.truncated, rec)


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    start, fields, lines = read_header(path)
    fmt = fields.get("Format", "RAW")
    if fmt != "RAW":
        raise RecordingError(path, 0, "#Format: RAW (the only AEDAT 3.1 format read)", fmt)
    width, height = sensor_size(lines)
    info = RecordingInfo(path, FORMAT, width, height, TIME_ORIGIN, fields, read_labels(path))
    return build(info, lambda rec: _events(path, start, width, height, chunk_events, rec), lenient)
