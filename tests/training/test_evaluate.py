"""Evaluation on the chip: a hand-made net whose answer is known, the mask, the metrics, the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator.attention import MaskParams
from emulator.config import ChipConfig
from proto.events import Events, empty_events, make_events
from training.evaluate import COLUMNS, NO_PREDICTION, ChipEvaluation, as_json, evaluate_on_chip, format_table, plots
from training.export import export
from training.spec import InputSpec, SpeckLayerSpec

INPUT = InputSpec(sensor=(128, 128), downsample=4, dt_us=30_000, steps=33)
LABELS = ("left", "right")


def halves_net() -> ChipConfig:
    """Layer 0 sums 4×4 pooled pixels (both polarities) into one 8×8 map, then pools 4 → 2×2; the output
    layer's channel 0 adds the left column and subtracts the right, channel 1 the opposite. Every event
    makes one layer-0 spike, so the output spikes follow which half of the image holds more events."""
    side = np.array([1.0, -1.0], np.float32)  # left column +, right column −
    out = np.stack([np.broadcast_to(side, (2, 2)), np.broadcast_to(-side, (2, 2))])[:, None].astype(np.float32)
    layers = [
        SpeckLayerSpec("sum", (2, 32, 32), np.ones((1, 2, 4, 4), np.float32), None, 4, 0, 1.0, pool_after=4),
        SpeckLayerSpec("out", (1, 2, 2), out, None, 1, 0, 1.0),
    ]
    return export(layers, INPUT, LABELS).config


def half_events(label: int, rng: np.random.Generator, n: int = 3000, majority: float = 0.8) -> Events:
    """``n`` events over 1 s; a ``majority`` of them in the half named by ``label`` (0 left, 1 right)."""
    t = np.sort(rng.integers(0, 1_000_000, n))
    in_half = rng.random(n) < majority
    left = in_half if label == 0 else ~in_half
    x = np.where(left, rng.integers(0, 64, n), rng.integers(64, 128, n))
    return make_events(t, x, rng.integers(0, 128, n), rng.integers(0, 2, n))


@pytest.fixture(scope="module")
def samples() -> list[tuple[Events, int]]:
    rng = np.random.default_rng(0)
    return [(half_events(i % 2, rng), i % 2) for i in range(10)]


@pytest.fixture(scope="module")
def plain(samples: list[tuple[Events, int]]) -> ChipEvaluation:
    return evaluate_on_chip(halves_net(), samples, mask=None, scorer=None, progress=False)


@pytest.fixture(scope="module")
def masked(samples: list[tuple[Events, int]]) -> ChipEvaluation:
    mask = MaskParams(window_us=15_000, mask_ratio=0.5, history=8, frame_shape=(2, 32, 32))
    return evaluate_on_chip(halves_net(), samples, mask=mask, scorer=None, progress=False)


def test_the_hand_made_net_classifies_on_the_chip(plain: ChipEvaluation) -> None:
    assert plain.accuracy == 1.0
    assert plain.readout_accuracy >= 0.9
    # every kept event makes exactly one layer-0 spike (weight 127 = threshold)
    for s in plain.samples:
        assert s.spikes[0] == s.kept_events == s.dvs_events == s.input_events
        assert s.spikes_per_bin.sum(axis=0).tolist() == s.spikes.tolist()


def test_metrics_follow_their_definitions(plain: ChipEvaluation) -> None:
    neurons = 1 * 8 * 8 + 2 * 1 * 1
    assert plain.neurons == (64, 2)
    total = sum(int(s.spikes.sum()) for s in plain.samples)
    bins = sum(int(s.duration_s * 1e6) // INPUT.dt_us + 1 for s in plain.samples)
    assert plain.nasfr == pytest.approx(total / (bins * neurons))
    assert plain.spikes_per_sample == pytest.approx(total / plain.n)
    assert plain.kept_input == 1.0
    assert plain.power_resting_mw == pytest.approx(0.42)
    active_j = sum(float(s.active_j[:3].sum()) for s in plain.samples)
    assert plain.power_active_mw == pytest.approx(active_j / plain.duration_s * 1e3)
    assert plain.power_total_mw == pytest.approx(plain.power_resting_mw + plain.power_active_mw)
    mean_j = np.mean([0.42e-3 * s.duration_s + s.active_j[:3].sum() for s in plain.samples])
    assert plain.energy_per_sample_uj == pytest.approx(mean_j * 1e6)
    assert plain.latency_us > 3.36


def test_no_output_spike_counts_as_wrong() -> None:
    ev = evaluate_on_chip(halves_net(), [(empty_events(), 0)], mask=None, scorer=None, progress=False)
    assert ev.samples[0].prediction == NO_PREDICTION
    assert ev.accuracy == 0.0 and ev.no_prediction == 1


def test_a_mask_of_ratio_half_keeps_about_half_and_saves_synops(plain: ChipEvaluation, masked: ChipEvaluation) -> None:
    assert 0.4 <= masked.kept_windows <= 0.6
    assert 0.35 <= masked.kept_input <= 0.65
    synops = [sum(s.synops for s in ev.samples) for ev in (plain, masked)]
    assert synops[1] < 0.7 * synops[0]
    assert masked.power_active_mw < plain.power_active_mw


def test_table_and_json_hold_every_column(plain: ChipEvaluation, masked: ChipEvaluation) -> None:
    evaluations = {"vanilla": plain, "dynamic": masked}
    doc = as_json(evaluations, {"vanilla": 0.95})
    for name in evaluations:
        assert set(COLUMNS) <= set(doc[name])
    assert doc["vanilla"]["acc_float"] == 0.95 and doc["dynamic"]["acc_float"] is None
    table = format_table(evaluations, {"vanilla": 0.95})
    for header in ("acc float", "acc chip", "spikes/sample", "NASFR", "kept in", "P rest mW", "P act mW",
                   "P tot mW", "E/sample µJ", "latency µs", "vanilla", "dynamic", "95.0%"):  # fmt: skip
        assert header in table


def test_plots_write_pngs(plain: ChipEvaluation, masked: ChipEvaluation, tmp_path: Path) -> None:
    paths = plots({"vanilla": plain, "dynamic": masked}, tmp_path)
    assert {p.name for p in paths} == {"nsfr.png", "power.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
