"""Prophesee RAW files in EVT 2.0 — plus the parts every RAW (EVT 2.0 / 3.0) reader shares.

Layout: an ASCII header of lines that start with ``%`` (``% evt 2.0`` or
``% format EVT2;height=480;width=640``), then little-endian 32-bit words whose top
4 bits give the word type:

====== ============= ==========================================================
type   name          payload
====== ============= ==========================================================
0x0    CD_OFF        bits 27–22 timestamp bits 5–0, 21–11 x, 10–0 y
0x1    CD_ON         as CD_OFF, polarity ON
0x8    EV_TIME_HIGH  bits 27–0 = timestamp bits 33–6
0xA    EXT_TRIGGER   external trigger (counted in ``dropped["trigger"]``)
0xE    OTHERS        vendor data (counted in ``dropped["other"]``)
0xF    CONTINUED     continuation of OTHERS (counted in ``dropped["other"]``)
====== ============= ==========================================================

``t = wraps * 2^34 + (time_high << 6 | t_low)`` µs on the camera's clock (``time_origin``
"device clock"); a TIME_HIGH lower than the previous one is the 34-bit counter
wrapping (~4.8 h) and adds 2^34. Any other word type is corrupt.

**Geometry** (shared with EVT 3.0): ``% geometry WxH``, else ``width=``/``height=``
in the ``% format`` line, else the sensor generation named by ``% plugin_name``
(:data:`PLUGIN_GEOMETRY`), else :data:`ASSUMED_GEOMETRY` with
``header["geometry_source"] = "assumed"`` (the largest observed address is not known
until the end, which bounded-memory streaming never waits for). An event outside
the geometry is corrupt: :class:`RecordingError` at the word's byte offset.

Words are decoded by a numba state machine (:mod:`emulator.io.kernels.evt2`, imported only
once decoding starts), a block at a time; the state (time
high, wraps, counters) is carried from block to block.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np

from emulator.io.base import Recording, RecordingError, RecordingInfo, build, read_blocks
from emulator.io.percent_header import parse_percent_header, split_line
from proto.events import EVENT_DTYPE, Events, event_words

FORMAT = "evt2"
WORD_BYTES = 4
BLOCK_BYTES = 1 << 20
"""Bytes read and decoded per numba call (read at call time, so tests can shrink it)."""
TIME_HIGH_WRAP = 1 << 34
"""EV_TIME_HIGH holds timestamp bits 33–6: the µs counter wraps every 2^34 µs."""

CD_OFF, CD_ON, TIME_HIGH, EXT_TRIGGER, OTHERS, CONTINUED = 0x0, 0x1, 0x8, 0xA, 0xE, 0xF

PLUGIN_GEOMETRY: tuple[tuple[str, tuple[int, int]], ...] = (
    ("genx320", (320, 320)),  # GenX320: 320x320
    ("gen3", (640, 480)),  # Gen3 / Gen3.1 VGA (hal_plugin_gen3_fx3, hal_plugin_gen31_*): 640x480
    ("gen4", (1280, 720)),  # Gen4 / Gen4.1 HD (hal_plugin_gen41_evk3): 1280x720
    ("imx636", (1280, 720)),  # Sony IMX636 (= Gen4.1 HD): 1280x720
)
"""Sensor size by a substring of the header's ``plugin_name``, first match wins."""
ASSUMED_GEOMETRY = (1280, 720)
"""Used when the header names no size and no known sensor: the HD array of current cameras."""

# decoder state slots (carried from block to block)
_S_HIGH, _S_WRAPS, _S_TRIGGER, _S_OTHER = 0, 1, 2, 3

Decoder = Callable[[np.ndarray, int, np.ndarray, int, int, np.ndarray, int, int], tuple[int, int, int]]
"""``decode(words, pos, out, k, cap, state, width, height) -> (k, pos, bad)``: decode words
from ``pos`` into ``out[k:]`` (an ``event_words`` view: two uint64 stores per event, padding
zeroed) until ``k >= cap`` or the words end; ``bad`` is −1 or the index of a corrupt word
(decoding stops before it)."""


@dataclass(frozen=True)
class RawEncoding:
    """What the shared block loop needs to know about one RAW encoding."""

    name: str
    kernels: str
    """The module whose ``decode`` is the numba :data:`Decoder` (imported only when decoding)."""
    word_bytes: int
    slack: int
    """The most events one word emits (spare room past a chunk's end)."""
    state_slots: int
    trigger_slot: int
    other_slot: int


def header_fields(head: bytes) -> dict[str, str]:
    """The ``%`` header fields found in ``head`` (the first bytes of a file)."""
    fields: dict[str, str] = {}
    for line in head.split(b"\n")[:-1]:
        if not line.startswith(b"%"):
            break
        key, value = split_line(line)
        fields.setdefault(key, value)
        if line.rstrip() == b"% end":
            break
    return fields


def raw_format(fields: dict[str, str]) -> str:
    """``"evt2"``/``"evt3"`` as the header names it (``evt`` or ``format`` line), else ``""``."""
    evt = fields.get("evt", "").strip()
    name = fields.get("format", "").split(";", 1)[0].strip().upper()
    if evt in ("2", "2.0") or name == "EVT2":
        return "evt2"
    if evt in ("3", "3.0") or name == "EVT3":
        return "evt3"
    return ""  # not named, or another encoding (EVT 2.1, EVT 4.0, ...)


