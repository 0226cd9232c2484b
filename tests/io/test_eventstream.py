"""Event Stream (.es) DVS: the real faery file, byte-coded time, orientation, damage."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.io import RecordingError, detect_format, read_recording
from emulator.io import eventstream as es
from tests.io.make_files import (
    assert_matches_sources,
    cut_copy,
    es_bytes,
    es_reference,
    event_tuples,
    read_all,
    real_file,
)

DVS_ES = "faery/dvs.es"
HEIGHT = 240


def test_real_file_matches_sources() -> None:
    ev, rec = read_all(real_file(DVS_ES))
    assert_matches_sources(DVS_ES, ev, rec)
    assert rec.info.format == "es" and rec.info.header == {"version": "2.0.0", "type": "DVS"}


def test_real_file_equals_plain_python_decode() -> None:
    path = real_file(DVS_ES)
    ev, _ = read_all(path)
    ref = es_reference(path.read_bytes()[:200_000])
    assert event_tuples(ev[: len(ref)]) == [(t, x, HEIGHT - 1 - y, p) for _, t, x, y, p in ref]


def test_real_file_in_small_chunks() -> None:
    path = real_file(DVS_ES)
    whole, _ = read_all(path)
    parts, _ = read_all(path, chunk_events=97)  # 485-byte blocks: events split across blocks
    assert (parts == whole).all()


def test_time_coding_and_orientation(tmp_path: Path) -> None:
    events = [(0, 0, 0, 1), (126, 3, 9, 0), (127, 4, 1, 1), (1000, 5, 2, 0), (1000, 6, 3, 1)]
    path = tmp_path / "a.es"
    path.write_bytes(es_bytes(events, 10, 12))
    assert detect_format(path) == "es"
    for chunk in (1, 2, 100):
        ev, rec = read_all(path, chunk_events=chunk)
        assert event_tuples(ev) == [(t, x, 12 - 1 - y, p) for t, x, y, p in events]  # y = 0 is the bottom row in ES
    assert (rec.info.width, rec.info.height) == (10, 12)


def test_reset_bytes_are_skipped(tmp_path: Path) -> None:
    data = es_bytes([(5, 1, 1, 1)], 4, 4)
    path = tmp_path / "a.es"
    path.write_bytes(data[:20] + b"\xfe\xff\xfe" + data[20:])
    ev, _ = read_all(path)
    assert event_tuples(ev) == [(127 + 5, 1, 2, 1)]


def test_truncated_copies_keep_the_events_before_the_cut(tmp_path: Path) -> None:
    path = real_file(DVS_ES)
    data = path.read_bytes()[:50_000]
    ref = es_reference(data)
    for k in (0, 1, 2, 777, 5000):
        start = ref[k][0]
        for extra in (1, 4):
            cut = cut_copy(path, tmp_path / "cut.es", start + extra)
            with pytest.raises(RecordingError, match="5-byte event") as err:
                read_recording(cut)
            assert err.value.offset == start
            ev, rec = read_recording(cut, lenient=True)
            assert len(ev) == k and rec.damage is not None and rec.damage.offset == start


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (b"Event Strean\x02\x00\x00\x01" + b"\x00" * 4, 0, "magic"),
        (b"Event Stream\x01\x00\x00\x01" + b"\x00" * 4, 12, "version 2"),
        (b"Event Stream\x02\x00\x00\x02" + b"\x40\x01\xf0\x00", 15, r"type 2 \(ATIS\)"),
        (b"Event Stream\x02\x00\x00\x04" + b"\x40\x01\xf0\x00", 15, r"type 4 \(color\)"),
        (b"Event Stream\x02\x00\x00\x01\x40", 16, "width and height"),
    ],
)
def test_bad_headers(tmp_path: Path, data: bytes, offset: int, message: str) -> None:
    path = tmp_path / "a.es"
    path.write_bytes(data)
    with pytest.raises(RecordingError, match=message) as err:
        es.open_(path, 16, lenient=True)  # header damage is fatal even when lenient
    assert err.value.offset == offset


def test_address_outside_the_sensor(tmp_path: Path) -> None:
    path = tmp_path / "a.es"
    path.write_bytes(es_bytes([(1, 1, 1, 1), (2, 2, 2, 0), (3, 1, 4, 1)], 4, 4))  # y = 4 on a 4-row sensor
    with pytest.raises(RecordingError, match="y < 4") as err:
        read_recording(path)
    assert err.value.offset == 20 + 2 * 5
    ev, _ = read_recording(path, lenient=True)
    assert len(ev) == 2
