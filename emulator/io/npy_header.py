"""The header of a ``.npy`` array (a file of its own, or a member of an uncompressed ``.npz``).

Shared by the tonic ``.npy`` and speck ``.npz`` readers, which read the array
data themselves in bounded memory instead of loading it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from emulator.io.base import RecordingError

MAGIC = b"\x93NUMPY"

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


@dataclass(frozen=True)
class NpyHeader:
    """Shape, layout and dtype of an array, and the file offset where its data starts."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype[Any]
    data_offset: int

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def read_npy_header(f: BinaryIO, path: Path, base_offset: int = 0) -> NpyHeader:
    """Parse the header at ``f``'s position; ``base_offset`` is that position's offset in ``path``.

    Versions 1.0 and 2.0 (what ``np.save`` writes for any array with ASCII field names).
    """
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        read = _HEADER_READERS.get(version)
        if read is not None:
            shape, fortran, dtype = read(f)
    except ValueError as exc:  # numpy's own complaint about a damaged or truncated header
        raise RecordingError(path, base_offset, "a valid .npy header", str(exc)) from exc
    if read is None:
        raise RecordingError(path, base_offset, ".npy format version 1.0 or 2.0", f"{version[0]}.{version[1]}")
    return NpyHeader(tuple(shape), bool(fortran), dtype, base_offset + f.tell() - start)


def peek_npy_header(head: bytes) -> NpyHeader | None:
    """The header at the start of ``head`` (a file's first bytes), or ``None`` if there is none."""
    if not head.startswith(MAGIC):
        return None
    try:
        return read_npy_header(io.BytesIO(head), Path("<head>"))
    except RecordingError:
        return None
