"""AEDAT 4.0: agreement with aedat and dv-processing, chunking, compression, damage."""

from __future__ import annotations

import struct
from pathlib import Path

import lz4.frame
import numpy as np
import pytest
import zstandard

from emulator.io import RecordingError, detect_format, open_recording, read_recording
from emulator.io import aedat4_packets as pk
from emulator.io.base import concat
from proto.events import make_events
from tests.io.make_aedat4_evt import aedat4_file, compress, event_columns, evts_flatbuffer, real_file, sources_events

REAL = ["aestream/davis.aedat4", "event-vision-library/sample.aedat4", "tonic-testdata/sample.aedat4"]
DAVIS = "aestream/davis.aedat4"
SIZES = {
    "aestream/davis.aedat4": (346, 260),
    "event-vision-library/sample.aedat4": (346, 260),
    "tonic-testdata/sample.aedat4": (320, 240),
}


def _aedat_reference(path: Path) -> np.ndarray:
    aedat = pytest.importorskip("aedat")
    return np.concatenate([p["events"] for p in aedat.Decoder(str(path)) if "events" in p])


def _dv_reference(path: Path) -> np.ndarray:
    dv = pytest.importorskip("dv_processing")
    rec = dv.io.MonoCameraRecording(str(path))
    parts = []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy())
    return np.concatenate(parts)


def _events(n: int, width: int = 64, height: int = 48, t0: int = 1_600_000_000_000_000) -> np.ndarray:
    i = np.arange(n)
    return make_events(t0 + 3 * i, i % width, (7 * i) % height, i % 2)


@pytest.mark.parametrize("relpath", REAL)
def test_real_files_counts_and_geometry(relpath: str) -> None:
    path = real_file(relpath)
    ev, rec = read_recording(path)
    assert detect_format(path) == "aedat4"
    assert len(ev) == sources_events(relpath)
    assert (rec.info.width, rec.info.height) == SIZES[relpath]
    assert rec.info.time_origin == "unix epoch"
    assert rec.damage is None


@pytest.mark.parametrize("relpath", REAL)
def test_real_files_match_aedat(relpath: str) -> None:
    path = real_file(relpath)
    ev, _ = read_recording(path)
    assert event_columns(ev) == event_columns(_aedat_reference(path), ("t", "x", "y", "on"))


@pytest.mark.parametrize("relpath", REAL)
def test_real_files_match_dv_processing(relpath: str) -> None:
    path = real_file(relpath)
    ev, _ = read_recording(path)
    assert event_columns(ev) == event_columns(_dv_reference(path), ("timestamp", "x", "y", "polarity"))


def test_other_streams_are_skipped_and_counted() -> None:
    _, rec = read_recording(real_file(DAVIS))
    assert rec.dropped == {"FRME": 3, "IMUS": 13, "TRIG": 11}


