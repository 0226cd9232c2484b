"""tonic's preprocessed DVS128 Gesture clips: one ``.npy`` array per labelled gesture.

Layout (tonic ``datasets/dvsgesture.py``): ``<user>_<lighting>/<class>.npy``, an
N×4 numeric array with columns x, y, p, t, where t is in **milliseconds** (tonic
cut the original recordings into one clip per label and reduced the timestamps
to ms). tonic converts on load with ``events[:, 3] *= 1000`` in the array's own
dtype and then casts to int64 (truncating toward zero); this reader does exactly
the same, so its t (µs) equals tonic's. Resolution 128×128; x and y are kept as
stored (the clips come from AEDAT 3.1, whose y = 0 is the top row); p is 1 = ON.

**Labels**: the file name stem is the class id (0–10, tonic's ``targets``), so
``RecordingInfo.labels`` holds one :class:`~emulator.io.base.Label` spanning the
clip, from its first to its last timestamp (none when the stem is not a number).

Read in bounded memory through a memory map, ``chunk_events`` rows at a time.
Damage: a file shorter than its header says (truncation: the error is at the
first incomplete row, and a lenient read keeps the rows before it), a value out
of range (x, y outside 128×128, p not 0/1, t negative or not finite) at its row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from emulator.io.base import Label, Recording, RecordingError, RecordingInfo, build
from emulator.io.npy_header import NpyHeader, peek_npy_header, read_npy_header
from proto.events import EVENT_DTYPE, Events, event_words

FORMAT = "tonic-npy"
COLUMNS = 4  # x, y, p, t
SENSOR_SIZE = 128
MS_TO_US = 1000
MAX_T_US = 2.0**63
"""Times at or above this (or infinite) do not fit the event's t."""
TIME_ORIGIN = "device clock"


def probe(head: bytes, path: Path) -> bool:
    header = peek_npy_header(head)
    return header is not None and _is_table(header)


def _is_table(header: NpyHeader) -> bool:
    dtype = header.dtype
    return len(header.shape) == 2 and header.shape[1] == COLUMNS and dtype.kind in "iuf" and dtype.itemsize >= 2


def read_table_header(path: Path) -> NpyHeader:
    """The npy header, checked to be an N×4 numeric table."""
    with path.open("rb") as f:
        header = read_npy_header(f, path)
    if not _is_table(header):
        found = f"shape {header.shape}, dtype {header.dtype}"
        raise RecordingError(path, 0, "an N×4 array of numbers of 2 bytes or more (x, y, p, t)", found)
    return header


def _table(path: Path, header: NpyHeader) -> tuple[np.ndarray, RecordingError | None]:
    """The complete rows as a read-only memory map, and the truncation damage if the file is short.

    A truncated column-major (Fortran-order) file has its t column cut: it yields no rows.
    """
    n = header.shape[0]
    item = header.dtype.itemsize
    available = max(path.stat().st_size - header.data_offset, 0)
    damage = None
    if available < n * COLUMNS * item:
        complete = 0 if header.fortran_order else available // (COLUMNS * item)
        cut = header.data_offset + (available // item * item if header.fortran_order else complete * COLUMNS * item)
        damage = RecordingError(
            path, cut, f"{n} rows of (x, y, p, t) as the .npy header says", f"{complete} complete rows"
        )
        n = complete
    if n == 0:
        return np.zeros((0, COLUMNS), dtype=header.dtype), damage
    order: Literal["C", "F"] = "F" if header.fortran_order else "C"
    table = np.memmap(path, dtype=header.dtype, mode="r", offset=header.data_offset, shape=(n, COLUMNS), order=order)
    return table, damage


def to_events(rows: np.ndarray) -> tuple[Events, int]:
    """Events from table rows (t ms → µs as tonic does); ``bad`` is −1 or the first out-of-range row."""
    with np.errstate(over="ignore", invalid="ignore"):
        t_us = rows[:, 3] * MS_TO_US  # in the file's own dtype, like tonic's in-place ``*= 1000``
    narrow_int = rows.dtype.kind in "iu" and rows.dtype.itemsize < 8
    out = np.zeros(len(rows), dtype=EVENT_DTYPE)
    from emulator.io.kernels.tonic_npy import pack  # numba: only once decoding starts

    n = pack(rows, t_us, narrow_int, event_words(out))
    return out[:n], (-1 if n == len(rows) else n)


def row_time(row: np.ndarray) -> int | None:
    """t (µs) of one table row exactly as :func:`to_events` makes it, or ``None`` when
    :func:`to_events` refuses the row — with numpy scalars, so that opening a file
    (its labels) never loads numba."""
    with np.errstate(over="ignore", invalid="ignore"):
        t = row[3] * row.dtype.type(MS_TO_US)  # in the file's own dtype, as to_events
    x, y, p = row[0], row[1], row[2]
    if not (0 <= x < SENSOR_SIZE and 0 <= y < SENSOR_SIZE and (p == 0 or p == 1) and 0 <= t < MAX_T_US):
        return None
    narrow_int = row.dtype.kind in "iu" and row.dtype.itemsize < 8
    if narrow_int and np.int64(t) != np.int64(row[3]) * MS_TO_US:
        return None
    return int(np.int64(t))


def _events(path: Path, header: NpyHeader, chunk_events: int, rec: Recording) -> Iterator[Events]:
    table, damage = _table(path, header)
    row_bytes = COLUMNS * header.dtype.itemsize
    for start in range(0, len(table), chunk_events):
        events, bad = to_events(np.asarray(table[start : start + chunk_events]))
        if len(events):
            yield events
        if bad >= 0:
            found = ", ".join(f"{k}={v}" for k, v in zip("xypt", table[start + bad].tolist(), strict=True))
            rec.damage = RecordingError(
                path,
                header.data_offset + (start + bad) * row_bytes,
                f"x, y in 0–{SENSOR_SIZE - 1}, p 0 or 1, t >= 0",
                found,
            )
            return
    rec.damage = damage


def _labels(path: Path, header: NpyHeader) -> tuple[Label, ...]:
    """One label spanning the clip when the file name is a class id (tonic's layout)."""
    table, _ = _table(path, header)
    if not path.stem.isdigit() or len(table) == 0:
        return ()
    first, last = row_time(np.asarray(table[0])), row_time(np.asarray(table[-1]))
    if first is None or last is None:
        return ()
    return (Label(int(path.stem), first, last),)


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    header = read_table_header(path)
    info = RecordingInfo(
        path, FORMAT, SENSOR_SIZE, SENSOR_SIZE, TIME_ORIGIN, {"dtype": str(header.dtype)}, _labels(path, header)
    )
    return build(info, lambda rec: _events(path, header, chunk_events, rec), lenient)
