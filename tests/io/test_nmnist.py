"""N-MNIST / N-Caltech101 .bin: real samples against SOURCES and tonic, overflow, probe, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator.io import RecordingError, detect_format, nmnist, read_recording
from tests.io.make_files import assert_matches_sources, cut_copy, event_tuples, nmnist_bytes, read_all, real_file

SAMPLES = {"tonic-testdata/sample_nmnist.bin": (34, 34), "event-vision-library/faces_easy_0001.bin": (304, 240)}


@pytest.mark.parametrize(("relpath", "size"), SAMPLES.items())
def test_real_samples_match_sources(relpath: str, size: tuple[int, int]) -> None:
    path = real_file(relpath)
    assert detect_format(path) == "nmnist-bin"
    ev, rec = read_all(path)
    assert_matches_sources(relpath, ev, rec)
    assert (rec.info.width, rec.info.height) == size
    assert rec.dropped == {"overflow": 0}


@pytest.mark.parametrize("relpath", SAMPLES)
def test_real_samples_equal_tonic(relpath: str) -> None:
    tonic_io = pytest.importorskip("tonic.io")
    path = real_file(relpath)
    ev, _ = read_all(path)
    ref = tonic_io.read_mnist_file(str(path), dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    for k in "txyp":
        assert ev[k].astype(np.int64).tolist() == ref[k].tolist()


@pytest.mark.parametrize("chunk", [1, 13])
def test_tiny_chunks_equal_whole_read(chunk: int) -> None:
    path = real_file("tonic-testdata/sample_nmnist.bin")
    whole, _ = read_all(path)
    parts, _ = read_all(path, chunk_events=chunk)
    assert (parts == whole).all()


def test_overflow_records_add_2_pow_23(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(nmnist_bytes([(1, 2, 1, 100), (255, 240, 0, 0), (3, 4, 0, 50), (0, 240, 0, 0), (5, 6, 1, 7)]))
    ev, rec = read_all(path, chunk_events=1)
    assert event_tuples(ev) == [(100, 1, 2, 1), (2**23 + 50, 3, 4, 0), (2**24 + 7, 5, 6, 1)]
    assert rec.dropped == {"overflow": 2}
    assert (rec.info.width, rec.info.height) == (34, 34)  # x = 255 of an overflow record is not an address


def test_probe_needs_the_extension_and_plausible_records(tmp_path: Path) -> None:
    good = nmnist_bytes([(1, 2, 1, 100), (3, 4, 0, 200)])
    assert nmnist.probe(good, Path("a.bin"))
    assert nmnist.probe(good, Path("a.BIN"))
    assert not nmnist.probe(good, Path("a.dat"))
    assert not nmnist.probe(nmnist_bytes([(1, 2, 1, 100), (3, 4, 0, 50)]), Path("a.bin"))  # time runs back
    assert not nmnist.probe(nmnist_bytes([(1, 250, 1, 100)]), Path("a.bin"))  # no such row
    assert nmnist.probe(nmnist_bytes([(1, 2, 1, 100), (0, 240, 0, 0), (3, 4, 0, 5)]), Path("a.bin"))  # wrapped


@pytest.mark.parametrize("relpath", SAMPLES)
def test_truncated_copies_keep_whole_records(tmp_path: Path, relpath: str) -> None:
    path = real_file(relpath)
    whole, _ = read_all(path)
    for k in (0, 1, 1000):
        for extra in (1, 4):
            cut = cut_copy(path, tmp_path / "cut.bin", 5 * k + extra)
            with pytest.raises(RecordingError, match="5-byte record") as err:
                read_recording(cut)
            assert err.value.offset == 5 * k
            ev, rec = read_recording(cut, lenient=True)
            assert (ev == whole[:k]).all() and len(ev) == k
            assert rec.damage is not None and rec.damage.offset == 5 * k


def test_row_beyond_the_sensor_is_damage(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    records = [(100, 2, 1, 100), (3, 4, 0, 200), (3, 250, 0, 300), (3, 4, 0, 400)]
    path.write_bytes(nmnist_bytes(records))
    with pytest.raises(RecordingError, match="y < 240") as err:  # not probed: tried directly
        list(nmnist.open_(path, 1 << 10, lenient=False).chunks)
    assert err.value.offset == 10
    rec = nmnist.open_(path, 1 << 10, lenient=True)
    ev = np.concatenate(list(rec.chunks))
    assert len(ev) == 2 and rec.damage is not None and rec.damage.offset == 10
    assert (rec.info.width, rec.info.height) == (304, 240)