@pytest.mark.parametrize("chunk_events", [1, 1000, 9920, 1 << 20])
def test_chunks_concatenate_to_whole_read(chunk_events: int) -> None:
    path = real_file("tonic-testdata/sample.aedat4")
    whole, _ = read_recording(path)
    chunks = list(open_recording(path, chunk_events=chunk_events).chunks)
    assert all(len(c) == chunk_events for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk_events
    assert np.array_equal(concat(chunks), whole)


@pytest.mark.parametrize("compression", ["NONE", "LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH"])
def test_dv_processing_writer_round_trip(tmp_path: Path, compression: str) -> None:
    dv = pytest.importorskip("dv_processing")
    path = tmp_path / "w.aedat4"
    config = dv.io.MonoCameraWriter.EventOnlyConfig("TEST", (64, 48), getattr(dv.CompressionType, compression))
    writer = dv.io.MonoCameraWriter(str(path), config)
    expected = _events(500)
    for part in (expected[:200], expected[200:]):
        store = dv.EventStore()
        for e in part:
            store.push_back(int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"]))
        writer.writeEvents(store)
    del writer  # closing writes the data table
    ev, rec = read_recording(path)
    assert (rec.info.width, rec.info.height) == (64, 48)
    assert rec.info.header["compression"] == compression.replace("NONE", "none")
    assert int(rec.info.header["data_table_position"]) > 0
    assert np.array_equal(ev, expected)


@pytest.mark.parametrize("compression", [0, 1, 3])
def test_hand_built_file_without_data_table(tmp_path: Path, compression: int) -> None:
    a, b = _events(10), _events(5, t0=2_000_000_000_000_000)
    streams = ((0, "EVTS", 64, 48), (1, "IMUS", 0, 0))
    packets = [
        (0, compress(evts_flatbuffer(a), compression)),
        (1, b"imu, never decompressed"),
        (0, compress(evts_flatbuffer(b), compression)),
    ]
    aedat4_file(tmp_path / "h.aedat4", packets, streams=streams, compression=compression, table=False)
    ev, rec = read_recording(tmp_path / "h.aedat4")
    assert np.array_equal(ev, np.concatenate([a, b]))
    assert rec.dropped == {"IMUS": 1}


def _cut(path: Path, src: Path, size: int) -> Path:
    path.write_bytes(src.read_bytes()[:size])
    return path


def _event_packet_offsets(path: Path) -> list[tuple[int, int]]:
    """``(offset, payload size)`` of each event packet (stream 0) of a real file."""
    data = path.read_bytes()
    offset = 18 + struct.unpack_from("<i", data, 14)[0]
    out = []
    while offset + 8 <= len(data):
        sid, size = struct.unpack_from("<ii", data, offset)
        if not 0 <= sid < 16:
            break  # the data table
        if sid == 0:
            out.append((offset, size))
        offset += 8 + size
    return out


def test_truncated_mid_packet_names_the_packet(tmp_path: Path) -> None:
    src = real_file(DAVIS)
    o2, s2 = _event_packet_offsets(src)[2]
    cut = _cut(tmp_path / "cut.aedat4", src, o2 + 8 + s2 // 2)
    with pytest.raises(RecordingError) as err:
        read_recording(cut)
    assert err.value.offset == o2
    ev, rec = read_recording(cut, lenient=True)
    assert rec.damage is not None and rec.damage.offset == o2
    # exactly the events of the packets that ended before o2
    first_two = read_recording(_cut(tmp_path / "two.aedat4", src, o2), lenient=True)[0]
    assert len(ev) == len(first_two) > 0
    assert event_columns(ev) == event_columns(_aedat_reference(src)[: len(ev)], ("t", "x", "y", "on"))


def test_truncated_mid_header_and_at_packet_boundary(tmp_path: Path) -> None:
    src = real_file(DAVIS)
    o2, _ = _event_packet_offsets(src)[2]
    with pytest.raises(RecordingError) as err:
        read_recording(_cut(tmp_path / "a.aedat4", src, o2 + 5))
    assert err.value.offset == o2
    with pytest.raises(RecordingError, match="data table") as err:
        read_recording(_cut(tmp_path / "b.aedat4", src, o2))
    assert err.value.offset == o2  # where the data ended


def test_corrupt_lz4_packet(tmp_path: Path) -> None:
    src = real_file(DAVIS)
    o2, s2 = _event_packet_offsets(src)[2]
    data = bytearray(src.read_bytes())
    data[o2 + 8 + s2 // 2 : o2 + 8 + s2 // 2 + 64] = b"\xff" * 64
    (tmp_path / "c.aedat4").write_bytes(bytes(data))
    # LZ4 frames carry no checksum here: the damage shows as a failed block or a wrong length
    with pytest.raises(RecordingError) as err:
        read_recording(tmp_path / "c.aedat4")
    assert err.value.offset == o2


@pytest.mark.parametrize(("compression", "name"), [(1, "LZ4"), (3, "ZSTD")])
def test_cut_compressed_frame(tmp_path: Path, compression: int, name: str) -> None:
    good = compress(evts_flatbuffer(_events(3)), compression)
    cut = compress(evts_flatbuffer(_events(300)), compression)[:-9]
    offsets = aedat4_file(tmp_path / "z.aedat4", [(0, good), (0, cut)], compression=compression)
    with pytest.raises(RecordingError, match=f"valid {name}-compressed packet") as err:
        read_recording(tmp_path / "z.aedat4")
    assert err.value.offset == offsets[1]
    ev, _ = read_recording(tmp_path / "z.aedat4", lenient=True)
    assert np.array_equal(ev, _events(3))


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (evts_flatbuffer(_events(4), count=1000), "event vector"),
        (evts_flatbuffer(_events(4))[:-16], "size prefix"),
        (evts_flatbuffer(_events(4)).replace(b"EVTS", b"FRME"), "identifier"),
        (b"\x08\0\0\0\xff\xff\0\0EVTS", "flatbuffer"),
        (evts_flatbuffer(make_events([1], [64], [0], [1])), "sensor"),
    ],
    ids=["vector-too-long", "bad-prefix", "wrong-id", "root-out-of-bounds", "x-outside-sensor"],
)
def test_corrupt_flatbuffer_names_the_packet(tmp_path: Path, payload: bytes, match: str) -> None:
    good = evts_flatbuffer(_events(3))
    offsets = aedat4_file(tmp_path / "f.aedat4", [(0, good), (0, payload)])
    with pytest.raises(RecordingError, match=match) as err:
        read_recording(tmp_path / "f.aedat4")
    assert err.value.offset == offsets[1]
    ev, rec = read_recording(tmp_path / "f.aedat4", lenient=True)
    assert np.array_equal(ev, _events(3)) and rec.damage is not None


def test_bad_packet_headers(tmp_path: Path) -> None:
    offsets = aedat4_file(tmp_path / "s.aedat4", [(0, evts_flatbuffer(_events(2))), (7, b"")])
    with pytest.raises(RecordingError, match="stream id") as err:
        read_recording(tmp_path / "s.aedat4")
    assert err.value.offset == offsets[1]
    offsets = aedat4_file(tmp_path / "n.aedat4", [(0, evts_flatbuffer(_events(2)))])
    data = bytearray((tmp_path / "n.aedat4").read_bytes())
    data[offsets[0] + 4 : offsets[0] + 8] = (-5).to_bytes(4, "little", signed=True)
    (tmp_path / "n.aedat4").write_bytes(bytes(data))
    with pytest.raises(RecordingError, match="packet of -5 bytes") as err:
        read_recording(tmp_path / "n.aedat4")
    assert err.value.offset == offsets[0]


def test_header_damage_raises_at_open(tmp_path: Path) -> None:
    (tmp_path / "m.aedat4").write_bytes(b"#!AER-DAT4.0\r\n\x10\0\0\0short")
    with pytest.raises(RecordingError, match="IOHeader"):
        open_recording(tmp_path / "m.aedat4")
    aedat4_file(tmp_path / "x.aedat4", [], streams=((1, "IMUS", 0, 0),))
    with pytest.raises(RecordingError, match="EVTS stream"):
        open_recording(tmp_path / "x.aedat4")


PACKERS = {
    "lz4-sized": (1, lambda b: lz4.frame.compress(b, store_size=True)),
    "lz4-unsized": (1, lambda b: lz4.frame.compress(b, store_size=False)),
    "zstd-sized": (3, lambda b: zstandard.ZstdCompressor(write_content_size=True).compress(b)),
    "zstd-unsized": (3, lambda b: zstandard.ZstdCompressor(write_content_size=False).compress(b)),
}


@pytest.mark.parametrize("kind", PACKERS)
def test_decompressed_size_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    compression, packer = PACKERS[kind]
    small, big = evts_flatbuffer(_events(3)), evts_flatbuffer(_events(300))
    aedat4_file(tmp_path / "c.aedat4", [(0, packer(small)), (0, packer(big))], compression=compression)
    assert len(read_recording(tmp_path / "c.aedat4")[0]) == 303  # every frame kind decodes
    monkeypatch.setattr(pk, "MAX_PACKET_BYTES", 1024)
    monkeypatch.setattr(pk, "LZ4_MAX_RATIO", 1 << 20)  # no LZ4 frame is small enough to trust
    with pytest.raises(RecordingError, match="at most 1024 bytes"):
        read_recording(tmp_path / "c.aedat4")
    ev, _ = read_recording(tmp_path / "c.aedat4", lenient=True)
    assert len(ev) == 3
