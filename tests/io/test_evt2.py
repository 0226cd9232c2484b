"""Prophesee EVT 2.0: agreement with expelliarmus, state across blocks, geometry, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator.io import RecordingError, detect_format, evt2, open_recording, read_recording
from emulator.io.base import concat
from emulator.io.percent_header import parse_percent_header
from tests.io.make_aedat4_evt import event_columns, evt2_cd, evt2_time_high, raw_file, real_file, sources_events

SAMPLE = "expelliarmus/evt2_sample.raw"
HEADER = ["evt 2.0", "geometry 64x48"]


def _write(tmp_path: Path, words: list[int], header: list[str] = HEADER, name: str = "a.raw") -> Path:
    return raw_file(tmp_path / name, header, words, 4)


def test_real_file_count_and_geometry() -> None:
    path = real_file(SAMPLE)
    ev, rec = read_recording(path)
    assert detect_format(path) == "evt2"
    assert len(ev) == sources_events(SAMPLE)
    assert (rec.info.width, rec.info.height) == (640, 480)  # hal_plugin_gen3_fx3
    assert rec.info.header["geometry_source"] == "plugin_name"


def test_real_file_matches_expelliarmus() -> None:
    path = real_file(SAMPLE)
    expelliarmus = pytest.importorskip("expelliarmus")
    ev, _ = read_recording(path)
    ref = expelliarmus.Wizard(encoding="evt2", fpath=path).read()
    assert event_columns(ev) == event_columns(ref)


@pytest.mark.parametrize(("block_bytes", "chunk_events"), [(4, 1), (12, 7), (4096, 1000), (1 << 20, 1 << 20)])
def test_tiny_blocks_and_chunks_match_whole_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int, chunk_events: int
) -> None:
    path = real_file(SAMPLE)
    if block_bytes < 4096:  # one numba call per word: a cut copy keeps it quick
        start, _ = parse_percent_header(path)
        path = tmp_path / "cut.raw"
        path.write_bytes(real_file(SAMPLE).read_bytes()[: start + 4 * 20_000])
    whole, _ = read_recording(path)
    monkeypatch.setattr(evt2, "BLOCK_BYTES", block_bytes)
    chunks = list(open_recording(path, chunk_events=chunk_events).chunks)
    assert np.array_equal(concat(chunks), whole)
    assert all(len(c) == chunk_events for c in chunks[:-1])


def test_decoding_rules(tmp_path: Path) -> None:
    t1, t2 = (5 << 6) + 3, (1 << 34) - 64 + 10
    words = [evt2_time_high(t1), evt2_cd(t1, 1, 2, 1), evt2_cd(t1 + 1, 63, 47, 0)]
    words += [0xA << 28, 0xE << 28, 0xF << 28]  # trigger, others, continued
    words += [evt2_time_high(t2), evt2_cd(t2, 3, 4, 1), evt2_time_high(0), evt2_cd(7, 5, 6, 0)]
    ev, rec = read_recording(_write(tmp_path, words))
    assert event_columns(ev) == [[t1, t1 + 1, t2, (1 << 34) + 7], [1, 63, 3, 5], [2, 47, 4, 6], [1, 0, 1, 0]]
    assert rec.dropped == {"trigger": 1, "other": 2}
    assert rec.info.time_origin == "device clock"


def test_unknown_word_type_names_its_offset(tmp_path: Path) -> None:
    words = [evt2_time_high(64), evt2_cd(64, 1, 1, 1), 0x3 << 28, evt2_cd(65, 2, 2, 1)]
    path = _write(tmp_path, words)
    start = path.stat().st_size - 16
    with pytest.raises(RecordingError) as err:
        read_recording(path)
    assert err.value.offset == start + 8
    ev, rec = read_recording(path, lenient=True)
    assert len(ev) == 1 and rec.damage is not None


def test_event_outside_geometry_is_corrupt(tmp_path: Path) -> None:
    path = _write(tmp_path, [evt2_cd(0, 10, 10, 1), evt2_cd(0, 64, 0, 1)])
    with pytest.raises(RecordingError, match="64x48") as err:
        read_recording(path)
    assert err.value.offset == path.stat().st_size - 4


def test_truncated_word(tmp_path: Path) -> None:
    path = _write(tmp_path, [evt2_cd(0, 1, 1, 1)])
    path.write_bytes(path.read_bytes() + b"\x01\x02")
    with pytest.raises(RecordingError, match="4-byte word") as err:
        read_recording(path)
    assert err.value.offset == path.stat().st_size - 2
    assert len(read_recording(path, lenient=True)[0]) == 1


@pytest.mark.parametrize(
    ("header", "size", "source"),
    [
        (["evt 2.0", "geometry 320x240"], (320, 240), "geometry"),
        (["format EVT2;height=480;width=640"], (640, 480), "format"),
        (["evt 2.0", "plugin_name hal_plugin_gen41_evk3"], (1280, 720), "plugin_name"),
        (["evt 2.0", "plugin_name hal_plugin_gen3_fx3"], (640, 480), "plugin_name"),
        (["evt 2.0"], (1280, 720), "assumed"),
    ],
)
def test_geometry_sources(tmp_path: Path, header: list[str], size: tuple[int, int], source: str) -> None:
    rec = open_recording(_write(tmp_path, [], header))
    assert (rec.info.width, rec.info.height) == size
    assert rec.info.header["geometry_source"] == source


def test_probe(tmp_path: Path) -> None:
    assert detect_format(_write(tmp_path, [], ["format EVT2;height=480;width=640"], "a.bin")) == "evt2"
    assert detect_format(_write(tmp_path, [], ["evt 2.0"], "b.dat")) == "evt2"
    assert detect_format(_write(tmp_path, [], ["Date 2020-09-14"], "c.raw")) == "evt2"  # .raw breaks the tie
    assert not evt2.probe(b"% evt 3.0\n", Path("d.raw"))
    assert not evt2.probe(b"% format EVT3;height=720;width=1280\n", Path("e.raw"))
    assert not evt2.probe(b"#!AER-DAT2.0\r\n", Path("f.raw"))
    assert not evt2.probe(b"% evt 2.1\n", Path("g.raw"))  # EVT 2.1 is another encoding
    assert not evt2.probe(b"% format EVT21;height=720;width=1280\n", Path("h.raw"))


def test_header_naming_another_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="EVT2"):
        evt2.open_(_write(tmp_path, [], ["evt 3.0"]), 100, False)
