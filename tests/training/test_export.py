"""Export: sinabs' discretisation, the chain, validation and mapping, files, float vs quantised."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from emulator.attention import TemporalAttentionScorer
from emulator.config import READOUT, ChipConfig
from emulator.config_io import load_config
from emulator.mapping import map_layers
from training.export import (
    ExportError,
    discretisation_scale,
    export,
    float_vs_quantised,
    load_scorer,
    save_model,
)
from training.spec import InputSpec, SpeckLayerSpec

INPUT = InputSpec(sensor=(128, 128), downsample=4, dt_us=30_000, steps=8)


def sinabs_scale(values: np.ndarray, bits: int) -> float:
    """speck-hardware.md §6, written out again: Dmax/|M| if |m| ≤ |M|·Dmin/Dmax else Dmin/|m|."""
    d_max, d_min = 2 ** (bits - 1) - 1, 2 ** (bits - 1)
    m, big_m = float(values.min()), float(values.max())
    return d_max / abs(big_m) if abs(m) <= abs(big_m) * d_min / d_max else d_min / abs(m)


def two_layer_net(w0: np.ndarray, threshold0: float = 2.0, bias0: np.ndarray | None = None) -> list[SpeckLayerSpec]:
    """conv (2→f, 3×3, stride 2, pool 4 after) → fc (f·4·4 → 3 classes)."""
    f = w0.shape[0]
    rng = np.random.default_rng(1)
    fc = rng.normal(0, 0.3, (3, f, 4, 4)).astype(np.float32)
    return [
        SpeckLayerSpec("conv", (2, 32, 32), w0, bias0, stride=2, padding=1, threshold=threshold0, pool_after=4),
        SpeckLayerSpec("fc", (f, 4, 4), fc, None, stride=1, padding=0, threshold=1.0),
    ]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_scale_and_rounding_follow_section_6(sign: float) -> None:
    rng = np.random.default_rng(0)
    w = (sign * rng.uniform(-0.3, 0.5, (4, 2, 3, 3))).astype(np.float32)
    bias = np.array([0.5, -1.0, 0.0, 2.0], np.float32)  # per step: the chip gets ÷ ticks per step
    layers = two_layer_net(w, threshold0=2.0, bias0=bias)
    result = export(layers, INPUT, ["a", "b", "c"])
    expected = min(sinabs_scale(w, 8), sinabs_scale(bias, 8), sinabs_scale(np.array([-2.0, 2.0]), 16))
    row = result.report[0]
    assert row.scale == pytest.approx(expected)
    layer = result.config.layers[0]
    np.testing.assert_array_equal(layer.weights, np.round(w.astype(np.float64) * expected).astype(np.int8))
    assert layer.threshold_high == round(2.0 * expected)
    assert layer.threshold_low == -layer.threshold_high  # min_v_mem = -1.0 scaled, not -32768
    ticks_per_step = INPUT.dt_us * result.config.slow_clock_hz / 1e6
    assert layer.bias is not None and layer.leak
    np.testing.assert_array_equal(layer.bias, np.round(bias.astype(np.float64) / ticks_per_step * expected))
    assert row.weight_range_int == (int(layer.weights.min()), int(layer.weights.max()))
    assert row.limited_by == "bias"  # the largest bias (2.0) sets the scale: it lands on the int8 edge
    assert np.abs(np.round(bias * expected)).max() == 127


def test_scale_of_a_zero_tensor_is_infinite_and_a_tiny_threshold_stays_one() -> None:
    assert discretisation_scale(np.zeros(3), 8) == float("inf")
    w = np.full((1, 2, 3, 3), 1.0, np.float32)
    layers = two_layer_net(w, threshold0=1e-6)
    layers = [layers[0], SpeckLayerSpec("fc", (1, 4, 4), np.ones((3, 1, 4, 4), np.float32), None, 1, 0, 1.0)]
    result = export(layers, INPUT, ["a", "b", "c"])
    assert result.config.layers[0].threshold_high == 1
    assert result.report[0].limited_by == "weights"


def test_small_weights_are_reported_when_they_round_to_zero() -> None:
    w = np.zeros((2, 2, 3, 3), np.float32)
    w[0, 0, 0, 0] = 1.0
    w[1, 1, 1, 1] = 1e-4  # 127e-4 rounds to 0
    result = export(two_layer_net(w), INPUT, ["a", "b", "c"])
    assert result.report[0].weights_zeroed == 1
    assert "conv" in result.format_report()


def test_config_is_chained_valid_mapped_and_round_trips(tmp_path: Path) -> None:
    w = np.random.default_rng(2).normal(0, 0.2, (8, 2, 3, 3)).astype(np.float32)
    result = export(two_layer_net(w), INPUT, ["a", "b", "c"])
    cfg = result.config
    assert isinstance(cfg, ChipConfig)
    assert (cfg.dvs.pooling_x, cfg.dvs.pooling_y, cfg.dvs.polarity) == (4, 4, "both")
    assert cfg.dvs.destinations[0].layer == 0
    assert cfg.layers[0].destinations[0].layer == 1 and cfg.layers[0].destinations[0].pooling == 4
    assert cfg.layers[1].destinations[0].layer == READOUT
    assert (cfg.readout.address_mode, cfg.readout.average, cfg.readout.labels) == (3, 1, ("a", "b", "c"))
    assert map_layers(cfg).cores == tuple(r.core for r in result.report)

    w1, w2 = np.ones((2, 8)), np.ones((8, 2))
    path = tmp_path / "model.json"
    save_model(result, path, (w1, w2), {"epochs": 3})
    assert load_config(path) == cfg
    scorer = load_scorer(path)
    assert isinstance(scorer, TemporalAttentionScorer)
    np.testing.assert_array_equal(scorer.w1, w1)
    np.testing.assert_array_equal(scorer.w2, w2)
    assert (tmp_path / "model.scorer.npz").is_file() and (tmp_path / "model.meta.json").is_file()
    save_model(result, path, None, {})
    assert load_scorer(path) is None


def test_a_net_too_big_is_refused_naming_the_layer() -> None:
    big = np.zeros((1024, 2, 3, 3), np.float32)
    big[0, 0, 1, 1] = 1.0
    layers = [
        SpeckLayerSpec("huge", (2, 32, 32), big, None, stride=1, padding=1, threshold=1.0, pool_after=4),
        SpeckLayerSpec("fc", (1024, 8, 8), np.ones((3, 1024, 8, 8), np.float32), None, 1, 0, 1.0),
    ]
    with pytest.raises(ExportError, match="huge") as err:
        export(layers, INPUT, ["a", "b", "c"])
    assert err.value.layer == "huge"


def test_a_broken_chain_or_label_count_is_refused() -> None:
    w = np.ones((4, 2, 3, 3), np.float32)
    layers = two_layer_net(w)
    with pytest.raises(ExportError, match="labels"):
        export(layers, INPUT, ["a", "b"])
    wrong = [layers[0], SpeckLayerSpec("fc", (4, 8, 8), np.ones((3, 4, 8, 8), np.float32), None, 1, 0, 1.0)]
    with pytest.raises(ExportError, match="fc"):
        export(wrong, INPUT, ["a", "b", "c"])


def test_float_and_quantised_agree_on_random_input() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(0.05, 0.3, (8, 2, 3, 3)).astype(np.float32)
    layers = two_layer_net(w, threshold0=1.0)
    result = export(layers, INPUT, ["a", "b", "c"])
    frames = rng.poisson(0.3, (24, INPUT.steps, *INPUT.shape)).astype(np.float64)
    cmp = float_vs_quantised(layers, result, frames, INPUT.dt_us)
    assert cmp.float_spikes.sum() > 0
    assert cmp.agreement >= 0.9
    ratio = cmp.quantised_spikes.sum(axis=0) / cmp.float_spikes.sum(axis=0)
    assert np.all(np.abs(ratio - 1) < 0.1)


def test_a_net_trained_on_substeps_leaks_its_bias_per_substep() -> None:
    w = np.random.default_rng(0).uniform(-0.3, 0.5, (4, 2, 3, 3)).astype(np.float32)
    bias = np.array([0.5, -1.0, 0.0, 2.0], np.float32)  # added once per neuron step, here dt/3
    fine = replace(INPUT, substeps=3)
    coarse_layer = export(two_layer_net(w, bias0=bias), INPUT, ["a", "b", "c"]).config.layers[0]
    result = export(two_layer_net(w, bias0=bias), fine, ["a", "b", "c"])
    layer, scale = result.config.layers[0], result.report[0].scale
    ticks_per_substep = fine.step_us * result.config.slow_clock_hz / 1e6
    assert fine.step_us * 3 == INPUT.dt_us
    np.testing.assert_array_equal(layer.bias, np.round(bias.astype(np.float64) / ticks_per_substep * scale))
    assert coarse_layer.bias is not None and layer.bias is not None
    assert np.abs(layer.bias).sum() > np.abs(coarse_layer.bias).sum()  # the same drive in a third of the time
