"""The whole chip, batch by batch: DVS layer → noise filter → cores → readout, stamped and priced."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from emulator.chip import Chip, dvs_to_core_inputs, init_chip
from emulator.config import READOUT_ADDRESS, Destination, NoiseFilter
from emulator.config_io import save_config
from emulator.default_net import speck_net
from emulator.latency import delay_us
from emulator.mapping import map_layers
from proto.events import make_events
from services.cli import main
from tests.emulator.config_examples import small_config
from tests.real_data import real_file

SHORT = "colleenpamchen-jAER/DVS128-2017-03-21-short.aedat"


def _events(n: int, seed: int, side: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(1_000_000, 1_300_000, n)).astype(np.uint64)
    return make_events(t, rng.integers(0, side, n), rng.integers(0, side, n), rng.integers(0, 2, n))


@pytest.mark.parametrize("mode", ["none", "neighbourhood", "low_pass"])
def test_batches_give_exactly_what_the_whole_stream_gives(mode: str) -> None:
    cfg = small_config()
    cfg = replace(cfg, dvs=replace(cfg.dvs, noise_filter=NoiseFilter(mode=mode, threshold=5, window=3)))  # type: ignore[arg-type]
    events = _events(3000, seed=1)
    whole = Chip.from_config(cfg).step(events)
    chip = Chip.from_config(cfg)
    parts = [chip.step(events[a:b]) for a, b in ((0, 700), (700, 701), (701, 2500), (2500, 3000))]
    np.testing.assert_array_equal(np.concatenate([p.spikes for p in parts]), whole.spikes)
    np.testing.assert_array_equal(np.concatenate([p.decisions for p in parts]), whole.decisions)
    assert sum(p.telemetry.synops for p in parts) == whole.telemetry.synops > 0
    assert sum(p.telemetry.front.kept_events for p in parts) == whole.telemetry.front.kept_events


def test_events_outside_the_sensor_are_dropped_and_counted() -> None:
    cfg = small_config()  # a 16 x 16 DVS
    events = _events(500, seed=2, side=32)
    out = Chip.from_config(cfg).step(events)
    outside = int(np.count_nonzero((events["x"] >= 16) | (events["y"] >= 16)))
    assert out.telemetry.front.outside_sensor == outside > 0
    assert out.telemetry.front.kept_events == len(events) - outside


def test_dvs_output_goes_to_each_destination_in_order() -> None:
    cfg = small_config()
    cfg = replace(cfg, dvs=replace(cfg.dvs, destinations=(Destination(0), Destination(0, feature_shift=0))))
    events = _events(4, seed=3)
    inputs = dvs_to_core_inputs(events, cfg)
    assert len(inputs) == 8
    np.testing.assert_array_equal(inputs["t"][0::2], events["t"])
    np.testing.assert_array_equal(inputs["t"][1::2], events["t"])
    np.testing.assert_array_equal(inputs["channel"][0::2], events["p"])


def test_output_spikes_carry_their_modeled_latency() -> None:
    cfg = small_config()
    params, _ = init_chip(cfg)
    events = _events(3000, seed=4)
    out = Chip.from_config(cfg).step(events)
    core = out.spikes[out.spikes["layer"] != READOUT_ADDRESS]
    assert len(core) > 0
    # every core spike is stamped after some input by exactly its layer's path latency
    for layer in (0, 1):
        stamped = core["t"][core["layer"] == layer].astype(np.int64) - delay_us(int(params.layer_latency_ns[layer]))
        assert set(stamped.tolist()) <= set(events["t"].astype(np.int64).tolist())
    assert params.layer_latency_ns[0] >= 3360  # the paper's end-to-end minimum
    assert params.layer_latency_ns[1] > params.layer_latency_ns[0]


def test_the_default_speck_net_maps_to_five_cores() -> None:
    cfg = speck_net()
    assert len(cfg.layers) == 5
    assert sorted(map_layers(cfg).cores) == [0, 1, 2, 3, 4]


def test_emulate_cli_reports_every_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = real_file(SHORT)
    cfg = small_config()
    cfg = replace(cfg, dvs=replace(cfg.dvs, width=128, height=128, pooling_x=4, pooling_y=4, roi=(8, 8, 23, 23)))
    save_config(cfg, tmp_path / "net.json")
    assert main(["emulate", "--config", str(tmp_path / "net.json"), "--input", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {
        "input_events", "kept_events", "dropped_events", "synops", "spikes_per_layer", "energy_j", "mean_power_w",
        "latency", "decisions", "duration_s", "startup_s", "wall_s", "realtime_factor",
    }  # fmt: skip
    assert doc["input_events"] == 130114
    assert 0 < doc["kept_events"] <= doc["input_events"]
    assert set(doc["spikes_per_layer"]) == {"conv1", "head"}
    assert doc["synops"] > 0
    assert doc["mean_power_w"]["resting"] == pytest.approx(0.42e-3, rel=1e-6)  # the processor, as the paper
    assert doc["mean_power_w"]["sensor"] == pytest.approx(78.9e-6 + 610.9e-6, rel=1e-6)
    assert sum(doc["dropped_events"].values()) == doc["input_events"] - doc["kept_events"]
    assert doc["mean_power_w"]["active"] > 0
    assert doc["energy_j"]["logic"]["active"] > 0
    assert doc["decisions"]["cycles"] > 0 and doc["realtime_factor"] > 0


def test_slow_clock_ticks_are_exact_at_epoch_times() -> None:
    """AEDAT 4 stamps are Unix-epoch µs (~1.6e15): float tick arithmetic would misplace ticks there."""
    from fractions import Fraction

    from emulator.engine import tick_index

    rng = np.random.default_rng(5)
    t = rng.integers(1_600_000_000_000_000, 1_700_000_000_000_000, 10_000, dtype=np.uint64)
    for hz in (1, 1000, 3333, 100_000):
        exact = [int(Fraction(int(v) * hz, 10**6)) for v in t]  # floor of a non-negative fraction
        assert tick_index(t, hz).tolist() == exact


def test_a_batch_may_start_at_the_same_microsecond_the_last_one_ended() -> None:
    cfg = small_config()
    events = _events(3000, seed=6)
    events["t"][1500:1510] = events["t"][1499]  # a burst sharing one timestamp, cut in the middle
    events["t"] = np.maximum.accumulate(events["t"])
    whole = Chip.from_config(cfg).step(events)
    chip = Chip.from_config(cfg)
    parts = [chip.step(events[:1505]), chip.step(events[1505:])]
    np.testing.assert_array_equal(np.concatenate([p.decisions for p in parts]), whole.decisions)


def test_an_empty_first_batch_does_not_power_the_chip_up_at_t0() -> None:
    chip = Chip.from_config(small_config())
    assert len(chip.step(_events(0, seed=7)).decisions) == 0
    late = _events(200, seed=7)
    late["t"] += np.uint64(1_600_000_000_000_000)  # Unix-epoch µs, as AEDAT 4 stamps
    out = chip.step(late)
    assert len(out.decisions) < 1000  # cycles since power-up, not since 1970


def test_time_going_back_is_refused_with_the_index() -> None:
    chip = Chip.from_config(small_config())
    events = _events(100, seed=8)
    chip.step(events[:50])
    with pytest.raises(ValueError, match="previous batch"):
        chip.step(events[:10])
    backwards = events[50:].copy()
    backwards["t"][7] = backwards["t"][6] - np.uint64(1)
    with pytest.raises(ValueError, match=r"t\[7\]"):
        chip.step(backwards)


def test_pass_sensor_events_false_blocks_the_recording() -> None:
    cfg = small_config()
    cfg = replace(cfg, dvs=replace(cfg.dvs, pass_sensor_events=False))
    out = Chip.from_config(cfg).step(_events(300, seed=9))
    assert out.telemetry.front.blocked_sensor_events == 300
    assert out.telemetry.front.kept_events == 0 and out.telemetry.synops == 0


def test_readout_cycles_at_100_khz_and_epoch_times_do_not_overflow() -> None:
    cfg = replace(small_config(), slow_clock_hz=100_000.0)
    events = _events(2000, seed=10)
    events["t"] += np.uint64(1_600_000_000_000_000)
    out = Chip.from_config(cfg).step(events)
    assert len(out.decisions) > 0


def test_emulate_refuses_a_net_that_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from emulator.config import ChipConfig, CoreLayer

    huge = CoreLayer("huge", (96, 1, 1), np.zeros((1024, 96, 1, 1), np.int8), threshold_high=10)
    save_config(ChipConfig(layers=(huge,)), tmp_path / "big.json")
    assert main(["emulate", "--config", str(tmp_path / "big.json"), "--input", str(real_file(SHORT))]) == 2
    assert "'huge'" in capsys.readouterr().err
