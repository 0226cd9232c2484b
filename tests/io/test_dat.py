"""Prophesee DAT: the N-CARS sample against SOURCES and expelliarmus, header, versions, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator.io import RecordingError, detect_format, read_recording
from emulator.io.percent_header import parse_percent_header
from tests.io.make_files import assert_matches_sources, cut_copy, dat_bytes, event_tuples, read_all, real_file

NCARS = "tonic-testdata/sample_ncars.dat"
NCARS_DATA = 0x5B + 2  # three header lines, then the type and size bytes


def test_real_file_matches_sources() -> None:
    path = real_file(NCARS)
    assert detect_format(path) == "dat"
    ev, rec = read_all(path)
    assert_matches_sources(NCARS, ev, rec)
    assert (rec.info.width, rec.info.height) == (304, 240)  # no size in the header: ATIS Gen1
    assert rec.info.header["Version"] == "2"


def test_real_file_equals_expelliarmus() -> None:
    expelliarmus = pytest.importorskip("expelliarmus")
    path = real_file(NCARS)
    ev, _ = read_all(path)
    ref = expelliarmus.Wizard(encoding="dat").read(str(path))
    for k in "txyp":
        assert ev[k].astype(np.int64).tolist() == ref[k].astype(np.int64).tolist()


@pytest.mark.parametrize("chunk", [1, 7])
def test_tiny_chunks_equal_whole_read(chunk: int) -> None:
    path = real_file(NCARS)
    whole, _ = read_all(path)
    parts, _ = read_all(path, chunk_events=chunk)
    assert (parts == whole).all()


def test_percent_header(tmp_path: Path) -> None:
    path = tmp_path / "a.raw"
    path.write_bytes(
        b"% Date 2020-09-14 09:03:25\n% format EVT3;height=720;width=1280\n%   geometry   640x480  \n"
        b"% flag\n% Date again\n% end\n%binary that starts with 0x25"
    )
    offset, header = parse_percent_header(path)
    assert offset == path.read_bytes().index(b"%binary")
    assert header == {
        "Date": "2020-09-14 09:03:25",
        "format": "EVT3;height=720;width=1280",
        "geometry": "640x480",
        "flag": "",
        "end": "",
    }
    path.write_bytes(b"no header")
    assert parse_percent_header(path) == (0, {})


def test_real_header_offset() -> None:
    offset, header = parse_percent_header(real_file(NCARS))
    assert offset + 2 == NCARS_DATA
    assert header["Data"] == "file containing N9Chronocam7Event2dE events."


@pytest.mark.parametrize(
    ("size_lines", "size"),
    [(b"% Width 640\n% Height 480\n", (640, 480)), (b"% geometry 1280x720\n", (1280, 720)), (b"", (304, 240))],
)
def test_size_from_header(tmp_path: Path, size_lines: bytes, size: tuple[int, int]) -> None:
    path = tmp_path / "a.dat"
    path.write_bytes(dat_bytes([(5, 300, 200, 1)], header=b"% Data file containing Event2d events.\n" + size_lines))
    ev, rec = read_recording(path)
    assert (rec.info.width, rec.info.height) == size
    assert event_tuples(ev) == [(5, 300, 200, 1)]


def test_version_1_layout_and_timestamp_wrap(tmp_path: Path) -> None:
    path = tmp_path / "a.dat"
    events = [(2**32 - 10, 300, 200, 1), (5, 3, 239, 0)]
    path.write_bytes(dat_bytes(events, header=b"% Version 1\n", x_bits=9, y_bits=8))
    ev, _ = read_recording(path)
    assert event_tuples(ev) == [(2**32 - 10, 300, 200, 1), (2**32 + 5, 3, 239, 0)]


@pytest.mark.parametrize("k", [0, 1, 1000])
def test_truncated_copies_keep_whole_records(tmp_path: Path, k: int) -> None:
    path = real_file(NCARS)
    whole, _ = read_all(path)
    for extra in (1, 7):
        start = NCARS_DATA + 8 * k
        cut = cut_copy(path, tmp_path / "cut.dat", start + extra)
        with pytest.raises(RecordingError, match="8-byte record") as err:
            read_recording(cut)
        assert err.value.offset == start
        ev, _ = read_recording(cut, lenient=True)
        assert len(ev) == k and (ev == whole[:k]).all()


def test_header_without_records(tmp_path: Path) -> None:
    path = cut_copy(real_file(NCARS), tmp_path / "cut.dat", NCARS_DATA - 1)
    with pytest.raises(RecordingError, match="event type, event size") as err:
        read_recording(path, lenient=True)
    assert err.value.offset == NCARS_DATA - 2


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (dat_bytes([(1, 1, 1, 1)], event_type=0x0E), 51, "event type 0x00"),
        (dat_bytes([(1, 1, 1, 1)]).replace(b"\x00\x08", b"\x00\x10", 1), 52, "event size 8"),
        (dat_bytes([(1, 1, 1, 1)], header=b"% Version 7\n"), 0, "Version 1 or 2"),
        (dat_bytes([(1, 1, 1, 1)], header=b"% Width 64\n% Height wide\n"), 0, "integer"),
    ],
)
def test_bad_headers(tmp_path: Path, data: bytes, offset: int, message: str) -> None:
    # the default header is 51 bytes: the type byte is at 51, the size byte at 52
    path = tmp_path / "a.dat"
    path.write_bytes(data)
    with pytest.raises(RecordingError, match=message) as err:
        read_recording(path)
    assert err.value.offset == offset


@pytest.mark.parametrize("bad", [(3, 304, 1, 1), (3, 1, 240, 0), (3, 1, 1, 2)])
def test_field_out_of_range(tmp_path: Path, bad: tuple[int, int, int, int]) -> None:
    path = tmp_path / "a.dat"
    data = dat_bytes([(1, 1, 1, 1), (2, 2, 2, 0), bad, (4, 4, 4, 1)])
    path.write_bytes(data)
    with pytest.raises(RecordingError, match="x < 304, y < 240, p 0 or 1") as err:
        read_recording(path)
    assert err.value.offset == data.index(b"\x00\x08") + 2 + 2 * 8
    ev, _ = read_recording(path, lenient=True)
    assert event_tuples(ev) == [(1, 1, 1, 1), (2, 2, 2, 0)]
