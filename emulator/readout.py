"""The readout core: per slow-clock cycle class counts, averaged, argmax, threshold.

Model (speck-hardware.md §4; every undocumented choice is a named constant below):

1. **Address → class.** A spike routed to the readout carries ``(channel f, x, y)`` already after
   the destination's pooling and feature shift. ``address_mode`` gives the address space
   ``(nx, ny, nf)`` (:data:`ADDRESS_SHAPES`: 0 = 2x·2y·4f, 1 = 2x·4y·2f, 2 = 4x·4y·1f,
   3 = 1x·1y·16f) and the 4-bit address is ``a = (y · nx + x) · nf + f`` (f fastest, then x, then y).
   The class index is ``k = a + 1`` for ``a`` in 0–14; ``a = 15`` has no class. Class 0 means
   "no class"; classes 1–15 are real. A spike outside the mode's ``(nx, ny, nf)`` box is dropped.
2. **Erratum** (``channel_erratum=True``; address mode 3 only, no effect in the others): CNN channel
   ``4(k − 1)`` arrives at class ``k`` (channels 0, 4, …, 56 → classes 1–15); every other channel is dropped.
3. **Counting.** Slow-clock cycle ``c`` holds the spikes with ``t_us · hz // 10⁶ == c``; it ends at
   the first whole µs of cycle ``c + 1``. Each class has a 16-bit saturating counter per cycle.
4. **Averaging.** ``avg_k(c) = (Σ_{i=0}^{N−1} count_k(c − i)) // N`` with ``N = average`` ∈ {1, 16,
   32}: a boxcar over the last N cycle counts (cycles before the stream started count 0), floor
   division. The chip's "low-pass" is not documented further; the boxcar is our exact choice.
5. **Decision.** ``k* = argmax_k avg_k`` (ties → the lowest class); ``value = avg_{k*}``. If every
   average is 0, the class is 0 and ``value`` 0. ``passed = k* ≠ 0 and value >= threshold``.

Streaming: :func:`readout_step` takes a batch of spikes ending at or before ``t_end_us`` and returns one
:data:`DECISION_DTYPE` row per cycle completed by ``t_end_us``, with the state carried in
:class:`ReadoutState`; any split of a stream into batches gives the same decisions as the whole.
Cost is O(spikes + cycles) per call (a dense cycles × 15 count table).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from emulator.config import READOUT_INPUT_SHAPES, ReadoutConfig
from proto.events import Spikes

N_CLASSES = 15
"""Classes 1–15 are real; index 0 means "no class"."""
NO_CLASS = 0
N_ADDRESSES = 16
"""The readout sees a 4-bit neuron address; address 15 maps to no class (15 classes, 16 addresses)."""
ADDRESS_SHAPES: dict[int, tuple[int, int, int]] = {m: (w, h, c) for m, (c, h, w) in READOUT_INPUT_SHAPES.items()}
"""``address_mode`` → ``(nx, ny, nf)`` (the config's ``(c, h, w)`` reordered); address ``(y · nx + x) · nf + f``
(the chip's bit order is undocumented: our choice)."""
ERRATUM_STRIDE = 4
"""Speck2e/2f erratum: CNN channel ``ERRATUM_STRIDE · (k − 1)`` arrives at class ``k``."""
ERRATUM_MODE = 3
"""The erratum concerns the channel-only mapping (sinabs' workaround widens the last layer); in the other
modes ``channel_erratum`` has no effect (as ``ReadoutConfig.input_shape`` assumes)."""
COUNT_MAX = 0xFFFF
"""Per-cycle class counters are 16-bit and saturate."""
NO_SPIKE_US = int(np.iinfo(np.uint64).max)
"""``t_first`` of a cycle in which no spike was counted."""
US_PER_S = 1_000_000

DECISION_DTYPE = np.dtype(
    [
        ("t", "<u8"),  # µs: end of the cycle (first whole µs of the next cycle)
        ("cycle", "<i8"),  # slow-clock cycle index, t_us · hz // 10⁶
        ("class_index", "u1"),  # 0 = no class, 1–15
        ("value", "<u2"),  # the best class's average count
        ("passed", "?"),  # class_index != 0 and value >= threshold
        ("t_first", "<u8"),  # µs of the first counted spike of this cycle, NO_SPIKE_US if none
    ]
)
"""One readout decision per completed slow-clock cycle."""

Decisions = npt.NDArray[np.void]
"""A 1-D array of :data:`DECISION_DTYPE`."""


class ReadoutState(NamedTuple):
    """Streaming state: the cycle in progress and the counts of the last ``average`` cycles.

    ``cycle``: index of the cycle in progress; ``counts``: uint16 ``[15]`` of that cycle (class k at
    k − 1); ``t_first_us``: first counted spike of that cycle (:data:`NO_SPIKE_US` if none);
    ``history``: uint16 ``[average, 15]``, the last completed cycles, oldest first.
    """

    cycle: int
    counts: npt.NDArray[np.uint16]
    t_first_us: int
    history: npt.NDArray[np.uint16]


@functools.lru_cache(maxsize=64)  # a Fraction costs ~10 µs, and every step asks (one rate per chip)
def _clock(slow_clock_hz: float) -> tuple[int, int]:
    """``hz`` as an exact ratio ``num / den`` (denominator ≤ 10⁶) so cycle indices are integer maths."""
    if not slow_clock_hz > 0:
        raise ValueError(f"slow_clock_hz must be > 0, got {slow_clock_hz}")
    ratio = Fraction(slow_clock_hz).limit_denominator(US_PER_S)
    return ratio.numerator, ratio.denominator


def cycle_index(t_us: int, slow_clock_hz: float) -> int:
    """The slow-clock cycle containing time ``t_us``: ``t_us · hz // 10⁶``."""
    num, den = _clock(slow_clock_hz)
    return (int(t_us) * num) // (den * US_PER_S)


def _cycles(t: npt.NDArray[np.uint64], num: int, den: int) -> npt.NDArray[np.int64]:
    """``t · num // (den · 10⁶)`` for an array, exact and split so Unix-epoch µs cannot overflow int64."""
    d = den * US_PER_S
    ti = t.astype(np.int64)
    return (ti // d) * num + ((ti % d) * num) // d


def cycle_end_us(cycle: int, slow_clock_hz: float) -> int:
    """The end of ``cycle``: the first whole µs that belongs to ``cycle + 1``."""
    num, den = _clock(slow_clock_hz)
    return -(-(int(cycle) + 1) * den * US_PER_S // num)


def new_readout_state(cfg: ReadoutConfig, slow_clock_hz: float, t_start_us: int = 0) -> ReadoutState:
    """An empty readout whose first cycle is the one containing ``t_start_us``."""
    return ReadoutState(
        cycle=cycle_index(t_start_us, slow_clock_hz),
        counts=np.zeros(N_CLASSES, np.uint16),
        t_first_us=NO_SPIKE_US,
        history=np.zeros((cfg.average, N_CLASSES), np.uint16),
    )


def spike_classes(spikes: Spikes, cfg: ReadoutConfig) -> npt.NDArray[np.int64]:
    """The readout class (0 = dropped / no class, 1–15) of each spike, per the module docstring."""
    f = spikes["channel"].astype(np.int64)
    x = spikes["x"].astype(np.int64)
    y = spikes["y"].astype(np.int64)
    nx, ny, nf = ADDRESS_SHAPES[cfg.address_mode]
    if cfg.channel_erratum and cfg.address_mode == ERRATUM_MODE:
        inside = (x == 0) & (y == 0) & (f % ERRATUM_STRIDE == 0) & (f < ERRATUM_STRIDE * N_CLASSES)
        return np.where(inside, f // ERRATUM_STRIDE + 1, NO_CLASS)
    address = (y * nx + x) * nf + f
    inside = (x < nx) & (y < ny) & (f < nf) & (address < N_CLASSES)
    return np.where(inside, address + 1, NO_CLASS)


def _decide(counts: npt.NDArray[np.int64], average: int, threshold: int) -> tuple[npt.NDArray[np.int64], ...]:
    """Class, value and pass flag for each row after the first ``average`` (history) rows."""
    sums = np.cumsum(np.vstack([np.zeros((1, N_CLASSES), np.int64), counts]), axis=0)
    averages = (sums[average + 1 :] - sums[1 : len(counts) - average + 1]) // average
    best = np.argmax(averages, axis=1)  # first maximum: ties go to the lowest class
    value = averages[np.arange(len(averages)), best]
    class_index = np.where(value > 0, best + 1, NO_CLASS)
    passed = (class_index != NO_CLASS) & (value >= threshold)
    return class_index, value, passed


def readout_step(
    spikes: Spikes, state: ReadoutState, cfg: ReadoutConfig, slow_clock_hz: float, t_end_us: int
) -> tuple[Decisions, ReadoutState]:
    """Count ``spikes`` (all with ``t <= t_end_us``, none in an already completed cycle) and decide
    every cycle that ends at or before ``t_end_us``; returns the decisions and the new state.

    The cycle containing ``t_end_us`` stays open, so the next batch may start at that same µs."""
    if state.history.shape != (cfg.average, N_CLASSES):
        raise ValueError(f"state history has {len(state.history)} cycles, cfg.average is {cfg.average}")
    end_cycle = cycle_index(t_end_us, slow_clock_hz)
    if end_cycle < state.cycle:
        raise ValueError(f"t_end_us={t_end_us} lies before the cycle in progress ({state.cycle})")
    if len(spikes) == 0 and _is_quiet(state):
        return _quiet_step(state, end_cycle, slow_clock_hz)
    # past the last counted cycle + average, every boxcar is empty: count only up to there (a dense
    # cycles × classes table), then decide the rest as quiet — a long gap costs rows, not a table
    last = state.cycle if len(spikes) == 0 else max(state.cycle, cycle_index(int(spikes["t"].max()), slow_clock_hz))
    drained = last + cfg.average + 1
    if end_cycle <= drained:
        return _counting_step(spikes, state, cfg, slow_clock_hz, t_end_us, end_cycle)
    counted, mid = _counting_step(spikes, state, cfg, slow_clock_hz, t_end_us, drained)
    rest, final = _quiet_step(mid, end_cycle, slow_clock_hz)
    return np.concatenate([counted, rest]), final


def _is_quiet(state: ReadoutState) -> bool:
    """Nothing counted in the open cycle nor in the boxcar's history."""
    return state.t_first_us == NO_SPIKE_US and not state.counts.any() and not state.history.any()


def _quiet_step(state: ReadoutState, end_cycle: int, slow_clock_hz: float) -> tuple[Decisions, ReadoutState]:
    """:func:`readout_step` when nothing was counted in the last ``average`` cycles and no spike comes:
    every completed cycle decides "no class" (the common case between gestures; a tenth of the cost)."""
    if end_cycle == state.cycle:  # no cycle completed: nothing to decide, nothing changes
        return _NO_DECISIONS, state
    num, den = _clock(slow_clock_hz)
    done = np.arange(state.cycle, end_cycle, dtype=np.int64)
    decisions = np.zeros(len(done), DECISION_DTYPE)
    decisions["cycle"] = done
    decisions["t"] = -(-(done + 1) * (den * US_PER_S) // num)
    decisions["t_first"] = NO_SPIKE_US
    return decisions, state._replace(cycle=end_cycle)


_NO_DECISIONS = np.zeros(0, DECISION_DTYPE)
_NO_DECISIONS.flags.writeable = False


def _counting_step(
    spikes: Spikes, state: ReadoutState, cfg: ReadoutConfig, slow_clock_hz: float, t_end_us: int, end_cycle: int
) -> tuple[Decisions, ReadoutState]:
    """:func:`readout_step`'s general case."""
    num, den = _clock(slow_clock_hz)
    t = spikes["t"].astype(np.uint64)
    if t.size and int(t.max()) > t_end_us:
        raise ValueError(f"spike at t={int(t.max())} µs is after t_end_us={t_end_us}")
    rel = _cycles(t, num, den) - state.cycle
    if rel.size and int(rel.min()) < 0:
        raise ValueError(f"spike at t={int(t[np.argmin(rel)])} µs falls in an already completed cycle")
    classes = spike_classes(spikes, cfg)
    keep = classes != NO_CLASS
    rows = end_cycle - state.cycle + 1  # completed cycles, then the one in progress
    flat = rel[keep] * N_CLASSES + classes[keep] - 1
    counts = np.bincount(flat, minlength=rows * N_CLASSES).astype(np.int64).reshape(rows, N_CLASSES)
    counts[0] += state.counts
    np.minimum(counts, COUNT_MAX, out=counts)
    t_first = np.full(rows, NO_SPIKE_US, np.uint64)
    np.minimum.at(t_first, rel[keep], t[keep])
    t_first[0] = min(int(t_first[0]), state.t_first_us)

    window = np.vstack([state.history.astype(np.int64), counts[:-1]])
    class_index, value, passed = _decide(window, cfg.average, cfg.threshold)
    done = np.arange(state.cycle, end_cycle, dtype=np.int64)
    decisions = np.zeros(len(done), DECISION_DTYPE)
    decisions["cycle"] = done
    decisions["t"] = -(-(done + 1) * (den * US_PER_S) // num)
    decisions["class_index"] = class_index
    decisions["value"] = value
    decisions["passed"] = passed
    decisions["t_first"] = t_first[:-1]
    new_state = ReadoutState(
        cycle=end_cycle,
        counts=counts[-1].astype(np.uint16),
        t_first_us=int(t_first[-1]),
        history=window[len(window) - cfg.average :].astype(np.uint16),
    )
    return decisions, new_state
