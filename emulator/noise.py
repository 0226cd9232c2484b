"""The DVS noise filter: neighbourhood, low-pass (refractory) and hot-pixel modes, timed by the slow clock.

Time is counted in slow-clock ticks derived from the event timestamps (the emulator has no
wall clock): ``tick = floor(t_us · slow_clock_hz / 10⁶)``, computed exactly in integers
(``slow_clock_hz`` must be a whole number). Each pixel ``(y, x)`` keeps the tick ``last`` of
its latest *stamping* event; its age at tick ``now`` is ``max(now − last, 0)``. Polarity is
ignored (both polarities share a pixel's state). Per event, in time order:

* ``"none"``: pass.
* ``"neighbourhood"``: pass iff some pixel of the ``window × window`` square centred on the
  event (clipped at the borders, **the pixel itself included**, so a 1 × 1 window is a
  "fired recently" test) has age ``< threshold``; then every event, passed or not, stamps its
  own pixel (as dv-processing's background-activity filter).
* ``"low_pass"``: drop iff the pixel's own age ``< threshold``; only **passed** events stamp
  the pixel, so each pixel passes at most one event per ``threshold`` ticks (a refractory period).
* ``"hot_pixel"``: the rate test, then the neighbourhood test. Ticks are grouped in aligned
  blocks of ``B = max(1, round(slow_clock_hz · HOT_PIXEL_BLOCK_S))`` ticks; a pixel may emit at
  most ``M = ceil(HOT_PIXEL_RATE_HZ · B / slow_clock_hz)`` events per block. An event fails the
  rate test if its pixel has now more than ``M`` events in the current block (this one
  included), or had more than ``M`` in the block just before. Every event counts. Events failing
  the rate test do not stamp the pixel (a hot pixel supports neither itself nor its neighbours);
  the others behave as in ``"neighbourhood"``.

Hardware keeps a 16-bit per-pixel timestamp advanced by the slow clock; we model it as an age
counter saturating at ``2¹⁶ − 1``, which gives exactly the same decisions as the unbounded int64
ticks stored here for every ``threshold ≤ 2¹⁶ − 1`` (:data:`TIMESTAMP_BITS`).

The per-event loop is :mod:`emulator.noise_kernel` (numba), imported on the first call that filters:
mode ``"none"`` — the bundled models' setting — never loads numba, so the filter service stays small.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from emulator.config import NoiseFilter
from emulator.slow_clock import ticks  # noqa: F401  (re-exported)
from proto.events import Events, event_words

FILTER_POSITION: Final = "sensor"
"""The filter runs on raw sensor coordinates, before polarity select and pooling (the documents
leave it open; filtering first keeps the filter independent of the pre-processing settings)."""
TIMESTAMP_BITS: Final = 16
"""Width of the hardware per-pixel timestamp; modelled as a saturating age (see module docstring)."""
MAX_THRESHOLD: Final = (1 << TIMESTAMP_BITS) - 1
"""Largest threshold (ticks) for which the unbounded model equals a saturating 16-bit age."""
NEVER: Final = -(1 << 62)
"""``last`` tick of a pixel that has never fired (older than any threshold)."""
HOT_PIXEL_RATE_HZ: Final = 50.0
"""Rate above which a pixel counts as hot: the low end of the 50–1000 Hz the datasheet targets."""
HOT_PIXEL_BLOCK_S: Final = 0.1
"""Length of the hot-pixel counting block in seconds (rounded to whole ticks, at least one)."""
MODES: Final = {"none": 0, "neighbourhood": 1, "low_pass": 2, "hot_pixel": 3}
"""Filter mode → kernel code."""
NO_CUT: Final = (1 << 63) - 1
"""Cut-off tick when ``threshold ≤ 0``: no pixel is ever recent."""


class FilterState(NamedTuple):
    """Per-pixel filter state, arrays shaped ``(height, width)``; replaced (never mutated) per call.

    ``last``: int64 tick of the latest stamping event (:data:`NEVER` if none);
    ``block``: int64 hot-pixel block index of ``block_events``; ``block_events``: int32 events in
    that block; ``prev_events``: int32 events in the block before it.
    """

    last: npt.NDArray[np.int64]
    block: npt.NDArray[np.int64]
    block_events: npt.NDArray[np.int32]
    prev_events: npt.NDArray[np.int32]


def copy_state(state: FilterState) -> FilterState:
    """A deep copy of ``state``."""
    return FilterState(state.last.copy(), state.block.copy(), state.block_events.copy(), state.prev_events.copy())


def init_filter_state(width: int, height: int) -> FilterState:
    """A state in which no pixel has ever fired."""
    shape = (height, width)
    return FilterState(
        last=np.full(shape, NEVER, dtype=np.int64),
        block=np.full(shape, NEVER, dtype=np.int64),
        block_events=np.zeros(shape, dtype=np.int32),
        prev_events=np.zeros(shape, dtype=np.int32),
    )


def hot_pixel_limits(slow_clock_hz: int) -> tuple[int, int]:
    """``(block_ticks, max_events_per_block)`` of the hot-pixel rate test."""
    block_ticks = max(1, round(slow_clock_hz * HOT_PIXEL_BLOCK_S))
    return block_ticks, math.ceil(HOT_PIXEL_RATE_HZ * block_ticks / slow_clock_hz)


def _check(events: Events, cfg: NoiseFilter, slow_clock_hz: float, width: int, height: int) -> None:
    if cfg.mode not in MODES:
        raise ValueError(f"mode: unknown noise-filter mode {cfg.mode!r}")
    if cfg.window < 1 or cfg.window % 2 == 0:
        raise ValueError(f"window: must be odd and ≥ 1, got {cfg.window}")
    if slow_clock_hz <= 0 or slow_clock_hz != int(slow_clock_hz):
        raise ValueError(f"slow_clock_hz: must be a positive whole number, got {slow_clock_hz}")
    if len(events) and (int(events["x"].max()) >= width or int(events["y"].max()) >= height):
        raise ValueError(f"events: coordinates outside the {width}×{height} sensor")


def noise_filter(
    events: Events, state: FilterState, cfg: NoiseFilter, slow_clock_hz: float, width: int, height: int
) -> tuple[Events, FilterState, int]:
    """Filter a time-ordered batch; returns ``(kept events, new state, dropped count)``.

    Pure: ``state`` is copied, never mutated. Feeding a stream in batches gives the same output
    as feeding it whole, provided each batch's state is passed to the next call.
    """
    _check(events, cfg, slow_clock_hz, width, height)
    if state.last.shape != (height, width):
        raise ValueError(f"state: shaped {state.last.shape}, sensor is {(height, width)}")
    src = np.ascontiguousarray(events)
    out = np.empty(len(src), dtype=src.dtype)
    if cfg.mode == "none":
        event_words(out)[:] = event_words(src)  # whole 16-byte words: padding bytes copied too
        return out, state, 0
    new = copy_state(state)
    hz = int(slow_clock_hz)
    block_ticks, max_events = hot_pixel_limits(hz)
    from emulator.noise_kernel import filter_kernel  # numba: loaded only by a filter that filters

    k = filter_kernel(
        event_words(src), event_words(out), *new, MODES[cfg.mode], cfg.threshold,
        cfg.window // 2, np.uint64(hz), block_ticks, max_events,
    )  # fmt: skip
    return out[:k], new, len(src) - k
