"""AEDAT 3.1 (DVS128 Gesture): packets, overflow, invalid events, labels, damage — on hand-built files."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.io import Label, RecordingError, detect_format, read_recording
from emulator.io.aedat31 import sensor_size
from tests.io.make_files import (
    AEDAT31_HEADER,
    aedat31_file,
    cut_copy,
    event_tuples,
    packet,
    polarity_packet,
    read_all,
)

# (timestamp, x, y, p, valid)
FIRST = [(10, 0, 0, 1, True), (11, 127, 127, 0, True), (12, 5, 6, 1, True)]
SECOND = [(20, 1, 2, 0, True), (21, 3, 4, 1, False), (22, 7, 8, 1, True)]


def _gesture(tmp_path: Path) -> tuple[Path, list[int]]:
    """Two polarity packets around a special-event packet, the second after a timestamp overflow."""
    special = packet(0, b"\x00" * 16)  # two 8-byte special events
    path = tmp_path / "user01_fluorescent.aedat"
    return path, aedat31_file(path, [polarity_packet(FIRST), special, polarity_packet(SECOND, ts_overflow=1)])


def test_round_trip_and_packets(tmp_path: Path) -> None:
    path, _ = _gesture(tmp_path)
    assert detect_format(path) == "aedat3.1"
    ev, rec = read_all(path)
    wrap = 1 << 31
    assert event_tuples(ev) == [
        (10, 0, 0, 1),
        (11, 127, 127, 0),
        (12, 5, 6, 1),
        (wrap + 20, 1, 2, 0),
        (wrap + 22, 7, 8, 1),
    ]
    assert rec.dropped == {"invalid": 1, "packet_type_0": 2}
    assert (rec.info.width, rec.info.height, rec.info.time_origin) == (128, 128, "device clock")
    assert rec.info.header["Format"] == "RAW"


@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
def test_tiny_chunks_equal_whole_read(tmp_path: Path, chunk: int) -> None:
    path, _ = _gesture(tmp_path)
    whole, _ = read_all(path)
    parts, _ = read_all(path, chunk_events=chunk)  # blocks of 8·chunk bytes split headers and packets
    assert event_tuples(parts) == event_tuples(whole)


def test_labels_csv_beside_the_file(tmp_path: Path) -> None:
    path, _ = _gesture(tmp_path)
    path.with_name("user01_fluorescent_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,10,12\n3,20,22\n")
    _, rec = read_recording(path)
    assert rec.info.labels == (Label(1, 10, 12), Label(3, 20, 22))


def test_bad_labels_row_names_the_csv(tmp_path: Path) -> None:
    path, _ = _gesture(tmp_path)
    csv = path.with_name("user01_fluorescent_labels.csv")
    csv.write_text("class,startTime_usec,endTime_usec\n1,10,twelve\n")
    with pytest.raises(RecordingError) as err:
        read_recording(path)
    assert err.value.path == csv and err.value.offset == len("class,startTime_usec,endTime_usec\n")


@pytest.mark.parametrize(
    ("packet_index", "into"), [(1, 5), (1, 28), (1, 28 + 3), (2, 27), (2, 28 + 8 + 3), (2, 28 + 16)]
)
def test_truncated_mid_packet(tmp_path: Path, packet_index: int, into: int) -> None:
    path, offsets = _gesture(tmp_path)
    cut = cut_copy(path, tmp_path / "cut.aedat", offsets[packet_index] + into)
    with pytest.raises(RecordingError) as err:
        read_recording(cut)
    assert err.value.offset == offsets[packet_index]  # damage starts at the packet that does not fit
    ev, rec = read_recording(cut, lenient=True)
    assert event_tuples(ev) == [(t, x, y, p) for t, x, y, p, _ in FIRST]
    assert rec.damage is not None and rec.damage.offset == offsets[packet_index]


def test_cut_between_packets_is_a_shorter_file(tmp_path: Path) -> None:
    path, offsets = _gesture(tmp_path)
    ev, rec = read_all(cut_copy(path, tmp_path / "cut.aedat", offsets[2]))
    assert len(ev) == len(FIRST) and rec.damage is None


def test_packet_claiming_more_bytes_than_the_file_has(tmp_path: Path) -> None:
    path = tmp_path / "a.aedat"
    liar = packet(1, polarity_packet(SECOND)[28:], capacity=1000)
    offsets = aedat31_file(path, [polarity_packet(FIRST), liar])
    with pytest.raises(RecordingError, match="8000 bytes of events") as err:
        read_recording(path)
    assert err.value.offset == offsets[1]
    ev, _ = read_recording(path, lenient=True)
    assert len(ev) == len(FIRST)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (packet(-2, b""), "non-negative eventType"),
        (packet(1, b"\x00" * 8, size=4, capacity=2), "eventSize"),
        (packet(1, b"\x00" * 8, number=1, valid=2), "eventValid"),
        (packet(1, b"\x00" * 8, ts_overflow=-1), "eventTSOverflow"),
        (polarity_packet([(30, 128, 0, 1, True)]), "x < 128"),
        (polarity_packet([(-5, 1, 1, 1, True)]), "non-negative timestamp"),
    ],
)
def test_corrupt_packet_is_damage_at_its_offset(tmp_path: Path, bad: bytes, message: str) -> None:
    path = tmp_path / "a.aedat"
    offsets = aedat31_file(path, [polarity_packet(FIRST), bad])
    with pytest.raises(RecordingError, match=message) as err:
        read_recording(path)
    event_at = offsets[1] + 28 if message in ("x < 128", "non-negative timestamp") else offsets[1]
    assert err.value.offset == event_at
    ev, _ = read_recording(path, lenient=True)
    assert len(ev) == len(FIRST)


def test_header_problems(tmp_path: Path) -> None:
    no_end = tmp_path / "no_end.aedat"
    no_end.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n" + polarity_packet(FIRST))
    with pytest.raises(RecordingError, match="END-HEADER") as err:
        read_recording(no_end)
    assert err.value.offset == len(b"#!AER-DAT3.1\r\n#Format: RAW\r\n")
    compressed = tmp_path / "compressed.aedat"
    aedat31_file(compressed, [], header=AEDAT31_HEADER.replace(b"RAW", b"SerializedTS"))
    with pytest.raises(RecordingError, match="Format: RAW"):
        read_recording(compressed)


def test_sensor_size_from_header() -> None:
    assert sensor_size(["Source 1: DVS128"]) == (128, 128)
    assert sensor_size(["Source 2: DAVIS346B"]) == (346, 260)
    assert sensor_size(['-Source 1: <attr key="dvsSizeX" type="short">240</attr><attr key="dvsSizeY">180</attr>']) == (
        240,
        180,
    )
    assert sensor_size([]) == (128, 128)


def test_out_of_range_for_a_stated_smaller_sensor(tmp_path: Path) -> None:
    path = tmp_path / "a.aedat"
    aedat31_file(
        path, [polarity_packet([(1, 200, 10, 1, True)])], header=AEDAT31_HEADER.replace(b"DVS128", b"DAVIS240C")
    )
    ev, rec = read_recording(path)
    assert (rec.info.width, rec.info.height) == (240, 180) and ev["x"].tolist() == [200]


def test_empty_packets_and_file(tmp_path: Path) -> None:
    path = tmp_path / "a.aedat"
    aedat31_file(path, [packet(1, b""), polarity_packet(FIRST[:1]), packet(2, b"")])
    ev, rec = read_recording(path)
    assert len(ev) == 1 and rec.dropped == {"invalid": 0}
    aedat31_file(path, [])
    ev, _ = read_recording(path)
    assert len(ev) == 0
