"""jAER AEDAT 2.0: orientation, chunking, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator.io import RecordingError, aedat2, detect_format, open_recording, read_recording
from emulator.io.base import concat
from proto.events import EVENT_DTYPE
from tests.real_data import real_file

SHORT = "colleenpamchen-jAER/DVS128-2017-03-21-short.aedat"


def _write(path: Path, records: list[tuple[int, int]], header: bytes = b"#!AER-DAT2.0\r\n# AEChip: DVS128\r\n") -> Path:
    body = np.array(records, dtype=">u4").tobytes()
    path.write_bytes(header + body)
    return path


def _addr(x_raw: int, y_raw: int, p_raw: int) -> int:
    return (y_raw << 8) | (x_raw << 1) | p_raw


def test_orientation_is_upright(tmp_path: Path) -> None:
    # raw x counts from the right, raw y from the bottom, raw polarity 0 is ON
    f = _write(tmp_path / "a.aedat", [(_addr(0, 0, 0), 10), (_addr(127, 127, 1), 20)])
    ev, _ = read_recording(f)
    assert ev["x"].tolist() == [127, 0]
    assert ev["y"].tolist() == [127, 0]
    assert ev["p"].tolist() == [1, 0]
    assert ev["t"].tolist() == [10, 20]


def test_special_events_are_counted_not_returned(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.aedat", [(_addr(1, 1, 0), 10), (1 << 15, 11), (_addr(2, 2, 0), 12)])
    ev, rec = read_recording(f)
    assert len(ev) == 2
    assert rec.dropped == {"special": 1}


def test_timestamp_wrap_is_unwrapped(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.aedat", [(0, 2**32 - 5), (0, 3)])
    ev, _ = read_recording(f)
    assert ev["t"].tolist() == [2**32 - 5, 2**32 + 3]


def test_chunks_equal_whole_read() -> None:
    path = real_file(SHORT)
    whole, _ = read_recording(path)
    chunks = list(open_recording(path, chunk_events=1000).chunks)
    assert max(len(c) for c in chunks) <= 1000
    np.testing.assert_array_equal(concat(chunks), whole)


def test_truncated_copy_names_offset_and_lenient_keeps_events(tmp_path: Path) -> None:
    data = real_file(SHORT).read_bytes()
    whole, _ = read_recording(real_file(SHORT))
    header_len = len(data) - 8 * len(whole)
    cut = header_len + 8 * 1000 + 5  # 1000 whole records, then 5 bytes of the next
    f = tmp_path / "cut.aedat"
    f.write_bytes(data[:cut])
    with pytest.raises(RecordingError) as err:
        read_recording(f)
    assert err.value.offset == header_len + 8 * 1000
    assert err.value.path == f
    ev, rec = read_recording(f, lenient=True)
    np.testing.assert_array_equal(ev, whole[:1000])
    assert rec.damage is not None and rec.damage.offset == header_len + 8 * 1000


def test_corrupt_address_names_offset(tmp_path: Path) -> None:
    data = bytearray(real_file(SHORT).read_bytes())
    whole, _ = read_recording(real_file(SHORT))
    header_len = len(data) - 8 * len(whole)
    bad = header_len + 8 * 500
    data[bad : bad + 4] = b"\xff\xff\xff\xff"
    f = tmp_path / "bad.aedat"
    f.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match="DVS128 address") as err:
        read_recording(f)
    assert err.value.offset == bad
    ev, _ = read_recording(f, lenient=True)
    assert len(ev) == 500


def test_unknown_content_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "x.aedat"
    f.write_bytes(b"hello world, not events")
    with pytest.raises(RecordingError) as err:
        detect_format(f)
    assert err.value.offset == 0


def test_other_jaer_chips_are_refused(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "d.aedat", [(0, 1)], header=b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n"
    )
    with pytest.raises(RecordingError, match="AEChip"):
        read_recording(f)


def _reference(records: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """The record loop of the former numba decoder, in plain Python: ``(events, specials, wraps, bad)``."""
    rows, specials, offset, prev = [], 0, 0, 0
    bad = -1
    for i, (addr, ts) in enumerate(records.tolist()):
        if addr >> 16:
            bad = i
            break
        if ts + 2**31 < prev:
            offset += 2**32
        prev = ts
        if addr & (1 << 15):
            specials += 1
            continue
        rows.append((ts + offset, 127 - ((addr >> 1) & 0x7F), 127 - ((addr >> 8) & 0x7F), 1 - (addr & 1)))
    events = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for k, column in zip("txyp", np.array(rows, dtype=np.int64).reshape(-1, 4).T, strict=True):
        events[k] = column
    return events, specials, offset >> 32, bad


def _random_records(rng: np.random.Generator, n: int, bad: int | None) -> np.ndarray:
    """Addresses with ~5% special events; timestamps that mostly rise, with wraps (drops of more
    than 2^31), drops and rises of exactly 2^31 (no wrap), random jumps up and back down."""
    addr = rng.integers(0, 1 << 15, n, dtype=np.int64)
    addr[rng.random(n) < 0.05] |= 1 << 15
    ts = np.cumsum(rng.integers(0, 5000, n, dtype=np.int64)) + int(rng.integers(0, 2**32))
    jumps = rng.random(n) < 0.02
    ts[jumps] = rng.integers(0, 2**32, int(np.count_nonzero(jumps)))
    ts %= 2**32
    for i in rng.integers(1, n, 5):
        ts[i] = ts[i - 1] + 2**31 if ts[i - 1] < 2**31 else ts[i - 1] - 2**31  # the boundary, either way
    if bad is not None:
        addr[bad] = int(rng.integers(1 << 16, 1 << 32))
    return np.stack([addr, ts], axis=1)


@pytest.mark.parametrize("seed", range(6))
def test_numpy_decoder_matches_the_record_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(aedat2, "PART_RECORDS", 37)  # state carried across parts as across blocks
    rng = np.random.default_rng(seed)
    n = 3000
    bad = None if seed % 2 == 0 else int(rng.integers(n // 2, n))
    records = _random_records(rng, n, bad)
    header = b"#!AER-DAT2.0\r\n# AEChip: DVS128\r\n"
    f = _write(tmp_path / "r.aedat", [tuple(r) for r in records.tolist()], header)
    want, specials, wraps, want_bad = _reference(records)
    assert wraps > 0 and specials > 0 and want_bad == (-1 if bad is None else bad)
    for chunk_events in (1, 100, 1 << 20):
        rec = open_recording(f, chunk_events=chunk_events, lenient=True)
        ev = concat(rec.chunks)
        assert ev.tobytes() == want.tobytes()  # byte-identical events, padding included
        assert rec.dropped == {"special": specials}
        if bad is None:
            assert rec.damage is None
        else:
            assert rec.damage is not None
            assert rec.damage.offset == len(header) + 8 * bad
            assert rec.damage.found == f"0x{int(records[bad, 0]):08x}"
    if bad is not None:
        with pytest.raises(RecordingError, match="DVS128 address") as err:
            read_recording(f)
        assert err.value.offset == len(header) + 8 * bad
