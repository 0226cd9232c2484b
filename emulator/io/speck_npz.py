"""speck-edge's own recording format: an uncompressed ``.npz`` of events plus metadata.

Members, in this order (both stored, never compressed):

1. ``meta.json`` — ``{"format": "speck-npz", "version": 1, "width", "height",
   "time_origin", "header": {str: str}, "labels": [[label, t_start_us, t_end_us], …]}``;
2. ``events.npy`` — a 1-D array of :data:`proto.events.EVENT_DTYPE` (16-byte
   records, y = 0 the top row), as ``np.save`` writes it.

``np.load`` opens it like any ``.npz``. The reader does not: it walks the zip's
local file headers from the start of the file (the central directory at the end
is not needed, so a truncated file still yields every whole event before the
cut) and reads ``events.npy`` ``chunk_events`` records at a time. The member's
CRC-32 is checked once all events are read. Damage: an unexpected member or
header (at its offset), an event outside the sensor or with p > 1 (at that
event), a file that ends inside the events (at the first incomplete event), a
CRC mismatch (at the start of the member's data).

Writing: :func:`write_npz` takes an event array or an iterable of chunks (spooled
to a temporary file, so memory stays bounded); :func:`save_recording` converts
any opened :class:`~emulator.io.base.Recording`.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from emulator.io.base import Label, Recording, RecordingError, RecordingInfo, build
from emulator.io.npy_header import read_npy_header
from proto.events import EVENT_DTYPE, PADDING_MASK, Events, event_words

FORMAT = "speck-npz"
VERSION = 1
META_MEMBER = "meta.json"
EVENTS_MEMBER = "events.npy"
ZIP_MAGIC = b"PK\x03\x04"
LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # signature … name length, extra length (30 bytes)
ZIP64_EXTRA_ID = 0x0001
ZIP64_MARK = 0xFFFFFFFF
STORED = 0
DATA_DESCRIPTOR_FLAG = 0x08
MAX_META_BYTES = 1 << 20
COPY_BYTES = 1 << 24
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""A fixed member date: writing the same events twice gives the same bytes."""


@dataclass(frozen=True)
class Member:
    """A zip member as its local file header describes it."""

    name: str
    header_offset: int
    data_offset: int
    size: int
    crc: int


def probe(head: bytes, path: Path) -> bool:
    if not head.startswith(ZIP_MAGIC) or len(head) < LOCAL_HEADER.size:
        return False
    name_len = LOCAL_HEADER.unpack_from(head)[9]
    name = head[LOCAL_HEADER.size : LOCAL_HEADER.size + name_len]
    return name == META_MEMBER.encode() and f'"format": "{FORMAT}"'.encode() in head


# ---------------------------------------------------------------- reading


def read_member(f: BinaryIO, path: Path, offset: int, name: str) -> Member:
    """The stored member ``name`` whose local file header is at ``offset``."""
    f.seek(offset)
    raw = f.read(LOCAL_HEADER.size)
    if len(raw) < LOCAL_HEADER.size or raw[:4] != ZIP_MAGIC:
        raise RecordingError(path, offset, f"the zip local file header of {name}", repr(raw[:4]))
    _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = LOCAL_HEADER.unpack(raw)
    found = f.read(name_len).decode("utf-8", "replace")
    extra = f.read(extra_len)
    if found != name:
        raise RecordingError(path, offset, f"the member {name}", found)
    if method != STORED or flags & DATA_DESCRIPTOR_FLAG:
        raise RecordingError(
            path,
            offset,
            f"{name} stored uncompressed with its sizes in the local header",
            f"compression method {method}, flags 0x{flags:04x}",
        )
    if usize == ZIP64_MARK or csize == ZIP64_MARK:
        usize = _zip64_size(extra, path, offset)
    return Member(name, offset, offset + LOCAL_HEADER.size + name_len + extra_len, usize, crc)


def _zip64_size(extra: bytes, path: Path, offset: int) -> int:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == ZIP64_EXTRA_ID and size >= 8:
            return int(struct.unpack_from("<Q", extra, pos + 4)[0])
        pos += 4 + size
    raise RecordingError(path, offset, "a zip64 extra field with the member size", "none")


def read_meta(f: BinaryIO, path: Path, member: Member) -> dict[str, Any]:
    """The parsed ``meta.json`` (format and version checked)."""
    if member.size > MAX_META_BYTES:
        raise RecordingError(
            path, member.header_offset, f"a {META_MEMBER} under {MAX_META_BYTES} bytes", str(member.size)
        )
    f.seek(member.data_offset)
    raw = f.read(member.size)
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordingError(path, member.data_offset, f"{META_MEMBER} holding JSON", str(exc)) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = (
            f"{meta.get('format')!r} version {meta.get('version')!r}" if isinstance(meta, dict) else type(meta).__name__
        )
        raise RecordingError(path, member.data_offset, f'"format": "{FORMAT}", "version": {VERSION}', found)
    return meta


