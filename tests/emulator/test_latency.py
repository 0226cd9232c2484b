"""Latency model: per-layer bounds, fan-out monotonicity, additive paths, stamping, decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.config import CoreLayer, ReadoutConfig
from emulator.latency import (
    END_TO_END_MIN_NS,
    LAYER_MAX_NS,
    LAYER_MIN_NS,
    PATH_OVERHEAD_NS,
    decision_latency_us,
    delay_spikes,
    delay_us,
    fan_out,
    layer_latency_ns,
    path_latency_ns,
)
from emulator.readout import new_readout_state, readout_step
from proto.events import empty_spikes


def layer(out_channels: int = 8, kernel: int = 3, stride: int = 1, in_channels: int = 2, side: int = 16) -> CoreLayer:
    return CoreLayer(
        name="l",
        input_shape=(in_channels, side, side),
        weights=np.zeros((out_channels, in_channels, kernel, kernel), np.int8),
        threshold_high=1,
        stride=stride,
    )


layers_st = st.builds(
    layer,
    out_channels=st.integers(1, 64),
    kernel=st.integers(1, 16),
    stride=st.sampled_from([1, 2, 4, 8]),
)


def test_fan_out_is_cout_k2_over_s2() -> None:
    assert fan_out(layer(32, 3, 1)) == 288
    assert fan_out(layer(32, 3, 2)) == 72
    assert fan_out(layer(1, 1, 8)) == 1  # floor 1


def test_documented_values() -> None:
    assert layer_latency_ns(layer(32, 3, 1)) == 120 + 2 * 288
    assert layer_latency_ns(layer(1, 1, 8)) == LAYER_MIN_NS + 2
    assert layer_latency_ns(layer(64, 16, 1)) == LAYER_MAX_NS  # fan-out 16384, clipped
    assert PATH_OVERHEAD_NS + LAYER_MIN_NS == END_TO_END_MIN_NS == 3360


@given(layers_st)
def test_every_layer_within_120ns_to_7us(lay: CoreLayer) -> None:
    assert LAYER_MIN_NS <= layer_latency_ns(lay) <= LAYER_MAX_NS


@given(layers_st)
def test_a_one_layer_path_takes_at_least_336us(lay: CoreLayer) -> None:
    assert path_latency_ns([lay]) >= END_TO_END_MIN_NS


@given(st.integers(1, 63), st.integers(1, 16), st.sampled_from([1, 2, 4, 8]))
def test_monotonic_in_fan_out(c_out: int, kernel: int, stride: int) -> None:
    assert layer_latency_ns(layer(c_out, kernel, stride)) <= layer_latency_ns(layer(c_out + 1, kernel, stride))
    if kernel < 16:
        assert layer_latency_ns(layer(c_out, kernel, stride)) <= layer_latency_ns(layer(c_out, kernel + 1, stride))
    if stride > 1:
        assert layer_latency_ns(layer(c_out, kernel, stride)) <= layer_latency_ns(layer(c_out, kernel, stride // 2))


@given(st.lists(layers_st, min_size=1, max_size=4), st.lists(layers_st, min_size=1, max_size=4))
def test_composition_is_additive(a: list[CoreLayer], b: list[CoreLayer]) -> None:
    assert path_latency_ns(a + b) == path_latency_ns(a) + path_latency_ns(b) - PATH_OVERHEAD_NS
    assert path_latency_ns(a) == PATH_OVERHEAD_NS + sum(layer_latency_ns(x) for x in a)


def test_an_empty_path_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        path_latency_ns([])


def test_output_spikes_are_stamped_input_plus_latency_rounded_up() -> None:
    spikes = empty_spikes(3)
    spikes["t"] = [0, 10, 1_000_000]
    spikes["channel"] = [1, 2, 3]
    out = delay_spikes(spikes, 3_360)
    assert out["t"].tolist() == [4, 14, 1_000_004]
    assert out["channel"].tolist() == [1, 2, 3]
    assert spikes["t"].tolist() == [0, 10, 1_000_000]  # a new array
    assert delay_us(3_000) == 3 and delay_us(0) == 0


def test_decision_latency_is_cycle_end_minus_first_contributing_input() -> None:
    path_ns = path_latency_ns([layer(32, 3, 1)])  # 3936 ns → stamps +4 µs
    spikes = empty_spikes(2)
    spikes["t"] = [100, 2_300]  # input times
    cfg = ReadoutConfig()
    decisions, _ = readout_step(delay_spikes(spikes, path_ns), new_readout_state(cfg, 1000.0), cfg, 1000.0, 3_000)
    lat = decision_latency_us(decisions, path_ns)
    assert lat[0] == 1_000 - 100 and math.isnan(lat[1]) and lat[2] == 3_000 - 2_300