def probe(head: bytes, path: Path) -> bool:
    fields = header_fields(head)
    if not fields:
        return False
    kind = raw_format(fields)
    # a RAW file whose header names no encoding at all: the extension breaks the tie (EVT 2.0 was the default)
    unnamed = "evt" not in fields and "format" not in fields
    return kind == FORMAT or (unnamed and path.suffix.lower() == ".raw")


def geometry(header: dict[str, str]) -> tuple[int, int, str]:
    """``(width, height, source)`` of the sensor; see the module docstring for the order."""
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", header.get("geometry", ""))
    if m:
        return int(m[1]), int(m[2]), "geometry"
    opts = dict(p.split("=", 1) for p in header.get("format", "").split(";")[1:] if "=" in p)
    if opts.get("width", "").isdigit() and opts.get("height", "").isdigit():
        return int(opts["width"]), int(opts["height"]), "format"
    plugin = header.get("plugin_name", "").lower()
    for key, (w, h) in PLUGIN_GEOMETRY:
        if key in plugin:
            return w, h, "plugin_name"
    return *ASSUMED_GEOMETRY, "assumed"


def open_raw(path: Path, fmt: str) -> tuple[int, RecordingInfo]:
    """Parse a RAW header: ``(data offset, info)``; refuses a header that names another format."""
    start, header = parse_percent_header(path)
    named = " ".join(f"{k} {header[k]}" for k in ("evt", "format") if k in header)
    if named and raw_format(header) != fmt:
        raise RecordingError(path, 0, f"a % header for {fmt.upper()}", f"one naming {named}")
    width, height, source = geometry(header)
    header = {**header, "geometry_source": source}
    return start, RecordingInfo(path, fmt, width, height, "device clock", header)


def count_dropped(rec: Recording, state: np.ndarray, enc: RawEncoding) -> None:
    """Copy the decoder's skipped-word counters into ``rec.dropped`` (only those seen)."""
    for name, slot in (("trigger", enc.trigger_slot), ("other", enc.other_slot)):
        if state[slot]:
            rec.dropped[name] = int(state[slot])


def bad_word(path: Path, offset: int, word: int, width: int, height: int, word_bytes: int) -> RecordingError:
    """The error for a corrupt word (unknown type, or an event outside the sensor)."""
    return RecordingError(
        path,
        offset,
        f"an EVT word of a known type with events inside the {width}x{height} sensor",
        f"0x{word:0{2 * word_bytes}x}",
    )


def decode_words(
    path: Path, start: int, info: RecordingInfo, enc: RawEncoding, state: np.ndarray, chunk_events: int
) -> Iterator[tuple[Events, RecordingError | None]]:
    """Run ``enc.decode`` over the file a block at a time; yield ``(full chunk or last events, damage)``.

    ``out`` has ``enc.slack`` spare slots, so a chunk is cut at exactly
    ``chunk_events`` and the overflow starts the next one.
    """
    decode: Decoder = import_module(enc.kernels).decode  # numba: only once decoding starts
    dtype = np.dtype(f"<u{enc.word_bytes}")
    out = np.empty(chunk_events + enc.slack, dtype=EVENT_DTYPE)
    k = 0
    for offset, data in read_blocks(path, start, BLOCK_BYTES, enc.word_bytes):
        words = np.frombuffer(data, dtype=dtype, count=len(data) // enc.word_bytes)
        pos, bad = 0, -1
        while pos < words.shape[0] and bad < 0:
            k, pos, bad = decode(words, pos, event_words(out), k, chunk_events, state, info.width, info.height)
            while k >= chunk_events:
                rest = np.empty(chunk_events + enc.slack, dtype=EVENT_DTYPE)
                event_words(rest)[: k - chunk_events] = event_words(out)[chunk_events:k]  # whole events, padding too
                yield out[:chunk_events], None
                out, k = rest, k - chunk_events
        if bad >= 0:
            word = int(words[bad])
            yield out[:k], bad_word(path, offset + bad * enc.word_bytes, word, info.width, info.height, enc.word_bytes)
            return
        if tail := len(data) % enc.word_bytes:
            err = RecordingError(
                path, offset + len(data) - tail, f"a {enc.word_bytes}-byte word", f"{tail} trailing bytes"
            )
            yield out[:k], err
            return
    yield out[:k], None


def _chunks(
    path: Path, start: int, info: RecordingInfo, enc: RawEncoding, chunk_events: int, rec: Recording
) -> Iterator[Events]:
    """The chunks of a RAW file, with damage and skipped-word counts stored in ``rec``."""
    state = np.zeros(enc.state_slots, dtype=np.int64)
    for events, damage in decode_words(path, start, info, enc, state, chunk_events):
        count_dropped(rec, state, enc)
        if len(events):
            yield events
        if damage is not None:
            rec.damage = damage
            return


def open_encoding(path: Path, enc: RawEncoding, chunk_events: int, lenient: bool) -> Recording:
    """Open a RAW file of encoding ``enc`` (the ``open_`` of both EVT readers)."""
    start, info = open_raw(path, enc.name)
    return build(info, lambda rec: _chunks(path, start, info, enc, chunk_events, rec), lenient)


ENCODING = RawEncoding(FORMAT, "emulator.io.kernels.evt2", WORD_BYTES, 1, 4, _S_TRIGGER, _S_OTHER)


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    return open_encoding(path, ENCODING, chunk_events, lenient)
