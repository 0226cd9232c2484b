"""speck .npz: round trips (real recordings converted), np.load compatibility, damage."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emulator.io import Label, RecordingError, detect_format, open_recording, read_recording, speck_npz
from emulator.io.speck_npz import read_layout, save_recording, write_npz
from proto.events import EVENT_DTYPE, Events, make_events
from tests.io.make_files import cut_copy, read_all, real_file

REAL = ["faery/dvs.es", "tonic-testdata/sample_nmnist.bin", "tonic-testdata/sample_ncars.dat"]
LABELS = (Label(1, 0, 10), Label(4, 10, 30))


def _events(n: int = 100) -> Events:
    t = np.arange(n, dtype=np.uint64) * 3
    return make_events(t, np.arange(n) % 64, np.arange(n) % 48, np.arange(n) % 2)


def _write(path: Path, events: Events | list[Events], **kw: object) -> Path:
    args: dict = {"width": 64, "height": 48, "time_origin": "recording start", "labels": LABELS, **kw}
    write_npz(path, events, **args)
    return path


@pytest.mark.parametrize("relpath", REAL)
def test_real_recordings_round_trip(tmp_path: Path, relpath: str) -> None:
    src = real_file(relpath)
    original, rec = read_all(src)
    out = tmp_path / "copy.npz"
    assert save_recording(out, open_recording(src, chunk_events=1000)) == len(original)
    assert detect_format(out) == "speck-npz"
    copy, copy_rec = read_all(out)
    assert (copy == original).all()
    i, j = rec.info, copy_rec.info
    assert (j.width, j.height, j.time_origin, j.header, j.labels) == (
        i.width,
        i.height,
        i.time_origin,
        i.header,
        i.labels,
    )
    assert (np.load(out)["events"] == original).all()


def test_labels_chunks_and_determinism(tmp_path: Path) -> None:
    ev = _events()
    one = _write(tmp_path / "one.npz", ev)
    many = _write(tmp_path / "many.npz", [ev[:7], ev[7:7], ev[7:]])
    assert one.read_bytes() == many.read_bytes()
    got, rec = read_all(one, chunk_events=3)
    assert (got == ev).all() and rec.info.labels == LABELS


def test_empty_recording(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.npz", [])
    ev, _ = read_all(path)
    assert len(ev) == 0


def test_writer_refuses_other_dtypes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        _write(tmp_path / "a.npz", np.zeros(3, dtype=[("t", "<u8"), ("x", "<u2")]))


def test_plain_npz_is_not_probed(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", events=_events())
    with pytest.raises(RecordingError, match="known recording format"):
        detect_format(tmp_path / "plain.npz")


def test_truncated_inside_the_events(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.npz", _events())
    _, layout = read_layout(path)
    for k in (0, 1, 50, 99):
        for extra in (1, 15):
            cut = cut_copy(path, tmp_path / "cut.npz", layout.first_event + 16 * k + extra)
            with pytest.raises(RecordingError, match="100 events") as err:
                read_recording(cut)
            assert err.value.offset == layout.first_event + 16 * k
            ev, _ = read_recording(cut, lenient=True)
            assert (ev == _events()[:k]).all() and len(ev) == k


@pytest.mark.parametrize("size", [10, 40, 80])
def test_truncated_before_the_events(tmp_path: Path, size: int) -> None:
    path = _write(tmp_path / "a.npz", _events())
    _, layout = read_layout(path)
    cut = cut_copy(path, tmp_path / "cut.npz", min(size, layout.first_event - 1))
    with pytest.raises(RecordingError):  # nothing to read without the header: fatal even when lenient
        speck_npz.open_(cut, 16, lenient=True)


def test_event_outside_the_sensor(tmp_path: Path) -> None:
    ev = _events()
    ev["x"][42] = 64
    path = _write(tmp_path / "a.npz", ev)
    _, layout = read_layout(path)
    with pytest.raises(RecordingError, match="x < 64") as err:
        read_recording(path)
    assert err.value.offset == layout.first_event + 42 * 16
    got, _ = read_recording(path, lenient=True)
    assert len(got) == 42


def test_flipped_bit_fails_the_crc(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.npz", _events())
    _, layout = read_layout(path)
    data = bytearray(path.read_bytes())
    data[layout.first_event + 16 * 5 + 14] ^= 0x01  # a padding byte: every field still in range
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match="CRC-32") as err:
        read_recording(path)
    assert err.value.offset == layout.member.data_offset
    ev, rec = read_recording(path, lenient=True)
    assert len(ev) == 100 and rec.damage is not None


def _zip(path: Path, meta: dict, events: np.ndarray, compress: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        zf.writestr("meta.json", json.dumps(meta), compress_type=zipfile.ZIP_STORED)
        with zf.open("events.npy", "w") as f:
            np.lib.format.write_array(f, events)
    return path


META = {"format": "speck-npz", "version": 1, "width": 64, "height": 48, "time_origin": "recording start"}


@pytest.mark.parametrize(
    ("meta", "events", "compress", "message"),
    [
        ({**META, "version": 2}, _events(), zipfile.ZIP_STORED, "version"),
        ({k: v for k, v in META.items() if k != "width"}, _events(), zipfile.ZIP_STORED, "width"),
        (META, _events(), zipfile.ZIP_DEFLATED, "uncompressed"),
        (META, np.zeros((3, 4), dtype=np.int64), zipfile.ZIP_STORED, "1-D array of EVENT_DTYPE"),
        (
            META,
            np.zeros(3, dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")]),
            zipfile.ZIP_STORED,
            "EVENT_DTYPE",
        ),
    ],
)
def test_corrupt_members(tmp_path: Path, meta: dict, events: np.ndarray, compress: int, message: str) -> None:
    path = _zip(tmp_path / "a.npz", meta, events, compress)
    assert detect_format(path) == "speck-npz"
    with pytest.raises(RecordingError, match=message):
        read_recording(path)


def test_garbage_meta(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.json", '{"format": "speck-npz", oops')
    assert detect_format(path) == "speck-npz"
    with pytest.raises(RecordingError, match="JSON") as err:
        read_recording(path)
    assert err.value.offset == 30 + len("meta.json")


def test_events_dtype_is_the_product_dtype(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.npz", _events())
    assert np.load(path)["events"].dtype == EVENT_DTYPE


def test_the_same_events_give_the_same_bytes_whatever_the_padding_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speck_npz, "SPOOL_EVENTS", 7)  # the writer copies in slices: cross a few
    clean = _events(50)
    dirty = clean.copy()
    dirty.view(np.uint8).reshape(-1, 16)[:, 13:] = 0xAB  # bytes 13–15: padding, e.g. left from np.empty
    assert (dirty == clean).all() and dirty.tobytes() != clean.tobytes()
    a = _write(tmp_path / "a.npz", clean).read_bytes()
    b = _write(tmp_path / "b.npz", [dirty[:20], dirty[20:]]).read_bytes()
    assert a == b
    np.testing.assert_array_equal(read_all(tmp_path / "b.npz")[0], clean)