def _info(path: Path, meta: dict[str, Any], offset: int) -> RecordingInfo:
    try:
        labels = tuple(Label(int(a), int(b), int(c)) for a, b, c in meta.get("labels", []))
        header = {str(k): str(v) for k, v in meta.get("header", {}).items()}
        return RecordingInfo(
            path, FORMAT, int(meta["width"]), int(meta["height"]), str(meta["time_origin"]), header, labels
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(
            path, offset, "width, height, time_origin (and well-formed labels) in meta.json", repr(exc)
        ) from exc


@dataclass(frozen=True)
class Layout:
    """Where the events are: the member, the first event's offset and the event count."""

    member: Member
    first_event: int
    count: int


def read_layout(path: Path) -> tuple[RecordingInfo, Layout]:
    with path.open("rb") as f:
        meta_member = read_member(f, path, 0, META_MEMBER)
        info = _info(path, read_meta(f, path, meta_member), meta_member.data_offset)
        member = read_member(f, path, meta_member.data_offset + meta_member.size, EVENTS_MEMBER)
        f.seek(member.data_offset)
        npy = read_npy_header(f, path, member.data_offset)
    if npy.dtype != EVENT_DTYPE or len(npy.shape) != 1 or npy.fortran_order:
        raise RecordingError(path, member.data_offset, "a 1-D array of EVENT_DTYPE", f"{npy.dtype}, shape {npy.shape}")
    if member.size != npy.data_offset - member.data_offset + npy.data_bytes:
        raise RecordingError(
            path, member.header_offset, f"{EVENTS_MEMBER} as long as its header says", f"member size {member.size}"
        )
    return info, Layout(member, npy.data_offset, npy.shape[0])


def _bad_event(events: Events, info: RecordingInfo) -> int:
    """Index of the first event outside the sensor or with p > 1, or −1."""
    bad = (events["x"] >= info.width) | (events["y"] >= info.height) | (events["p"] > 1)
    return int(np.argmax(bad)) if bad.any() else -1


def _events(path: Path, info: RecordingInfo, layout: Layout, chunk_events: int, rec: Recording) -> Iterator[Events]:
    member = layout.member
    with path.open("rb") as f:
        f.seek(member.data_offset)
        crc = zlib.crc32(f.read(layout.first_event - member.data_offset))
        for first in range(0, layout.count, chunk_events):
            chunk = np.empty(min(chunk_events, layout.count - first), dtype=EVENT_DTYPE)
            got = f.readinto(chunk.view(np.uint8).data) // EVENT_DTYPE.itemsize
            bad = _bad_event(chunk[:got], info)
            if bad >= 0:
                e = chunk[bad]
                if bad:
                    yield chunk[:bad]
                rec.damage = RecordingError(
                    path,
                    layout.first_event + (first + bad) * EVENT_DTYPE.itemsize,
                    f"an event with x < {info.width}, y < {info.height}, p 0 or 1",
                    f"x={e['x']}, y={e['y']}, p={e['p']}",
                )
                return
            if got:
                yield chunk[:got]
            if got < len(chunk):
                rec.damage = RecordingError(
                    path,
                    layout.first_event + (first + got) * EVENT_DTYPE.itemsize,
                    f"{layout.count} events as the header says",
                    f"{first + got}",
                )
                return
            crc = zlib.crc32(chunk.view(np.uint8).data, crc)
    if crc != member.crc:
        rec.damage = RecordingError(
            path, member.data_offset, f"{EVENTS_MEMBER} with CRC-32 0x{member.crc:08x}", f"0x{crc:08x}"
        )


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    info, layout = read_layout(path)
    return build(info, lambda rec: _events(path, info, layout, chunk_events, rec), lenient)


# ---------------------------------------------------------------- writing


def write_npz(
    path: Path | str,
    events: Events | Iterable[Events],
    *,
    width: int,
    height: int,
    time_origin: str,
    labels: Iterable[Label] = (),
    header: dict[str, str] | None = None,
) -> int:
    """Write a speck ``.npz``; returns the number of events written.

    ``events`` is one array or an iterable of chunks (all :data:`EVENT_DTYPE`);
    chunks are spooled to a temporary file first, so memory stays bounded.
    """
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "width": int(width),
        "height": int(height),
        "time_origin": time_origin,
        "header": dict(header or {}),
        "labels": [[lb.label, lb.t_start_us, lb.t_end_us] for lb in labels],
    }
    with tempfile.TemporaryFile() as spool:
        count = _spool(events, spool)
        spool.seek(0)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(_zinfo(META_MEMBER), json.dumps(meta))
            npy = _npy_header(count)
            zinfo = _zinfo(EVENTS_MEMBER)
            zinfo.file_size = len(npy) + count * EVENT_DTYPE.itemsize
            with zf.open(zinfo, "w") as member:
                member.write(npy)
                shutil.copyfileobj(spool, member, COPY_BYTES)
    return count


def save_recording(path: Path | str, rec: Recording) -> int:
    """Write an opened recording (any format) as a speck ``.npz``; returns the event count."""
    i = rec.info
    return write_npz(
        path, rec.chunks, width=i.width, height=i.height, time_origin=i.time_origin, labels=i.labels, header=i.header
    )


SPOOL_EVENTS = 1 << 20
"""Events copied at a time while zeroing their padding (16 MiB)."""


def _spool(events: Events | Iterable[Events], out: IO[bytes]) -> int:
    chunks = [events] if isinstance(events, np.ndarray) else events
    count = 0
    for chunk in chunks:
        if chunk.dtype != EVENT_DTYPE or chunk.ndim != 1:
            raise ValueError(f"events must be a 1-D array of EVENT_DTYPE, got {chunk.dtype} with shape {chunk.shape}")
        words = event_words(np.ascontiguousarray(chunk))
        for i in range(0, len(words), SPOOL_EVENTS):  # a bounded copy of a big array
            # whatever memory the padding held stays out of the file: same events, same bytes
            part = words[i : i + SPOOL_EVENTS].copy()
            part[:, 1] &= PADDING_MASK
            out.write(part.data)
        count += len(chunk)
    return count


def _npy_header(count: int) -> bytes:
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(EVENT_DTYPE), "fortran_order": False, "shape": (count,)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _zinfo(name: str) -> zipfile.ZipInfo:
    zinfo = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    zinfo.compress_type = zipfile.ZIP_STORED
    return zinfo
