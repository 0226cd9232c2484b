"""Prophesee EVT 3.0: the state machine word by word, agreement with expelliarmus, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator.io import RecordingError, detect_format, evt2, evt3, open_recording, read_recording
from emulator.io.base import concat
from emulator.io.percent_header import parse_percent_header
from tests.io.make_aedat4_evt import event_columns, evt3_word, raw_file, real_file, sources_events

SAMPLE = "expelliarmus/evt3_sample.raw"
HEADER = ["evt 3.0", "format EVT3;height=48;width=64"]
Y, X, BASE_X, V12, V8, LOW, C4, HIGH, TRIG, OTHERS, C12 = 0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF


def _write(tmp_path: Path, words: list[int], header: list[str] = HEADER, name: str = "a.raw") -> Path:
    return raw_file(tmp_path / name, header, words, 2)


def _time(t: int) -> list[int]:
    return [evt3_word(HIGH, t >> 12), evt3_word(LOW, t)]


def test_real_file_count_geometry_and_time() -> None:
    path = real_file(SAMPLE)
    ev, rec = read_recording(path)
    assert detect_format(path) == "evt3"
    assert len(ev) == sources_events(SAMPLE)
    assert (rec.info.width, rec.info.height) == (1280, 720)  # hal_plugin_gen41_evk3
    t = ev["t"].astype(np.int64)
    assert t[0] == 11718656 and t[-1] == 11727457  # 8.8 ms, inside the TIME_HIGH words' 2861..2863
    assert np.all(np.diff(t) >= 0)


def test_real_file_matches_expelliarmus_but_for_its_time_low_counter() -> None:
    """x, y, p and order are identical; expelliarmus 1.1.12 adds 4096 µs at every TIME_LOW that is
    lower than the previous one (its ``time_low_ovfs``), even right after the TIME_HIGH that already
    carried the wrap. This file repeats a TIME_HIGH/TIME_LOW pair a few µs ahead every 1000 µs, so
    those add 4096 µs each time. Our t is the spec's ``time_high << 12 | time_low``."""
    path = real_file(SAMPLE)
    expelliarmus = pytest.importorskip("expelliarmus")
    ev, _ = read_recording(path)
    ref = expelliarmus.Wizard(encoding="evt3", fpath=path).read()
    assert event_columns(ev, "xyp") == event_columns(ref, "xyp")
    extra = ref["t"].astype(np.int64) - ev["t"].astype(np.int64)
    start, _ = parse_percent_header(path)
    words = np.frombuffer(path.read_bytes()[start:], dtype="<u2")
    lows = (words[words >> 12 == LOW] & 0xFFF).astype(np.int64)
    assert np.all(extra % 4096 == 0) and np.all(np.diff(extra) >= 0)
    assert extra[-1] == 4096 * np.count_nonzero(np.diff(lows) < 0)


@pytest.mark.parametrize(("block_bytes", "chunk_events"), [(2, 1), (6, 5), (4096, 13), (1 << 20, 1 << 20)])
def test_tiny_blocks_and_chunks_match_whole_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int, chunk_events: int
) -> None:
    path = real_file(SAMPLE)
    if block_bytes < 4096:  # one numba call per word: a cut copy keeps it quick
        start, _ = parse_percent_header(path)
        path = tmp_path / "cut.raw"
        path.write_bytes(real_file(SAMPLE).read_bytes()[: start + 2 * 30_000])
    whole, _ = read_recording(path)
    monkeypatch.setattr(evt2, "BLOCK_BYTES", block_bytes)
    chunks = list(open_recording(path, chunk_events=chunk_events).chunks)
    assert np.array_equal(concat(chunks), whole)
    assert all(len(c) == chunk_events for c in chunks[:-1])


