"""The numba per-event decode loops of the readers, one module per format.

Importing numba (and llvmlite) costs a process ~150 MB of memory, so nothing here is
imported when :mod:`emulator.io` is: a reader imports its kernel module inside the
function that decodes (``from emulator.io.kernels import dat as kernels``), while its
format logic, probe, header parsing and errors stay in the reader module, numba-free.
``import emulator.io``, format detection, opening a recording and reading a speck
``.npz`` or AEDAT 2.0 file (decoded with numpy) never load numba.

A kernel module takes its constants from its reader module (numba freezes them at
compile time). Kernels are compiled on first call and cached (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", cache=True)
def pack_xyp(x: int | np.integer, y: int | np.integer, p: int | np.integer) -> np.uint64:
    """Second word of an event in ``proto.events.event_words``: ``x | y << 16 | p << 32``."""
    return np.uint64(x) | (np.uint64(y) << np.uint64(16)) | (np.uint64(p) << np.uint64(32))
