"""Test helpers for the AEDAT 3.1, N-MNIST, DAT, tonic .npy, speck .npz and Event Stream readers.

* :func:`real_file` — a recording of ``shared/data/real`` beside the repository
  (never copied in): skips when the corpus is absent, fails under ``CI=true``
  (the one helper of :mod:`tests.real_data`, re-exported).
* :func:`source_entry` — a recording's SOURCES.txt statistics; :func:`assert_matches_sources`.
* :func:`read_all`, :func:`cut_copy` — whole reads and truncated copies in ``tmp_path``.
* Small writers that build exactly the files a test needs, damaged ones included:
  :func:`aedat31_file` (with :func:`polarity_packet` / :func:`packet`),
  :func:`es_bytes`, :func:`nmnist_bytes`, :func:`dat_bytes`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from emulator.io import Recording, open_recording
from emulator.io.base import concat
from emulator.stats import summarize
from proto.events import Events
from tests.real_data import real_file, source_entry

__all__ = ["real_file"]


def assert_matches_sources(relpath: str, events: Events, rec: Recording) -> None:
    """Exact count, first t, duration, ON fraction, monotonic, observed ranges and resolution."""
    entry = source_entry(relpath)
    s = summarize([events])
    assert rec.damage is None
    assert s.events == entry.events
    assert s.t_first_us == entry.first_t_us
    assert round(s.duration_s, 4) == pytest.approx(entry.duration_s, abs=1e-9)
    assert round(s.on_fraction, 4) == pytest.approx(entry.on_fraction, abs=1e-9)
    assert s.monotonic == entry.monotonic
    assert s.x_range == entry.x_range
    assert s.y_range == entry.y_range
    if entry.resolution is not None:
        assert (rec.info.width, rec.info.height) == entry.resolution


def read_all(path: Path, chunk_events: int = 1 << 20, lenient: bool = False) -> tuple[Events, Recording]:
    """Every event of ``path`` (through the registry) and the recording, after reading."""
    rec = open_recording(path, chunk_events=chunk_events, lenient=lenient)
    chunks = list(rec.chunks)
    assert all(0 < len(c) <= chunk_events for c in chunks)
    return concat(chunks), rec


def cut_copy(src: Path, dst: Path, size: int) -> Path:
    """``dst`` holding the first ``size`` bytes of ``src``."""
    with src.open("rb") as f:
        dst.write_bytes(f.read(size))
    return dst


# ---------------------------------------------------------------- AEDAT 3.1

AEDAT31_HEADER = (
    b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017-01-01 00:00:00\r\n#!END-HEADER\r\n"
)


def polarity_word(x: int, y: int, p: int, valid: bool = True) -> int:
    return (x << 17) | (y << 2) | (p << 1) | int(valid)


def packet(
    etype: int,
    payload: bytes,
    *,
    size: int = 8,
    ts_offset: int = 4,
    ts_overflow: int = 0,
    capacity: int | None = None,
    number: int | None = None,
    valid: int | None = None,
    source: int = 1,
) -> bytes:
    """A 28-byte packet header (fields default to what ``payload`` holds) followed by ``payload``."""
    cap = len(payload) // size if capacity is None else capacity
    num = cap if number is None else number
    val = num if valid is None else valid
    return struct.pack("<hhiiiiii", etype, source, size, ts_offset, ts_overflow, cap, num, val) + payload


def polarity_packet(events: Sequence[tuple[int, int, int, int, bool]], ts_overflow: int = 0) -> bytes:
    """A polarity packet of ``(timestamp, x, y, p, valid)`` events."""
    payload = b"".join(struct.pack("<Ii", polarity_word(x, y, p, v), t) for t, x, y, p, v in events)
    valid = sum(1 for e in events if e[4])
    return packet(1, payload, ts_overflow=ts_overflow, valid=valid)


def aedat31_file(path: Path, packets: Sequence[bytes], header: bytes = AEDAT31_HEADER) -> list[int]:
    """Write an AEDAT 3.1 file; return each packet's byte offset."""
    offsets, pos = [], len(header)
    for p in packets:
        offsets.append(pos)
        pos += len(p)
    path.write_bytes(header + b"".join(packets))
    return offsets


# ---------------------------------------------------------------- Event Stream, N-MNIST, DAT


def es_bytes(
    events: Sequence[tuple[int, int, int, int]],
    width: int,
    height: int,
    version: bytes = b"\x02\x00\x00",
    kind: int = 1,
) -> bytes:
    """A DVS Event Stream of ``(t, x, y_stored, p)`` (t non-decreasing, from 0)."""
    out = bytearray(b"Event Stream" + version + bytes([kind]) + struct.pack("<HH", width, height))
    t_prev = 0
    for t, x, y, p in events:
        dt = t - t_prev
        t_prev = t
        while dt >= 127:
            out.append(0xFF)
            dt -= 127
        out.append((dt << 1) | p)
        out += struct.pack("<HH", x, y)
    return bytes(out)


def es_reference(data: bytes, header_bytes: int = 20) -> list[tuple[int, int, int, int, int]]:
    """A plain-Python Event Stream DVS decode: ``(offset, t, x, y_stored, p)`` per whole event."""
    out, t, pos = [], 0, header_bytes
    while pos < len(data):
        b = data[pos]
        if b in (0xFE, 0xFF):
            t += 127 if b == 0xFF else 0
            pos += 1
            continue
        if pos + 5 > len(data):
            break
        x, y = struct.unpack_from("<HH", data, pos + 1)
        t += b >> 1
        out.append((pos, t, x, y, b & 1))
        pos += 5
    return out


def nmnist_bytes(records: Sequence[tuple[int, int, int, int]]) -> bytes:
    """N-MNIST records of ``(x, y, p, ts23)``; ``y = 240`` writes an overflow record."""
    return b"".join(bytes([x, y, (p << 7) | (ts >> 16) & 0x7F, (ts >> 8) & 0xFF, ts & 0xFF]) for x, y, p, ts in records)


def dat_bytes(
    events: Sequence[tuple[int, int, int, int]],
    header: bytes = b"% Data file containing Event2d events.\n% Version 2\n",
    event_type: int = 0,
    x_bits: int = 14,
    y_bits: int = 14,
) -> bytes:
    """A DAT file of ``(t, x, y, p)`` events."""
    body = b"".join(
        struct.pack("<II", t & 0xFFFFFFFF, x | (y << x_bits) | (p << (x_bits + y_bits))) for t, x, y, p in events
    )
    return header + bytes([event_type, 8]) + body


def event_tuples(events: Events) -> list[tuple[int, int, int, int]]:
    """``(t, x, y, p)`` per event, as plain ints."""
    return list(zip(*(events[k].astype(np.int64).tolist() for k in "txyp"), strict=True))
