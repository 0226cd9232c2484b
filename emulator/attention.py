"""The attention input mask: causal temporal-wise masking of the event stream before the chip's cores.

The paper (attention-snn.md) deploys temporal attention on Speck as a mask on the *input* events
(mask ratio 0.5): input windows judged unimportant are not sent, so the chip does less work. Offline
it keeps the top half of the time steps of a whole clip; online we must decide without the future.

Model (times in µs, ``W = window_us``, ``H = history``):

1. **Windows.** Window ``k`` is ``[t0 + k·W, t0 + (k+1)·W)``. Only windows holding at least one event
   are *decided* (an empty window has nothing to mask).
2. **Features.** Each window's events (all of them, kept or not: the mask never hides input from the
   scorer) are binned into a count frame ``(C, h, w) = frame_shape``: pixel ``(x, y)`` → bin
   ``(y·h // height, x·w // width)``, channel 1 for ON (any ``p > 0``) and 0 for OFF when ``C = 2``, 0 when ``C = 1``. Its
   features are ``[mean, max]`` of the counts over all ``C·h·w`` cells — the average- and max-pool over
   (C, H, W) that the TA module feeds its MLP. An empty window has ``[0, 0]``.
3. **Causal score, zero added latency.** When the first event of window ``k`` arrives, the windows
   before ``k`` are complete: ``history`` = features of the last ``H`` windows ``k−H … k−1`` (oldest
   first; empty windows included; zeros before the stream). ``s_k = scorer.score(history)``; the whole
   window is then passed or dropped, each event the moment it arrives.
4. **Threshold.** ``q`` = the ``mask_ratio`` quantile (numpy's default "linear" method) of the scores of
   the last ``H`` decided windows before ``k``. Keep iff ``s_k > q``; if ``s_k == q``, keep iff the kept
   fraction of those same windows is ``< 1 − mask_ratio`` (so a constant stream keeps half). With no
   decided window yet: keep. ``mask_ratio = 0`` keeps every window, ``mask_ratio = 1`` drops every one.

The default :class:`EventRateScorer` scores ``history[-1, 0]`` (a window after an active window is
important). The temporal-attention scorer trained by the toolchain implements the same
:class:`Scorer` protocol; :class:`TemporalAttentionScorer` runs its exported TA MLP weights in numpy.

Streaming: :func:`mask_step` carries the open window (index, decision, partial frame) and the
histories in :class:`MaskState`; any split of a time-ordered stream into batches gives the same
output. A gap of many empty windows costs ``O(H)``: beyond ``H`` empties the history is all zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol, TypeVar

import numba
import numpy as np
import numpy.typing as npt

from proto.events import EVENT_DTYPE, Events, empty_events, empty_events_uninitialised, event_words

N_FEATURES: Final = 2
"""Features per window: ``[mean count per frame cell, max count per cell]``."""
POLARITY_CHANNELS: Final = (1, 2)
"""Allowed frame channels: polarities merged (1) or ON/OFF apart (2, ON = channel 1)."""
_T = TypeVar("_T", bound=np.generic)
NO_WINDOW: Final = -1
"""``MaskState.window`` before the first event (window indices are ≥ 0)."""
ERR_ORDER: Final = -1
ERR_BEFORE_T0: Final = -2
ERR_OUTSIDE: Final = -3
_ERRORS: Final = {
    ERR_ORDER: "events: not time-ordered (within the batch or after the previous batch)",
    ERR_BEFORE_T0: "events: timestamp before the state's t0_us",
    ERR_OUTSIDE: "events: coordinates outside the sensor",
}


@dataclass(frozen=True)
class MaskParams:
    """Mask settings: ``window_us`` µs per window, fraction ``mask_ratio`` of windows to drop,
    ``history`` windows of features and scores looked back on, and the ``(C, h, w)`` feature frame."""

    window_us: int = 15_000
    mask_ratio: float = 0.5
    history: int = 32
    frame_shape: tuple[int, int, int] = (2, 32, 32)

    def __post_init__(self) -> None:
        if self.window_us < 1:
            raise ValueError(f"window_us: must be ≥ 1, got {self.window_us}")
        if not 0.0 <= self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio: must be in [0, 1], got {self.mask_ratio}")
        if self.history < 1:
            raise ValueError(f"history: must be ≥ 1, got {self.history}")
        c, h, w = self.frame_shape
        if c not in POLARITY_CHANNELS or h < 1 or w < 1:
            raise ValueError(f"frame_shape: must be (1 or 2, ≥ 1, ≥ 1), got {self.frame_shape}")


class MaskState(NamedTuple):
    """Streaming state; replaced, never mutated, by :func:`mask_step`.

    ``window``: index of the open window (the latest with events, :data:`NO_WINDOW` if none);
    ``keep``: its decision; ``frame``: int32 ``frame_shape`` counts of its events so far;
    ``features``: float64 ``[H, 2]`` of the last ``H`` completed windows, oldest first;
    ``scores`` / ``kept``: float64 / bool ``[H]`` of the last decided windows, oldest first, of which
    the last ``min(n_decided, H)`` are valid; ``last_t_us``: time of the latest event (−1 if none).
    """

    t0_us: int
    width: int
    height: int
    window: int
    keep: bool
    frame: npt.NDArray[np.int32]
    features: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]
    kept: npt.NDArray[np.bool_]
    n_decided: int
    last_t_us: int


class MaskCounts(NamedTuple):
    """What one :func:`mask_step` did: events in and dropped, windows decided and dropped."""

    events_in: int
    events_masked: int
    windows: int
    windows_masked: int


class Scorer(Protocol):
    """Scores the next window from the features ``[H, 2]`` of the last ``H`` completed windows."""

    def score(self, history: npt.NDArray[np.float64]) -> float:
        """Higher = more important; ``history`` is read-only, oldest first."""
        ...


@dataclass(frozen=True)
class EventRateScorer:
    """The default scorer: the mean count of the most recent completed window."""

    def score(self, history: npt.NDArray[np.float64]) -> float:
        """``history[-1, 0]``: a window after an active window is important."""
        return float(history[-1, 0])


@dataclass(frozen=True, eq=False)
class TemporalAttentionScorer:
    """The TA module on the history: ``sigmoid(MLP(avg) + MLP(max))[-1]`` with
    ``MLP(v) = w2 @ relu(w1 @ v)`` (no bias); ``w1`` is ``[H/r, H]``, ``w2`` ``[H, H/r]`` (torch layout)."""

    w1: npt.NDArray[np.float64]
    w2: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        hidden, n = self.w1.shape
        if self.w2.shape != (n, hidden):
            raise ValueError(f"w2: shaped {self.w2.shape}, expected {(n, hidden)} to match w1 {self.w1.shape}")

    def score(self, history: npt.NDArray[np.float64]) -> float:
        """The attention weight of the last step: the score for the window after ``history``."""
        if len(history) != self.w1.shape[1]:
            raise ValueError(f"history: {len(history)} windows, the MLP takes {self.w1.shape[1]}")
        z = self._mlp(history[:, 0]) + self._mlp(history[:, 1])
        return float(1.0 / (1.0 + np.exp(-z[-1])))

    def _mlp(self, v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = self.w2 @ np.maximum(self.w1 @ v, 0.0)
        return out


def init_mask_state(params: MaskParams, t0_us: int, width: int, height: int) -> MaskState:
    """A state before any event, windows aligned to ``t0_us``, for a ``width × height`` sensor."""
    if t0_us < 0:
        raise ValueError(f"t0_us: must be ≥ 0, got {t0_us}")
    if width < 1 or height < 1:
        raise ValueError(f"width, height: must be ≥ 1, got {width}×{height}")
    h = params.history
    return MaskState(
        t0_us=t0_us,
        width=width,
        height=height,
        window=NO_WINDOW,
        keep=True,
        frame=np.zeros(params.frame_shape, np.int32),
        features=np.zeros((h, N_FEATURES), np.float64),
        scores=np.zeros(h, np.float64),
        kept=np.zeros(h, np.bool_),
        n_decided=0,
        last_t_us=-1,
    )


@numba.njit(cache=True)
def _scan(
    words: npt.NDArray[np.uint64],
    t0: int,
    window_us: int,
    last_t: int,
    open_window: int,
    frame: npt.NDArray[np.int32],
    shape: tuple[int, int, int],
    width: int,
    height: int,
    starts: npt.NDArray[np.int64],
    windows: npt.NDArray[np.int64],
    totals: npt.NDArray[np.int64],
    maxes: npt.NDArray[np.int64],
) -> int:
    """Split ``words`` into runs of one window each; returns the run count (or an ``ERR_*`` code).

    Per run: first event index, window, event total and max cell count (a run continuing the open
    window includes ``frame``). ``frame`` (flat) ends holding the last run's counts.
    """
    nc, nh, nw = shape
    g, total, peak = -1, 0, 0
    prev_t = last_t
    for i in range(words.shape[0]):
        t = int(words[i, 0])
        if t < prev_t:
            return ERR_ORDER
        if t < t0:
            return ERR_BEFORE_T0
        prev_t = t
        w1 = words[i, 1]
        x, y = int(w1 & np.uint64(0xFFFF)), int((w1 >> np.uint64(16)) & np.uint64(0xFFFF))
        if x >= width or y >= height:
            return ERR_OUTSIDE
        k = (t - t0) // window_us
        if g < 0 or k != windows[g]:
            if g < 0 and k == open_window:  # the first run continues the open window
                total, peak = int(frame.sum()), int(frame.max())
            else:
                if g >= 0:
                    totals[g], maxes[g] = total, peak
                frame[:] = 0
                total, peak = 0, 0
            g += 1
            starts[g], windows[g] = i, k
        c = 1 if nc == 2 and (w1 >> np.uint64(32)) & np.uint64(0xFF) else 0  # any p > 0 is ON
        cell = (c * nh + y * nh // height) * nw + x * nw // width
        frame[cell] += 1
        total += 1
        peak = max(peak, int(frame[cell]))
    if g >= 0:
        totals[g], maxes[g] = total, peak
    return g + 1


@numba.njit(cache=True)
def _threshold(scores: npt.NDArray[np.float64], kept: npt.NDArray[np.bool_], first: int, h: int, ratio: float) -> None:
    """Decide ``kept[first:]`` from ``scores`` (and the earlier ``kept``), per the module docstring."""
    for j in range(first, len(scores)):
        lo = max(0, j - h)
        if ratio == 0.0 or ratio == 1.0 or j == lo:
            kept[j] = ratio != 1.0
            continue
        prev = np.sort(scores[lo:j])
        pos = (j - lo - 1) * ratio
        i = int(pos)
        q = prev[i] if i + 1 >= j - lo else prev[i] + (pos - i) * (prev[i + 1] - prev[i])
        s = scores[j]
        kept[j] = s > q or (s == q and kept[lo:j].sum() / (j - lo) < 1.0 - ratio)


@numba.njit(cache=True)
def _gather(
    words: npt.NDArray[np.uint64],
    out: npt.NDArray[np.uint64],
    starts: npt.NDArray[np.int64],
    keep: npt.NDArray[np.bool_],
) -> int:
    """Copy the events of the kept runs (whole 16-byte words) to the front of ``out``; returns how many."""
    k = 0
    for g in range(len(keep)):
        if keep[g]:
            for i in range(starts[g], starts[g + 1]):
                out[k, 0], out[k, 1] = words[i, 0], words[i, 1]
                k += 1
    return k


def _history(
    state: MaskState, params: MaskParams, runs: tuple[npt.NDArray[np.int64], ...], first_new: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Feature rows (the state's ``H`` then the windows completed in this batch, empties included up
    to ``H`` per gap) and, per new run, the row where its history ends."""
    windows, totals, maxes = runs
    h, cells = params.history, int(np.prod(params.frame_shape))
    state_run = np.array([[state.window, state.frame.sum(), state.frame.max()]], np.int64)
    prev = np.vstack([state_run, np.column_stack([windows, totals, maxes])[:-1]])[first_new:]
    rows = 1 + np.minimum(windows[first_new:] - prev[:, 0] - 1, h)
    ends = h + np.cumsum(rows)
    feats = np.zeros((ends[-1], N_FEATURES), np.float64)
    feats[:h] = state.features
    feats[ends - rows, 0] = prev[:, 1] / cells
    feats[ends - rows, 1] = prev[:, 2]
    feats.flags.writeable = False
    return feats, ends


