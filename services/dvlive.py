"""Live events from a dv-processing ``NetworkWriter`` (the DV software's TCP event output).

The writer sends each client, on connect, one header and then packets (integers
little-endian; the same bytes as an AEDAT 4 file without its magic and data table)::

    int32 size, IOHeader flatbuffer       compression, stream info XML (sizeX/sizeY)
    int32 streamId, int32 size, payload   one packet per write, repeated

Payloads are decoded by :mod:`emulator.io.aedat4_packets`. :meth:`LiveStream.read`
returns the next packet of the first event stream; packets of other streams are
skipped and counted in ``LiveStream.dropped``. Waiting uses socket timeouts against
a deadline (never sleeps); a packet that arrives in pieces is kept across reads.

Errors: a closed connection raises :class:`WriterClosed` (a ``ConnectionError``);
malformed data raises :class:`~emulator.io.base.RecordingError` whose offset is the
packet's byte offset in the TCP stream, and every later read raises it again (the
stream cannot be resynchronised); no header within ``timeout_s`` raises ``TimeoutError``.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from emulator.io import aedat4_packets as pk
from emulator.io.base import RecordingError, RecordingInfo
from proto.events import EVENT_DTYPE, Events

FORMAT = "dv-network"
RECV_BYTES = 1 << 16
"""Bytes asked of the socket per recv (more when a packet needs more) ..."""
RECV_MAX_BYTES = 1 << 20
"""... but never more than this per call (recv allocates what it is asked for)."""


class WriterClosed(ConnectionError):
    """The NetworkWriter closed the connection (``pending`` bytes of a packet were cut off)."""

    def __init__(self, where: str, pending: int) -> None:
        self.where, self.pending = where, pending
        cut = f" ({pending} bytes of an unfinished packet lost)" if pending else ""
        super().__init__(f"{where}: the NetworkWriter closed the connection{cut}")


@dataclass
class _Receiver:
    """Bytes received but not yet consumed, and the stream offset of the first of them."""

    sock: socket.socket
    where: str
    buf: bytearray = field(default_factory=bytearray)
    offset: int = 0

    def fill(self, n: int, deadline: float) -> bool:
        """Receive until ``n`` bytes are buffered; False when ``deadline`` passes first."""
        while len(self.buf) < n:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.0))  # 0: a non-blocking look
            try:
                data = self.sock.recv(min(max(RECV_BYTES, n - len(self.buf)), RECV_MAX_BYTES))
            except (TimeoutError, BlockingIOError):
                return False
            except ConnectionError as exc:
                raise WriterClosed(self.where, len(self.buf)) from exc
            if not data:
                raise WriterClosed(self.where, len(self.buf))
            self.buf += data
        return True

    def take(self, n: int) -> bytearray:
        """Consume the first ``n`` buffered bytes."""
        out = self.buf[:n]
        del self.buf[:n]
        self.offset += n
        return out


@dataclass
class LiveStream:
    """An open connection to a NetworkWriter; ``read`` returns its event packets."""

    info: RecordingInfo
    _rx: _Receiver
    _compression: int
    _streams: dict[int, pk.StreamInfo]
    _events: pk.StreamInfo
    dropped: dict[str, int] = field(default_factory=dict)
    """Packets of other streams skipped, by type identifier (e.g. ``{"IMUS": 3}``)."""
    _error: RecordingError | None = None

    def read(self, timeout_s: float) -> Events | None:
        """The next event packet, or None when none completes within ``timeout_s`` seconds."""
        if self._error is not None:
            raise self._error
        deadline = time.monotonic() + timeout_s
        try:
            while (packet := self._next_packet(deadline)) is not None:
                stream, offset, payload = packet
                if stream is self._events:
                    return _owned(pk.decode_packet(payload, self._compression, stream, self.info.path, offset))
                kind = stream.type_identifier or "unknown"
                self.dropped[kind] = self.dropped.get(kind, 0) + 1
        except RecordingError as exc:
            self._error = exc
            raise
        return None

    def _next_packet(self, deadline: float) -> tuple[pk.StreamInfo, int, bytearray] | None:
        """``(stream, stream offset, payload)`` of the next complete packet, or None at the deadline."""
        head = pk.PACKET_HEADER.size
        if not self._rx.fill(head, deadline):
            return None
        stream_id, size = pk.PACKET_HEADER.unpack_from(self._rx.buf)
        stream = self._streams.get(stream_id)
        if stream is None:
            raise RecordingError(
                self.info.path, self._rx.offset, f"a stream id of {sorted(self._streams)}", str(stream_id)
            )
        if not 0 <= size <= pk.MAX_PACKET_BYTES:
            raise RecordingError(
                self.info.path, self._rx.offset, f"a packet size of 0 to {pk.MAX_PACKET_BYTES}", str(size)
            )
        if not self._rx.fill(head + size, deadline):
            return None
        offset = self._rx.offset
        return stream, offset, self._rx.take(head + size)[head:]

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._rx.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _owned(events: Events) -> Events:
    """A writable array: the packet's view when it is one, else a byte copy."""
    if events.flags.writeable:
        return events
    return events.view(np.uint8).copy().view(EVENT_DTYPE)


def _read_header(rx: _Receiver, path: Path, timeout_s: float) -> pk.IOHeader:
    deadline = time.monotonic() + timeout_s
    if not rx.fill(pk.SIZE.size, deadline):
        raise TimeoutError(f"{path}: no IOHeader within {timeout_s} s")
    (size,) = pk.SIZE.unpack_from(rx.buf)
    if not 8 <= size <= pk.MAX_HEADER_BYTES:
        raise RecordingError(path, 0, f"an IOHeader size of 8 to {pk.MAX_HEADER_BYTES} bytes", str(size))
    if not rx.fill(pk.SIZE.size + size, deadline):
        raise TimeoutError(f"{path}: the {size}-byte IOHeader did not arrive within {timeout_s} s")
    return pk.parse_io_header(bytes(rx.take(pk.SIZE.size + size)[pk.SIZE.size :]), path, 0)


def open_live(host: str, port: int, *, timeout_s: float = 5.0) -> LiveStream:
    """Connect to a NetworkWriter at ``host:port`` and read its header (within ``timeout_s``)."""
    path = Path(f"tcp://{host}:{port}")
    sock = socket.create_connection((host, port), timeout=timeout_s)
    try:
        rx = _Receiver(sock, str(path))
        header = _read_header(rx, path, timeout_s)
        streams = pk.parse_streams(header.info_xml, path, 0)
        events = pk.event_stream(streams, path, 0)
    except BaseException:
        sock.close()
        raise
    meta = {
        "compression": pk.COMPRESSION_NAMES[header.compression],
        "event_stream_id": str(events.stream_id),
        "source": events.source,
        "streams": ",".join(f"{s.stream_id}:{s.type_identifier}" for s in streams),
    }
    info = RecordingInfo(path, FORMAT, events.width, events.height, "unix epoch", meta)
    return LiveStream(info, rx, header.compression, {s.stream_id: s for s in streams}, events)
