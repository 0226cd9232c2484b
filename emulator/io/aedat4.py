"""AEDAT 4.0 recordings (iniVation DV / dv-processing): the events of the first event stream.

Layout (little-endian)::

    #!AER-DAT4.0\\r\\n                      14 bytes of magic
    int32 size, IOHeader flatbuffer         compression, dataTablePosition, stream XML
    int32 streamId, int32 size, payload     one packet, repeated
    file data table                         at dataTablePosition (not events)

Packet payloads and the IOHeader are decoded by :mod:`emulator.io.aedat4_packets`
(shared with the dv-processing network client). The sensor size comes from the
event stream's ``sizeX``/``sizeY``; timestamps are µs since the unix epoch.

Packets of other streams (frames, IMU, triggers) are skipped by seeking past them,
never decompressed, and counted per type identifier in ``Recording.dropped``
(e.g. ``{"FRME": 3, "IMUS": 13}``). Reading stops at ``dataTablePosition``, or at
the end of the file when it is −1 (a recording that was never closed). A packet
that runs past the end, a corrupt compressed payload or flatbuffer, or a file that
ends before its data table is damage: :class:`RecordingError` at the packet's
start (or where the data ended); leniently, every event of the complete packets
before it is yielded. Events are copied into chunks of ``chunk_events``; memory is
one packet plus one chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from emulator.io import aedat4_packets as pk
from emulator.io.base import Recording, RecordingError, RecordingInfo, build
from proto.events import EVENT_DTYPE, Events, event_words

MAGIC = b"#!AER-DAT4.0\r\n"
FORMAT = "aedat4"
EVENT_BYTES = EVENT_DTYPE.itemsize
HEADER_SIZE_OFFSET = len(MAGIC)
"""Where the IOHeader's int32 size sits."""


@dataclass(frozen=True)
class _Layout:
    """Where the packets are and how to read them."""

    start: int
    """Byte offset of the first packet."""
    end: int
    """Byte offset where packets stop: the data table, or the end of the file."""
    table_position: int
    """dataTablePosition from the header (−1: none)."""
    compression: int
    streams: dict[int, pk.StreamInfo]
    events: pk.StreamInfo


def probe(head: bytes, path: Path) -> bool:
    return head.startswith(MAGIC)


def _read_io_header(path: Path) -> tuple[pk.IOHeader, int]:
    """The IOHeader and the byte offset of the first packet."""
    with path.open("rb") as f:
        head = f.read(HEADER_SIZE_OFFSET + pk.SIZE.size)
        if not head.startswith(MAGIC):
            raise RecordingError(path, 0, "the magic line #!AER-DAT4.0", repr(head[: len(MAGIC)]))
        if len(head) < HEADER_SIZE_OFFSET + pk.SIZE.size:
            raise RecordingError(path, HEADER_SIZE_OFFSET, "the int32 IOHeader size", "the end of the file")
        (size,) = pk.SIZE.unpack_from(head, HEADER_SIZE_OFFSET)
        if not 8 <= size <= pk.MAX_HEADER_BYTES:
            raise RecordingError(
                path, HEADER_SIZE_OFFSET, f"an IOHeader size of 8 to {pk.MAX_HEADER_BYTES} bytes", str(size)
            )
        buf = f.read(size)
    if len(buf) < size:
        raise RecordingError(path, len(head), f"an IOHeader of {size} bytes", f"{len(buf)} bytes")
    return pk.parse_io_header(buf, path, HEADER_SIZE_OFFSET), len(head) + size


def _layout(path: Path) -> _Layout:
    header, start = _read_io_header(path)
    streams = pk.parse_streams(header.info_xml, path, HEADER_SIZE_OFFSET)
    events = pk.event_stream(streams, path, HEADER_SIZE_OFFSET)
    table = header.data_table_position
    if table != -1 and table < start:
        raise RecordingError(path, HEADER_SIZE_OFFSET, f"a dataTablePosition of -1 or >= {start}", str(table))
    file_end = path.stat().st_size
    end = file_end if table == -1 else min(table, file_end)
    return _Layout(start, end, table, header.compression, {s.stream_id: s for s in streams}, events)


