"""The sensor process reads recordings without numba: ``import emulator.io``, format
detection and reading a speck ``.npz`` or an AEDAT 2.0 file never load numba or
llvmlite (~150 MB of memory); only the other formats' decoders do, when they decode."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from emulator.io.speck_npz import write_npz
from proto.events import EVENT_DTYPE
from tests.real_data import real_dir

ROOT = Path(__file__).resolve().parents[2]
RECORDING_SUFFIXES = {".aedat", ".aedat4", ".raw", ".dat", ".es", ".bin", ".npy", ".npz"}

CHILD = """
import sys
import emulator.io
from emulator.io import detect_format, open_recording, read_recording
assert {"numba", "llvmlite"}.isdisjoint(sys.modules), "import emulator.io loaded numba"
path, fmt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
assert detect_format(path) == fmt, detect_format(path)
assert sum(len(c) for c in open_recording(path, chunk_events=7).chunks) == n
events, rec = read_recording(path)
assert len(events) == n and rec.damage is None, (len(events), rec.damage)
loaded = sorted(m for m in ("numba", "llvmlite") if m in sys.modules)
assert not loaded, f"reading a {fmt} file loaded {loaded}"
"""


def _run_child(path: Path, fmt: str, n: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), fmt, str(n)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def _speck_npz(path: Path) -> int:
    events = np.zeros(100, dtype=EVENT_DTYPE)
    events["t"] = np.arange(100) * 10
    events["x"] = np.arange(100) % 128
    events["y"] = np.arange(100) % 64
    events["p"] = np.arange(100) % 2
    return write_npz(path, events, width=128, height=128, time_origin="device clock")


def _aedat2(path: Path) -> int:
    records = [((i % 64) << 8 | (i % 128) << 1 | (i % 2), 5 * i) for i in range(100)]
    records.insert(50, (1 << 15, 250))  # a special event: skipped, counted
    path.write_bytes(b"#!AER-DAT2.0\r\n# AEChip: DVS128\r\n" + np.array(records, dtype=">u4").tobytes())
    return 100


@pytest.mark.parametrize(("fmt", "make"), [("speck-npz", _speck_npz), ("aedat2", _aedat2)])
def test_reading_does_not_import_numba(tmp_path: Path, fmt: str, make: Callable[[Path], int]) -> None:
    path = tmp_path / ("rec.npz" if fmt == "speck-npz" else "rec.aedat")
    n = make(path)
    _run_child(path, fmt, n)


OPEN_ONLY = """
import sys
from emulator.io import detect_format, open_recording
for path in sys.argv[1:]:
    detect_format(path)
    open_recording(path)
loaded = sorted(m for m in ("numba", "llvmlite") if m in sys.modules)
assert not loaded, f"opening loaded {loaded}"
"""


def test_opening_any_format_does_not_import_numba(tmp_path: Path) -> None:
    """Detection and opening (headers, N-MNIST's size scan, tonic labels) stay numba-free for every format."""
    tonic = tmp_path / "3.npy"
    np.save(tonic, np.array([[1, 2, 1, 5], [3, 4, 0, 9]], dtype=np.int32))
    paths = [tonic, *(p for p in sorted(real_dir().rglob("*")) if p.suffix in RECORDING_SUFFIXES)]
    result = subprocess.run(
        [sys.executable, "-c", OPEN_ONLY, *map(str, paths)], check=False, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
