"""AEDAT 4 packets: what the file reader and the dv-processing network client share.

Both carry the same byte stream (all integers little-endian)::

    int32 size, IOHeader flatbuffer (size bytes)          -- the stream's header
    int32 streamId, int32 size, payload (size bytes)      -- one packet, repeated

An AEDAT 4 file puts ``#!AER-DAT4.0\\r\\n`` before the header and a file data table
at ``dataTablePosition`` after the packets; a ``NetworkWriter`` stream has neither.

**IOHeader** (file identifier ``IOHE``): field 0 ``compression`` int32 (0 none,
1 LZ4, 2 LZ4_HIGH, 3 ZSTD, 4 ZSTD_HIGH; default 0), field 1 ``dataTablePosition``
int64 (default −1: no table), field 2 ``infoNode`` string: XML whose
``outInfo/<id>`` nodes describe the streams (``typeIdentifier`` ``EVTS``/``FRME``/
``IMUS``/``TRIG``; ``info/sizeX``, ``info/sizeY`` for cameras).

**Payload**: the whole payload is one LZ4 frame or zstd frame (or raw when the
header says none); decompressed it is a size-prefixed flatbuffer — uint32 length,
uint32 root offset, 4-byte identifier. For ``EVTS`` the root table's field 0 is a
vector (uint32 count, then 16-byte structs: int64 t µs, int16 x, int16 y, uint8 on,
3 pad) — byte-identical to ``EVENT_DTYPE``, so it is read by reinterpreting.

Flatbuffers are walked by hand (root uoffset → table, soffset → vtable, uint16
field offsets) with every offset bounds-checked — the IOHeader in Python, each
``EVTS`` packet in one numba call (the hot path: :mod:`emulator.io.kernels.aedat4`, imported
only once a packet is decoded) — and every event is checked to lie
inside the sensor with ``on`` 0/1 and ``t >= 0``. Damage raises
:class:`~emulator.io.base.RecordingError` naming the packet's stream offset.
Decompressed packets are capped at :data:`MAX_PACKET_BYTES` (a corrupt or hostile
size never allocates more).
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import lz4.frame
import numpy as np
import zstandard

from emulator.io.base import RecordingError
from proto.events import EVENT_DTYPE, Events, event_words

SIZE = struct.Struct("<i")
PACKET_HEADER = struct.Struct("<ii")
"""int32 streamId, int32 payload size."""

COMPRESSION_NAMES = ("none", "LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH")
"""IOHeader compression enum, by value."""
NONE, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH = range(5)

MAX_HEADER_BYTES = 1 << 24
"""An IOHeader is a few KiB of XML; anything near this is corrupt."""
MAX_PACKET_BYTES = 1 << 28
"""Largest (decompressed) packet accepted: 16 M events; bounds memory on corrupt sizes."""
LZ4_MAX_RATIO = 256
"""LZ4 never expands a byte more than ~255×: below MAX_PACKET_BYTES/256 the fast path is safe."""
LZ4_CONTENT_SIZE_FLAG = 0x08
"""FLG bit 3 of an LZ4 frame header: an 8-byte content size follows FLG and BD."""
LZ4_HEADER_BYTES = 14
"""Magic (4), FLG, BD, content size (8)."""

Buffer = bytes | bytearray | memoryview
"""Any contiguous byte buffer a packet may arrive in."""

EVENTS_ID = b"EVTS"
HEADER_ID = b"IOHE"
EVENT_BYTES = 16


@dataclass(frozen=True)
class IOHeader:
    """The decoded IOHeader table."""

    compression: int
    data_table_position: int
    info_xml: str


@dataclass(frozen=True)
class StreamInfo:
    """One ``outInfo`` stream of the header XML (width/height 0 when not a camera stream)."""

    stream_id: int
    type_identifier: str
    width: int
    height: int
    source: str


_STRUCTS = {code: struct.Struct("<" + code) for code in "HiIq"}


class _Flatbuffer:
    """Bounds-checked reads from a flatbuffer starting at ``base`` in ``buf``.

    Positions are absolute in ``buf``; errors name ``offset`` (the packet's stream offset).
    """

    __slots__ = ("base", "buf", "offset", "path", "size", "what")

    def __init__(self, buf: Buffer, base: int, what: str, path: Path, offset: int) -> None:
        self.buf, self.base, self.size = buf, base, len(buf)
        self.what, self.path, self.offset = what, path, offset

    def fail(self, expected: str, found: str) -> RecordingError:
        return RecordingError(self.path, self.offset, f"{self.what}: {expected}", found)

    def unpack(self, code: str, pos: int, name: str) -> int:
        s = _STRUCTS[code]
        if pos < self.base or pos + s.size > self.size:
            raise self.fail(f"{name} inside the {self.size - self.base}-byte flatbuffer", f"position {pos - self.base}")
        value: int = s.unpack_from(self.buf, pos)[0]
        return value

    def root(self, identifier: bytes) -> int:
        found = bytes(self.buf[self.base + 4 : self.base + 8])
        if found != identifier:
            raise self.fail(f"file identifier {identifier.decode()}", repr(found))
        return self.base + self.unpack("I", self.base, "the root table offset")

    def field(self, table: int, index: int) -> int | None:
        """Position of field ``index`` of the table at ``table``, or None when absent."""
        vtable = table - self.unpack("i", table, "the table's vtable offset")
        vt_size = self.unpack("H", vtable, "a vtable")
        if vt_size < 4 or vt_size % 2:
            raise self.fail("a vtable size >= 4 and even", str(vt_size))
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return None
        rel = self.unpack("H", vtable + slot, "a vtable slot")
        return table + rel if rel else None

    def vector(self, pos: int, elem_bytes: int, name: str) -> tuple[int, int]:
        """``(start, count)`` of the vector referenced at ``pos``, checked to fit."""
        vec = pos + self.unpack("I", pos, "a vector offset")
        count = self.unpack("I", vec, "a vector length")
        if vec + 4 + count * elem_bytes > self.size:
            raise self.fail(
                f"{name} ({count} x {elem_bytes} bytes) inside the flatbuffer", f"{self.size - vec - 4} bytes left"
            )
        return vec + 4, count


def parse_io_header(buf: Buffer, path: Path, offset: int) -> IOHeader:
    """Decode the IOHeader flatbuffer ``buf`` (the bytes after its int32 size)."""
    fb = _Flatbuffer(buf, 0, "IOHeader", path, offset)
    table = fb.root(HEADER_ID)
    pos = fb.field(table, 0)
    compression = NONE if pos is None else fb.unpack("i", pos, "compression")
    if not 0 <= compression < len(COMPRESSION_NAMES):
        raise fb.fail("a compression type 0-4", str(compression))
    pos = fb.field(table, 1)
    table_pos = -1 if pos is None else fb.unpack("q", pos, "dataTablePosition")
    pos = fb.field(table, 2)
    if pos is None:
        raise fb.fail("an infoNode string", "none")
    start, n = fb.vector(pos, 1, "infoNode string")
    xml = bytes(buf[start : start + n]).decode("utf-8", errors="replace")
    return IOHeader(compression, table_pos, xml)


def _attrs(node: ET.Element) -> dict[str, str]:
    return {a.get("key", ""): (a.text or "") for a in node.findall("attr")}


def _int_attr(attrs: dict[str, str], key: str) -> int:
    value = attrs.get(key, "0").strip()
    return int(value) if value.isdigit() else 0


def parse_streams(xml: str, path: Path, offset: int) -> tuple[StreamInfo, ...]:
    """The streams declared by the header XML (``<dv><node name="outInfo"><node name="ID">``)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise RecordingError(path, offset, "well-formed stream info XML in the IOHeader", str(exc)) from exc
    out_info = next((n for n in root.iter("node") if n.get("name") == "outInfo"), None)
    if out_info is None:
        raise RecordingError(path, offset, "an outInfo node in the IOHeader XML", "none")
    streams = []
    for node in out_info.findall("node"):
        name = node.get("name", "")
        if not name.isdigit():
            continue
        attrs = _attrs(node)
        info = next((n for n in node.findall("node") if n.get("name") == "info"), None)
        info_attrs = _attrs(info) if info is not None else {}
        streams.append(
            StreamInfo(
                int(name),
                attrs.get("typeIdentifier", ""),
                _int_attr(info_attrs, "sizeX"),
                _int_attr(info_attrs, "sizeY"),
                info_attrs.get("source", ""),
            )
        )
    return tuple(streams)


def event_stream(streams: tuple[StreamInfo, ...], path: Path, offset: int) -> StreamInfo:
    """The first ``EVTS`` stream with a sensor size (the one a reader decodes)."""
    for s in streams:
        if s.type_identifier == EVENTS_ID.decode() and s.width > 0 and s.height > 0:
            return s
    found = ", ".join(f"{s.stream_id}:{s.type_identifier}" for s in streams) or "no streams"
    raise RecordingError(path, offset, "an EVTS stream with sizeX/sizeY in the IOHeader XML", found)


def _lz4_content_size(payload: Buffer) -> int:
    """The content size an LZ4 frame header declares (0: none; lz4 itself checks the rest)."""
    if len(payload) >= LZ4_HEADER_BYTES and payload[4] & LZ4_CONTENT_SIZE_FLAG:
        return int.from_bytes(payload[6:LZ4_HEADER_BYTES], "little")
    return 0


def _lz4(payload: Buffer, path: Path, offset: int) -> Buffer:
    size = _lz4_content_size(payload)
    if size > MAX_PACKET_BYTES:
        raise RecordingError(path, offset, f"a packet of at most {MAX_PACKET_BYTES} bytes", f"{size} bytes")
    if size or len(payload) * LZ4_MAX_RATIO <= MAX_PACKET_BYTES:
        out: Buffer = lz4.frame.decompress(payload, return_bytearray=True)
        return out
    dec = lz4.frame.LZ4FrameDecompressor(return_bytearray=True)
    out = dec.decompress(payload, max_length=MAX_PACKET_BYTES + 1)
    if not dec.eof:
        raise RecordingError(path, offset, f"a complete LZ4 frame of at most {MAX_PACKET_BYTES} bytes", "more or less")
    return out


def _zstd(payload: Buffer, path: Path, offset: int) -> Buffer:
    size = zstandard.frame_content_size(payload)
    if size > MAX_PACKET_BYTES:
        raise RecordingError(path, offset, f"a packet of at most {MAX_PACKET_BYTES} bytes", f"{size} bytes")
    dctx = zstandard.ZstdDecompressor()
    if size >= 0:
        return dctx.decompress(payload)
    parts, total = [], 0
    for part in dctx.read_to_iter(payload, write_size=1 << 20):
        total += len(part)
        if total > MAX_PACKET_BYTES:
            raise RecordingError(path, offset, f"a packet of at most {MAX_PACKET_BYTES} bytes", "more")
        parts.append(part)
    return b"".join(parts)


def decompress(payload: Buffer, compression: int, path: Path, offset: int) -> Buffer:
    """The packet's flatbuffer bytes; a damaged frame raises RecordingError at ``offset``."""
    try:
        if compression == NONE:
            return payload
        if compression in (LZ4, LZ4_HIGH):
            return _lz4(payload, path, offset)
        return _zstd(payload, path, offset)
    except (RuntimeError, zstandard.ZstdError) as exc:
        name = COMPRESSION_NAMES[compression]
        raise RecordingError(path, offset, f"a valid {name}-compressed packet", str(exc)) from exc


# event_vector result codes (the hot path walks the EVTS flatbuffer in numba, in one call: see emulator.io.kernels)
_OK, _BAD_PREFIX, _BAD_ID, _OUT_OF_BOUNDS, _BAD_VTABLE = range(5)
_ERRORS = {
    _BAD_PREFIX: "a uint32 size prefix equal to the packet length - 4",
    _BAD_ID: "the file identifier EVTS",
    _OUT_OF_BOUNDS: "flatbuffer offsets and the event vector inside the packet",
    _BAD_VTABLE: "a vtable size >= 4 and even",
}


def copy_events(src: np.ndarray, dst: np.ndarray, width: int, height: int) -> int:
    """Copy event words ``src`` into ``dst`` (see ``proto.events.event_words``), zeroing the
    struct padding, and checking each event on the way: inside the sensor, on 0/1, t ≥ 0
    (as int64). Returns the index of the first bad event (nothing from it on is copied), or −1.
    """
    from emulator.io.kernels import aedat4 as kernels  # numba: only once decoding starts

    return int(kernels.copy_events(src, dst, width, height))


def packet_events(buf: Buffer, path: Path, offset: int) -> Events:
    """The events of one decompressed ``EVTS`` packet, unchecked: a zero-copy view of ``buf``
    (check them while copying with :func:`copy_events`, or use :func:`event_packet`)."""
    from emulator.io.kernels import aedat4 as kernels  # numba: only once decoding starts

    start, count, code, where = kernels.event_vector(np.frombuffer(buf, dtype=np.uint8))
    if code != _OK:
        raise RecordingError(path, offset, f"an EVTS packet: {_ERRORS[code]}", f"not so at byte {where} of {len(buf)}")
    return np.frombuffer(buf, dtype=EVENT_DTYPE, count=count, offset=start)


def bad_event(events: Events, bad: int, stream: StreamInfo, path: Path, offset: int) -> RecordingError:
    """The error for event ``bad`` of a packet that :func:`copy_events` refused."""
    e = events[bad]
    t, x, y, on = int(e["t"]), int(e["x"]), int(e["y"]), int(e["p"])
    return RecordingError(
        path,
        offset,
        f"an EVTS packet: events inside the {stream.width}x{stream.height} sensor with on 0/1 and t >= 0",
        f"event {bad}: t={t - (1 << 64) if t >> 63 else t} x={x - (1 << 16) if x >> 15 else x} "
        f"y={y - (1 << 16) if y >> 15 else y} on={on}",
    )


def event_packet(buf: Buffer, stream: StreamInfo, path: Path, offset: int) -> Events:
    """The events of one decompressed ``EVTS`` packet, checked, in a new array of our own."""
    events = packet_events(buf, path, offset)
    out = np.empty(len(events), dtype=EVENT_DTYPE)
    bad = copy_events(event_words(events), event_words(out), stream.width, stream.height)
    if bad >= 0:
        raise bad_event(events, bad, stream, path, offset)
    return out


def decode_packet(payload: Buffer, compression: int, stream: StreamInfo, path: Path, offset: int) -> Events:
    """Decompress and decode one ``EVTS`` packet payload found at stream byte ``offset``."""
    return event_packet(decompress(payload, compression, path, offset), stream, path, offset)