def test_word_by_word(tmp_path: Path) -> None:
    t0 = (3 << 12) | 100
    words = _time(t0) + [evt3_word(Y, 5), evt3_word(X, (1 << 11) | 7), evt3_word(X, 8)]
    words += [evt3_word(BASE_X, (1 << 11) | 10), evt3_word(V12, 0b1000_0000_0101), evt3_word(V8, 0b1000_0001)]
    words += [evt3_word(LOW, 101), evt3_word(Y, 1 << 11 | 47), evt3_word(BASE_X, 0), evt3_word(V8, 0b10)]
    words += [evt3_word(TRIG, 1), evt3_word(OTHERS, 0), evt3_word(C12, 0), evt3_word(C4, 0)]
    ev, rec = read_recording(_write(tmp_path, words))
    t1 = t0 + 1
    assert event_columns(ev) == [
        [t0] * 7 + [t1],
        [7, 8, 10, 12, 21, 22, 29, 1],
        [5] * 7 + [47],
        [1, 0, 1, 1, 1, 1, 1, 0],
    ]
    assert rec.dropped == {"trigger": 1, "other": 3}


def test_time_high_wrap_adds_2_pow_24(tmp_path: Path) -> None:
    words = _time((1 << 24) - 2) + [evt3_word(Y, 0), evt3_word(X, 0)]
    words += _time(3) + [evt3_word(X, 1)] + _time(4) + [evt3_word(X, 2)]
    ev, _ = read_recording(_write(tmp_path, words))
    assert ev["t"].tolist() == [(1 << 24) - 2, (1 << 24) + 3, (1 << 24) + 4]


def test_full_vectors_split_exactly_into_tiny_chunks(tmp_path: Path) -> None:
    words = [evt3_word(Y, 1), evt3_word(BASE_X, 0), evt3_word(V12, 0xFFF), evt3_word(V12, 0xFFF)]
    path = _write(tmp_path, words)
    for chunk_events in (1, 5, 12, 13, 24, 100):
        chunks = list(open_recording(path, chunk_events=chunk_events).chunks)
        assert [len(c) for c in chunks[:-1]] == [chunk_events] * (len(chunks) - 1)
        assert concat(chunks)["x"].tolist() == list(range(24))


def test_vector_past_the_edge_names_its_word(tmp_path: Path) -> None:
    words = [evt3_word(Y, 1), evt3_word(X, 3), evt3_word(BASE_X, 60), evt3_word(V8, 0b1_0001)]
    path = _write(tmp_path, words)
    with pytest.raises(RecordingError, match="64x48") as err:
        read_recording(path)
    assert err.value.offset == path.stat().st_size - 2
    ev, rec = read_recording(path, lenient=True)
    assert ev["x"].tolist() == [3]  # nothing of the damaged vector
    assert rec.damage is not None


@pytest.mark.parametrize("kind", [0x1, 0x9, 0xB, 0xC, 0xD])
def test_unknown_word_type_names_its_offset(tmp_path: Path, kind: int) -> None:
    path = _write(tmp_path, [evt3_word(Y, 1), evt3_word(X, 1), evt3_word(kind, 0), evt3_word(X, 2)])
    with pytest.raises(RecordingError) as err:
        read_recording(path)
    assert err.value.offset == path.stat().st_size - 4


def test_y_outside_geometry_and_odd_tail(tmp_path: Path) -> None:
    path = _write(tmp_path, [evt3_word(Y, 48), evt3_word(X, 1)])
    with pytest.raises(RecordingError) as err:
        read_recording(path)
    assert err.value.offset == path.stat().st_size - 2
    path = _write(tmp_path, [evt3_word(Y, 1), evt3_word(X, 1)], name="odd.raw")
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(RecordingError, match="2-byte word") as err:
        read_recording(path)
    assert err.value.offset == path.stat().st_size - 1


def test_probe_and_geometry(tmp_path: Path) -> None:
    assert detect_format(_write(tmp_path, [], ["format EVT3;height=720;width=1280"], "a.bin")) == "evt3"
    rec = open_recording(_write(tmp_path, [], ["evt 3.0", "plugin_name hal_plugin_imx636_evk4"], "b.raw"))
    assert (rec.info.format, rec.info.width, rec.info.height) == ("evt3", 1280, 720)
    assert not evt3.probe(b"% evt 2.0\n", Path("c.raw"))
    assert not evt3.probe(b"% Date 2020\n", Path("d.raw"))
