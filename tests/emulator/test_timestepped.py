"""A time-stepped (dense, numpy) model with one input event per time bin agrees with the engine.

Per bin the whole layer is updated at once: a dense convolution of the one-hot input frame, then
the same neuron rule on the neurons whose window covers the event (the engine's "updated" set;
a dense model that also let uncovered neurons fire would differ whenever a state sits above θ).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from emulator.config import STATE_MAX, STATE_MIN, ChipConfig, CoreLayer
from emulator.engine import build_params, init_state, layer_state, step
from proto.events import SPIKE_DTYPE, Spikes

I64 = npt.NDArray[np.int64]


def timestepped(layer: CoreLayer, events: Spikes) -> tuple[list[tuple[int, int, int, int]], I64]:
    """Run ``layer`` bin by bin (one event a bin); returns ``[(bin, f, oy, ox)]`` and the final state."""
    c, h, w = layer.input_shape
    f, oh, ow = layer.output_shape
    k, s, p = layer.kernel, layer.stride, layer.padding
    weights = layer.weights.astype(np.int64)
    v = np.zeros((f, oh, ow), np.int64) if layer.initial_state is None else layer.initial_state.astype(np.int64)
    spikes: list[tuple[int, int, int, int]] = []
    for b, ev in enumerate(events):
        frame = np.zeros((c, h + 2 * p, w + 2 * p), np.int64)
        frame[ev["channel"], ev["y"] + p, ev["x"] + p] = 1
        windows = sliding_window_view(frame, (k, k), axis=(1, 2))[:, ::s, ::s][:, :oh, :ow]  # [c, oh, ow, k, k]
        current = np.einsum("cyxij,fcij->fyx", windows, weights)
        covered = np.broadcast_to(windows.sum(axis=(0, 3, 4)) > 0, v.shape)
        charged = np.maximum(np.clip(v + current, STATE_MIN, STATE_MAX), layer.threshold_low)
        fire = covered & (charged >= layer.threshold_high)
        reset = np.zeros_like(v) if layer.reset == "zero" else charged - layer.threshold_high
        reset = np.clip(np.maximum(reset, layer.threshold_low), STATE_MIN, STATE_MAX)
        v = np.where(fire, reset, np.where(covered, charged, v))
        spikes += [(b, int(i), int(y), int(x)) for y, x, i in np.argwhere(fire.transpose(1, 2, 0))]  # (oy, ox, f)
    return spikes, v


def random_layer(rng: np.random.Generator) -> CoreLayer:
    c, h, w = int(rng.integers(1, 5)), int(rng.integers(1, 13)), int(rng.integers(1, 13))
    p = int(rng.integers(0, 3))
    k = int(rng.integers(1, min(5, h + 2 * p, w + 2 * p) + 1))
    f, s = int(rng.integers(1, 5)), int(rng.choice([1, 2, 4]))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    high = int(rng.integers(1, 30))
    low = int(rng.choice([-1, -10, -32768]))
    return CoreLayer(
        name="l0",
        input_shape=(c, h, w),
        weights=rng.integers(-8, 9, size=(f, c, k, k)).astype(np.int8),
        threshold_high=high,
        threshold_low=low,
        stride=s,
        padding=p,
        reset="zero" if rng.random() < 0.5 else "subtract",
        initial_state=rng.integers(-15, 3 * high, size=(f, oh, ow)).astype(np.int16),
    )


@pytest.mark.parametrize("seed", range(100))
def test_timestepped_matches_engine_on_single_layers(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    layer = random_layer(rng)
    c, h, w = layer.input_shape
    n = int(rng.integers(10, 150))
    events = np.zeros(n, SPIKE_DTYPE)
    events["t"] = np.arange(n)  # bin b = input b
    events["channel"], events["y"], events["x"] = rng.integers(0, c, n), rng.integers(0, h, n), rng.integers(0, w, n)
    expected, v = timestepped(layer, events)
    params = build_params(ChipConfig(layers=(layer,)))
    state, out, _ = step(init_state(params), events, params)
    assert [(int(o["t"]), int(o["channel"]), int(o["y"]), int(o["x"])) for o in out] == expected
    assert layer_state(state, params, 0).tolist() == v.tolist()
