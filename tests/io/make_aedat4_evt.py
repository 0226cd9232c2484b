"""Test helpers for the AEDAT 4 / EVT 2 / EVT 3 readers and the dv network client.

* :func:`real_file` — re-exported from :mod:`tests.real_data`.
* :func:`sources_events` — the event count SOURCES.txt states for a recording.
* :func:`aedat4_file` / :func:`evts_flatbuffer` — hand-built AEDAT 4 files with
  exactly the packets a test needs (including damaged ones).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import lz4.frame
import numpy as np
import zstandard

from proto.events import Events
from tests.real_data import real_file, source_entry

__all__ = ["real_file"]


def sources_events(relpath: str) -> int:
    """The event count SOURCES.txt gives for ``relpath``."""
    return source_entry(relpath).events


def io_header(xml: str, compression: int = 0, table_position: int = -1) -> bytes:
    """An IOHeader flatbuffer (without its int32 size) laid out as dv-processing does."""
    text = xml.encode() + b"\0"
    vtable = struct.pack("<5H", 10, 20, 4, 8, 16)
    table = struct.pack("<iiqI", 12, compression, table_position, 4)  # string right after the table
    buf = struct.pack("<I", 20) + b"IOHE" + vtable + b"\0\0" + table + struct.pack("<I", len(text) - 1) + text
    return buf + b"\0" * (-len(buf) % 4)


def stream_xml(streams: Sequence[tuple[int, str, int, int]]) -> str:
    """The header XML for ``(id, typeIdentifier, sizeX, sizeY)`` streams (size 0: none)."""
    nodes = []
    for sid, kind, w, h in streams:
        size = f'<attr key="sizeX" type="int">{w}</attr><attr key="sizeY" type="int">{h}</attr>' if w else ""
        nodes.append(
            f'<node name="{sid}" path="/outInfo/{sid}/"><attr key="typeIdentifier" type="string">{kind}</attr>'
            f'<node name="info" path="/outInfo/{sid}/info/">{size}<attr key="source" type="string">TEST</attr></node></node>'
        )
    return f'<dv version="2.0"><node name="outInfo" path="/outInfo/">{"".join(nodes)}</node></dv>'


def evts_flatbuffer(events: Events, count: int | None = None) -> bytes:
    """A size-prefixed EVTS flatbuffer (dv-processing's layout); ``count`` overrides the vector length."""
    n = len(events) if count is None else count
    body = b"EVTS" + b"\0\0" + struct.pack("<3H", 6, 8, 4) + struct.pack("<iII", 6, 4, n) + events.tobytes()
    fb = struct.pack("<I", 16) + body
    return struct.pack("<I", len(fb)) + fb


def compress(buf: bytes, compression: int) -> bytes:
    """``buf`` compressed as AEDAT 4 compression type ``compression`` would store it."""
    if compression in (1, 2):
        out: bytes = lz4.frame.compress(buf)
        return out
    if compression in (3, 4):
        return zstandard.ZstdCompressor().compress(buf)
    return buf


def aedat4_file(
    path: Path,
    packets: Sequence[tuple[int, bytes]],
    *,
    streams: Sequence[tuple[int, str, int, int]] = ((0, "EVTS", 64, 48),),
    compression: int = 0,
    table: bool = True,
) -> list[int]:
    """Write an AEDAT 4 file of ``(streamId, payload)`` packets; return each packet's byte offset.

    Payloads are written as given (compress them first). With ``table`` a dummy
    file data table follows the packets and the header points at it.
    """
    head_len = 14 + 4 + len(io_header(stream_xml(streams), compression, 0))
    offsets, body = [], b""
    for sid, payload in packets:
        offsets.append(head_len + len(body))
        body += struct.pack("<ii", sid, len(payload)) + payload
    position = head_len + len(body) if table else -1
    header = io_header(stream_xml(streams), compression, position)
    tail = b"FTAB-not-events" if table else b""
    path.write_bytes(b"#!AER-DAT4.0\r\n" + struct.pack("<i", len(header)) + header + body + tail)
    return offsets


def event_columns(events: np.ndarray, names: Sequence[str] = ("t", "x", "y", "p")) -> list[list[int]]:
    """Columns as plain int lists (compares event arrays of different dtypes)."""
    return [events[n].astype(np.int64).tolist() for n in names]


def raw_file(path: Path, header: Sequence[str], words: Sequence[int], word_bytes: int) -> Path:
    """A Prophesee RAW file: ``% <line>`` header lines, then little-endian words."""
    text = "".join(f"% {line}\n" for line in header).encode()
    path.write_bytes(text + np.asarray(words, dtype=f"<u{word_bytes}").tobytes())
    return path


def evt2_cd(t: int, x: int, y: int, p: int) -> int:
    """An EVT 2.0 CD word (the low 6 timestamp bits of ``t``)."""
    return (p << 28) | ((t & 0x3F) << 22) | (x << 11) | y


def evt2_time_high(t: int) -> int:
    """An EVT 2.0 TIME_HIGH word carrying bits 33–6 of ``t``."""
    return (0x8 << 28) | ((t >> 6) & 0xFFFFFFF)


def evt3_word(kind: int, payload: int) -> int:
    """An EVT 3.0 word of type ``kind`` (4 bits) with a 12-bit payload."""
    return (kind << 12) | (payload & 0xFFF)