def _damage_at_end(path: Path, layout: _Layout) -> RecordingError | None:
    """A file that ends before its data table was cut short."""
    if layout.table_position > layout.end:
        return RecordingError(
            path,
            layout.end,
            f"a packet or the file data table (at byte {layout.table_position})",
            "the end of the file",
        )
    return None


def _packet_header(f: BinaryIO, path: Path, layout: _Layout, offset: int) -> tuple[pk.StreamInfo, int]:
    """The stream and payload size of the packet at ``offset``, checked to fit before ``layout.end``."""
    head = f.read(pk.PACKET_HEADER.size)
    if len(head) < pk.PACKET_HEADER.size or offset + pk.PACKET_HEADER.size > layout.end:
        left = layout.end - offset
        raise RecordingError(
            path, offset, "a packet header (int32 streamId, int32 size)", f"{left} bytes before the end of the data"
        )
    stream_id, size = pk.PACKET_HEADER.unpack(head)
    stream = layout.streams.get(stream_id)
    if stream is None:
        raise RecordingError(
            path, offset, f"a stream id declared in the header {sorted(layout.streams)}", str(stream_id)
        )
    end = offset + pk.PACKET_HEADER.size + size
    if size < 0 or end > layout.end:
        raise RecordingError(
            path, offset, f"a packet of {size} bytes ending by byte {layout.end}", f"it would end at byte {end}"
        )
    return stream, size


def _event_packets(path: Path, layout: _Layout, rec: Recording) -> Iterator[tuple[Events, int]]:
    """Decoded (not yet checked) event packets and their file offsets, in file order; other
    streams are skipped and counted."""
    offset = layout.start
    try:
        with path.open("rb") as f:
            f.seek(offset)
            while offset < layout.end:
                stream, size = _packet_header(f, path, layout, offset)
                if stream is layout.events:
                    payload = f.read(size)
                    if len(payload) < size:  # the file shrank since it was opened
                        raise RecordingError(path, offset, f"a packet of {size} bytes", f"{len(payload)} bytes")
                    yield (
                        pk.packet_events(pk.decompress(payload, layout.compression, path, offset), path, offset),
                        offset,
                    )
                else:
                    f.seek(size, 1)
                    kind = stream.type_identifier or "unknown"
                    rec.dropped[kind] = rec.dropped.get(kind, 0) + 1
                offset += pk.PACKET_HEADER.size + size
        rec.damage = _damage_at_end(path, layout)
    except RecordingError as exc:
        rec.damage = exc


def rechunk(
    packets: Iterator[tuple[Events, int]], layout: _Layout, rec: Recording, chunk_events: int
) -> Iterator[Events]:
    """Copy packets' events into chunks of exactly ``chunk_events`` (the last may be shorter),
    checking each event on the way (one pass: check, copy, zero the padding)."""
    from emulator.io.kernels import aedat4 as kernels  # numba: only once decoding starts

    out = np.empty(chunk_events, dtype=EVENT_DTYPE)
    k = 0
    width, height = layout.events.width, layout.events.height
    for events, offset in packets:
        i = 0
        while i < events.shape[0]:
            n = min(chunk_events - k, events.shape[0] - i)
            bad = kernels.copy_events(event_words(events[i : i + n]), event_words(out[k : k + n]), width, height)
            if bad >= 0:
                rec.damage = pk.bad_event(events, i + bad, layout.events, rec.info.path, offset)
                k += bad
                if k:
                    yield out[:k]
                return
            k += n
            i += n
            if k == chunk_events:
                yield out
                out = np.empty(chunk_events, dtype=EVENT_DTYPE)
                k = 0
    if k:
        yield out[:k]


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    layout = _layout(path)
    ev = layout.events
    header = {
        "compression": pk.COMPRESSION_NAMES[layout.compression],
        "data_table_position": str(layout.table_position),
        "event_stream_id": str(ev.stream_id),
        "source": ev.source,
        "streams": ",".join(f"{s.stream_id}:{s.type_identifier}" for s in layout.streams.values()),
    }
    info = RecordingInfo(path, FORMAT, ev.width, ev.height, "unix epoch", header)
    return build(info, lambda rec: rechunk(_event_packets(path, layout, rec), layout, rec, chunk_events), lenient)