def _ring(old: npt.NDArray[_T], new: npt.NDArray[_T], h: int) -> npt.NDArray[_T]:
    """The last ``h`` of ``old`` then ``new``, as a new array."""
    return np.concatenate([old, new])[-h:].copy()


def mask_step(
    state: MaskState, events: Events, params: MaskParams, scorer: Scorer
) -> tuple[MaskState, Events, MaskCounts]:
    """Mask a time-ordered batch; returns ``(new state, kept events in order, counts)`` (the kept
    events may be ``events`` itself, when the whole batch falls in a window already kept).

    Pure: ``state`` is never mutated. Splitting a stream into batches gives the same kept events and
    final state as one call, provided each returned state is passed to the next call.
    """
    h = params.history
    if state.frame.shape != params.frame_shape or state.features.shape != (h, N_FEATURES):
        raise ValueError(f"state: shaped for another MaskParams than {params}")
    src = np.ascontiguousarray(events)
    if src.dtype != EVENT_DTYPE:
        raise ValueError(f"events: dtype must be proto.events.EVENT_DTYPE, got {src.dtype}")
    n = len(src)
    if n == 0:
        return state, empty_events(), MaskCounts(0, 0, 0, 0)
    frame = state.frame.ravel().copy()
    starts, windows, totals, maxes = np.empty((4, n + 1), np.int64)  # one allocation, four rows
    g = _scan(
        event_words(src), state.t0_us, params.window_us, state.last_t_us, state.window, frame,
        params.frame_shape, state.width, state.height, starts, windows, totals, maxes,
    )  # fmt: skip
    if g < 0:
        raise ValueError(_ERRORS[g])
    starts[g] = n
    first_new = 1 if windows[0] == state.window else 0
    new_runs = g - first_new
    if new_runs == 0:  # the whole batch in the window already decided (most small batches): no copy
        kept_events = src if state.keep else empty_events()
        n_kept = len(kept_events)
        new_state = state._replace(frame=frame.reshape(params.frame_shape), last_t_us=int(src["t"][-1]))
        return new_state, kept_events, MaskCounts(n, n - n_kept, 0, 0)
    valid = min(state.n_decided, h)
    keep = np.full(g, state.keep, np.bool_)
    feats, ends = _history(state, params, (windows[:g], totals[:g], maxes[:g]), first_new)
    new_scores = np.array([scorer.score(feats[end - h : end]) for end in ends], np.float64)
    all_scores = np.concatenate([state.scores[h - valid :], new_scores])
    all_kept = np.concatenate([state.kept[h - valid :], np.zeros(new_runs, np.bool_)])
    _threshold(all_scores, all_kept, valid, h, float(params.mask_ratio))
    keep[first_new:] = all_kept[valid:]
    features, scores, kept = (
        feats[-h:].copy(),
        _ring(state.scores, new_scores, h),
        _ring(state.kept, keep[first_new:], h),
    )
    out = empty_events_uninitialised(n)
    n_kept = _gather(event_words(src), event_words(out), starts, keep)
    new_state = state._replace(
        window=int(windows[g - 1]), keep=bool(keep[-1]), frame=frame.reshape(params.frame_shape),
        features=features, scores=scores, kept=kept, n_decided=state.n_decided + new_runs,
        last_t_us=int(src["t"][-1]),
    )  # fmt: skip
    counts = MaskCounts(n, n - n_kept, new_runs, int(new_runs - keep[first_new:].sum()))
    return new_state, out[:n_kept], counts
