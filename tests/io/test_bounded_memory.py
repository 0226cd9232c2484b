"""Large recordings are read chunk by chunk: peak memory follows the chunk size, not the file size."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from emulator.io import open_recording
from emulator.io.speck_npz import write_npz
from proto.events import EVENT_DTYPE, make_events

N_EVENTS = 2_000_000
CHUNK = 16_384


def _events() -> np.ndarray:
    i = np.arange(N_EVENTS, dtype=np.uint64)
    return make_events(i * 3, i % 128, (i // 128) % 128, i % 2)


def _aedat2(path: Path) -> None:
    ev = _events()
    addr = ((127 - ev["y"].astype(np.uint32)) << 8) | ((127 - ev["x"].astype(np.uint32)) << 1) | (1 - ev["p"])
    records = np.stack([addr, ev["t"].astype(np.uint32)], axis=1).astype(">u4")
    path.write_bytes(b"#!AER-DAT2.0\r\n# AEChip: DVS128\r\n" + records.tobytes())


def _nmnist(path: Path) -> None:
    ev = _events()
    t = (ev["t"] % (1 << 23)).astype(np.uint32)
    rec = np.zeros((N_EVENTS, 5), dtype=np.uint8)
    rec[:, 0], rec[:, 1] = ev["x"] % 34, ev["y"] % 34
    rec[:, 2] = (ev["p"].astype(np.uint32) << 7 | (t >> 16)).astype(np.uint8)
    rec[:, 3], rec[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    path.write_bytes(rec.tobytes())


def _npz(path: Path) -> None:
    write_npz(path, _events(), width=128, height=128, time_origin="device clock")


@pytest.mark.parametrize(("name", "write"), [("big.aedat", _aedat2), ("big.bin", _nmnist), ("big.npz", _npz)])
def test_chunked_read_stays_within_a_few_chunks_of_memory(
    tmp_path: Path, name: str, write: Callable[[Path], None]
) -> None:
    path = tmp_path / name
    write(path)
    whole_bytes = N_EVENTS * EVENT_DTYPE.itemsize  # 32 MB if it were read at once
    next(open_recording(path, chunk_events=CHUNK).chunks)  # load numba's compiled decoder first: not data
    tracemalloc.start()
    try:
        n = 0
        for chunk in open_recording(path, chunk_events=CHUNK).chunks:
            assert len(chunk) <= CHUNK
            n += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == N_EVENTS
    assert peak < whole_bytes / 8, f"peak {peak / 1e6:.1f} MB while reading {whole_bytes / 1e6:.0f} MB of events"
