"""tonic's DVS Gesture .npy clips: ms → µs exactly as tonic, labels, probe, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.lib.recfunctions as rfn
import pytest

from emulator.io import Label, RecordingError, detect_format, read_recording, tonic_npy
from emulator.io.npy_header import read_npy_header
from tests.io.make_files import cut_copy, event_tuples, read_all


def _clip(n: int = 500, seed: int = 0) -> np.ndarray:
    """A gesture-like clip: columns x, y, p, t (ms, non-decreasing)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(0, 3, n)) + 1000
    return np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t], axis=1)


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _tonic_way(path: Path) -> list[tuple[int, int, int, int]]:
    """What tonic's ``DVSGesture.__getitem__`` makes of the file (its own dtype and conversion)."""
    dvsgesture = pytest.importorskip("tonic.datasets.dvsgesture")
    events = np.load(path)
    events[:, 3] *= 1000  # convert from ms to us
    structured = rfn.unstructured_to_structured(events, dvsgesture.DVSGesture.dtype)
    return event_tuples(structured)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float64, np.float32])
def test_equals_tonic(tmp_path: Path, dtype: type) -> None:
    clip: np.ndarray = _clip().astype(dtype)
    if np.dtype(dtype).kind == "f":
        clip[:, 3] += 0.3337  # sub-ms parts: truncation and float32 rounding must match tonic's
    path = _save(tmp_path / "7.npy", clip)
    assert detect_format(path) == "tonic-npy"
    ev, rec = read_all(path)
    assert event_tuples(ev) == _tonic_way(path)
    assert (rec.info.width, rec.info.height) == (128, 128)


def test_label_from_the_file_name(tmp_path: Path) -> None:
    clip = _clip()
    _, rec = read_all(_save(tmp_path / "3.npy", clip))
    assert rec.info.labels == (Label(3, int(clip[0, 3]) * 1000, int(clip[-1, 3]) * 1000),)
    _, rec = read_all(_save(tmp_path / "clip.npy", clip))
    assert rec.info.labels == ()


@pytest.mark.parametrize("chunk", [1, 7])
def test_tiny_chunks_equal_whole_read(tmp_path: Path, chunk: int) -> None:
    path = _save(tmp_path / "1.npy", _clip(50))
    whole, _ = read_all(path)
    parts, _ = read_all(path, chunk_events=chunk)
    assert (parts == whole).all()


def test_column_major_file(tmp_path: Path) -> None:
    clip = _clip(40)
    c_order, _ = read_all(_save(tmp_path / "1.npy", clip))
    f_order, _ = read_all(_save(tmp_path / "2.npy", np.asfortranarray(clip)), chunk_events=3)
    assert (c_order == f_order).all()


def test_probe_wants_an_n_by_4_numeric_table(tmp_path: Path) -> None:
    arrays: dict[str, np.ndarray] = {
        "three": np.zeros((5, 3)),
        "flat": np.zeros(20),
        "bytes": np.zeros((5, 4), np.uint8),
        "structured": np.zeros(5, [("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")]),
    }
    for name, array in arrays.items():
        with pytest.raises(RecordingError, match="known recording format"):
            detect_format(_save(tmp_path / f"{name}.npy", array))


def test_truncated_copies_keep_whole_rows(tmp_path: Path) -> None:
    path = _save(tmp_path / "4.npy", _clip(100))
    whole, _ = read_all(path)
    with path.open("rb") as f:
        start = read_npy_header(f, path).data_offset
    for k in (0, 1, 60):
        for extra in (1, 31):
            cut = cut_copy(path, tmp_path / "cut.npy", start + 32 * k + extra)
            with pytest.raises(RecordingError, match="100 rows") as err:
                read_recording(cut)
            assert err.value.offset == start + 32 * k
            ev, _ = read_recording(cut, lenient=True)
            assert len(ev) == k and (ev == whole[:k]).all()


def test_cut_header(tmp_path: Path) -> None:
    path = cut_copy(_save(tmp_path / "4.npy", _clip(10)), tmp_path / "cut.npy", 40)
    with pytest.raises(RecordingError, match="valid .npy header") as err:  # not probed (no shape): tried directly
        tonic_npy.open_(path, 16, lenient=True)
    assert err.value.offset == 0


@pytest.mark.parametrize(("column", "value"), [(0, 128), (1, -1), (2, 2), (3, -1), (3, np.nan), (0, np.inf)])
def test_out_of_range_row(tmp_path: Path, column: int, value: float) -> None:
    clip = _clip(10).astype(np.float64)
    clip[6, column] = value
    path = _save(tmp_path / "5.npy", clip)
    with pytest.raises(RecordingError, match="x, y in 0–127") as err:
        read_recording(path)
    with path.open("rb") as f:
        assert err.value.offset == read_npy_header(f, path).data_offset + 6 * 32
    ev, _ = read_recording(path, lenient=True)
    assert len(ev) == 6


def test_wrapped_integer_time_is_damage(tmp_path: Path) -> None:
    clip = _clip(10).astype(np.int16)
    clip[4, 3] = 30_000  # 30 s in ms: × 1000 wraps an int16
    path = _save(tmp_path / "6.npy", clip)
    with pytest.raises(RecordingError, match="t >= 0"):
        read_recording(path)


@pytest.mark.parametrize(
    "dtype", [np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64, np.float32, np.float64]
)
def test_row_time_agrees_with_to_events(dtype: type) -> None:
    """The numpy one-row check behind the labels (read at open, without numba) refuses and
    converts exactly the rows the numba packer does, edge values included."""
    integer = np.dtype(dtype).kind in "iu"
    info = np.iinfo(dtype) if integer else np.finfo(dtype)
    edges: list[float] = [0, 1, 2, 127, 128, 255, 30_000, 2**31 // 1000, 2**63 // 1000, 2**53, -1]
    edges += [int(info.max), int(info.min)] if integer else [float(info.max), float(info.min)]
    if not integer:
        edges += [0.5, 127.9, np.nan, np.inf, -np.inf, 2.0**63 / 1000, 9.223372036854775e15]
    values = np.array([v for v in edges if np.isnan(v) or info.min <= v <= info.max], dtype=dtype)
    rng = np.random.default_rng(0)
    rows = rng.choice(values, (1000, 4))
    rows[::3, :3] = rng.integers(0, 2, (len(rows[::3]), 3))  # many rows valid but for t
    refused = set()
    for row in rows:
        events, bad = tonic_npy.to_events(row[None, :])
        got = tonic_npy.row_time(row)
        assert (got is None) == (bad == 0), row
        if got is not None:
            assert got == int(events["t"][0]), row
        refused.add(got is None)
    assert refused == {True, False}
