"""The product's event and spike dtypes: defined once, used everywhere.

``EVENT_DTYPE`` — one DVS event (16 bytes, little-endian, C-aligned):

====== ======= ====== =====================================================
field  type    offset meaning
====== ======= ====== =====================================================
``t``  uint64  0      timestamp in microseconds (the recording's own clock)
``x``  uint16  8      column, 0 = left of the upright image
``y``  uint16  10     row, 0 = top of the upright image
``p``  uint8   12     polarity, 1 = ON (brightness up), 0 = OFF
====== ======= ====== =====================================================

Bytes 13–15 are padding. The layout is byte-for-byte the 16-byte event record of
dv-processing / AEDAT 4 (int64 t, int16 x, int16 y, uint8 on, 3 pad), so AEDAT 4
packets and dv ``NetworkWriter`` streams decode by reinterpreting the buffer, and
every field is naturally aligned for numba loops.

``SPIKE_DTYPE`` — one output spike of a chip core (16 bytes):
``t`` uint64 µs, ``layer`` uint8, ``channel`` uint16, ``x`` uint16, ``y`` uint16.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

EVENT_DTYPE = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": ["<u8", "<u2", "<u2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)

SPIKE_DTYPE = np.dtype(
    {
        "names": ["t", "layer", "channel", "x", "y"],
        "formats": ["<u8", "u1", "<u2", "<u2", "<u2"],
        "offsets": [0, 8, 10, 12, 14],
        "itemsize": 16,
    }
)

Events = npt.NDArray[np.void]
"""A 1-D array of ``EVENT_DTYPE`` (numpy has no way to type the fields)."""

Spikes = npt.NDArray[np.void]
"""A 1-D array of ``SPIKE_DTYPE``."""


def event_words(events: Events) -> npt.NDArray[np.uint64]:
    """The events as an ``(n, 2)`` uint64 view: ``[t, x | y << 16 | p << 32]`` per event.

    Decoders write whole 16-byte events through this view (two stores, padding
    zeroed) instead of four field stores (``emulator.io.kernels.pack_xyp``). Needs a
    little-endian host, like the dtype's fields (checked at import).
    """
    return events.view(np.uint64).reshape(-1, 2)


if sys.byteorder != "little":  # the '<' fields and event_words() assume it
    raise ImportError("speck-edge needs a little-endian host")


def empty_events(n: int = 0) -> Events:
    """A zero-filled event array of length ``n`` (padding bytes are zero too)."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(t: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike, p: npt.ArrayLike) -> Events:
    """Build an event array from four equal-length columns."""
    t_arr = np.asarray(t)
    out = empty_events(t_arr.shape[0])
    out["t"] = t_arr
    out["x"] = x
    out["y"] = y
    out["p"] = p
    return out


def empty_spikes(n: int = 0) -> Spikes:
    """A zero-filled spike array of length ``n``."""
    return np.zeros(n, dtype=SPIKE_DTYPE)


def concat_events(parts: list[Events]) -> Events:
    """Concatenate event arrays into one ``EVENT_DTYPE`` array (a single part is returned as is).

    Plain ``np.concatenate`` canonicalises structured dtypes and drops the padding
    (13-byte records), and with ``dtype=`` it casts field by field (~1 GB/s); this
    copies whole 16-byte events as two uint64 words instead (memcpy speed).
    """
    if len(parts) == 1 and parts[0].dtype == EVENT_DTYPE:
        return parts[0]
    out = empty_events_uninitialised(sum(len(part) for part in parts))
    words = event_words(out)
    i = 0
    for part in parts:
        n = len(part)
        if part.dtype == EVENT_DTYPE:
            words[i : i + n] = event_words(np.ascontiguousarray(part))
        else:
            out[i : i + n] = part  # another layout of the same fields: assign field by field
            words[i : i + n, 1] &= PADDING_MASK
        i += n
    return out


def empty_events_uninitialised(n: int) -> Events:
    """An event array whose bytes are not yet written: fill every event (padding too) before use."""
    return np.empty(n, dtype=EVENT_DTYPE)


PADDING_MASK = np.uint64((1 << 40) - 1)
"""Keeps x, y, p of an event's second word (see :func:`event_words`) and zeroes the padding."""
