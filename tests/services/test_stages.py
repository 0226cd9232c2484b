"""The filter, chip and readout stages without sockets: each equals the emulator's own steps."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar, cast

import numpy as np
import pytest

from emulator.attention import MaskParams, init_mask_state, mask_step
from emulator.chip import Chip
from emulator.config import READOUT_ADDRESS, ChipConfig, NoiseFilter
from emulator.dvs import output_shape
from emulator.front_end import front_end_step
from emulator.io import read_recording
from emulator.noise import init_filter_state
from proto.events import Events, Spikes, concat_events, make_events
from proto.messages import EventBatch, Message, Prediction, SpikeBatch
from services import telemetry as tm
from services.clock import FakeClock
from services.defaults import resolve_chip_config, synthetic_events
from services.filter_stage import FilterStage
from services.readout_stage import ReadoutStage
from services.runtime import Outbox
from services.stages import ChipStage
from services.telemetry import TIME_RESETS
from tests.real_data import real_file

SHORT = "colleenpamchen-jAER/DVS128-2017-03-21-short.aedat"  # DVS128, 6.2 s, 130 k events
WINDOW_US = 1000


@pytest.fixture(scope="module")
def config() -> ChipConfig:
    return resolve_chip_config("default")


def _head(events: Events, span_us: int) -> Events:
    """The events of the first ``span_us`` of a recording."""
    return events[events["t"] < events["t"][0] + np.uint64(span_us)]


def _windows(events: Events, window_us: int = WINDOW_US) -> list[Events]:
    """Non-empty ``window_us`` slices of a time-ordered stream, as the sensor cuts them."""
    t0 = int(events["t"][0])
    edges = np.searchsorted(events["t"], np.arange(t0, int(events["t"][-1]) + window_us + 1, window_us))
    return [events[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _raw(events: Sequence[Events], side: int = 128) -> Iterator[EventBatch]:
    for seq, w in enumerate(events):
        yield EventBatch(events=w, width=side, height=side, stream="cam0", seq=seq, sent_ns=1, topic="events.raw")


M = TypeVar("M", bound=Message)


def _only(kind: type[M], messages: Sequence[Message]) -> M:
    assert len(messages) == 1
    assert isinstance(messages[0], kind)
    return messages[0]


@dataclass
class Offline:
    """What ``Chip`` gives for the same windows: readout-bound spikes and passed decisions."""

    spikes: list[Spikes]
    decisions: np.ndarray
    latency_us: np.ndarray


def _offline(config: ChipConfig, windows: Sequence[Events]) -> Offline:
    chip = Chip.from_config(config)
    spikes, decisions, latency = [], [], []
    for w in windows:
        o = chip.step(w)
        spikes.append(o.spikes[o.spikes["layer"] == READOUT_ADDRESS])
        passed = o.decisions["passed"]
        decisions.append(o.decisions[passed])
        latency.append(o.telemetry.decision_latency_us[passed])
    return Offline(spikes, np.concatenate(decisions), np.concatenate(latency))


@dataclass
class Online:
    sent: list[SpikeBatch | None]
    """Per input window, the batch the chip sent the readout (None: the readout did not need it)."""
    predictions: list[Prediction]
    emitted_by: list[int]
    """Per prediction, the input window whose batch brought it out."""
    t_last: list[int]
    """Per input window, its last filtered event's time."""
    filter: FilterStage
    chip: ChipStage
    readout: ReadoutStage


def _online(config: ChipConfig, windows: Sequence[Events], mask_ratio: float = 0.0) -> Online:
    out = Outbox("cam0", FakeClock())
    run = Online(
        [], [], [], [], FilterStage(config), ChipStage(config, MaskParams(mask_ratio=mask_ratio)), ReadoutStage(config)
    )
    for i, msg in enumerate(_raw(windows)):
        for filtered in run.filter.handle(msg, out):
            sent = run.chip.handle(filtered, out)
            assert all(isinstance(m, SpikeBatch) for m in sent) and len(sent) <= 3  # (+2 on a restart)
            run.sent.append(cast(SpikeBatch, sent[-1]) if sent else None)
            run.t_last.append(int(filtered.events["t"][-1]))
            for batch in sent:
                new = [_only(Prediction, [p]) for p in run.readout.handle(batch, out)]
                run.predictions += new
                run.emitted_by += [i] * len(new)
    return run


def _assert_the_chip_sends_its_spikes(online: Online, offline: Offline) -> None:
    """Every readout spike of the emulator's own chip, batch by batch; a batch left unsent has none."""
    assert len(online.sent) == len(offline.spikes)
    for batch, expected in zip(online.sent, offline.spikes, strict=True):
        if batch is None:
            assert len(expected) == 0
        else:
            np.testing.assert_array_equal(batch.spikes, expected)
    sent = [b for b in online.sent if b is not None]
    assert sum(len(b.spikes) for b in sent) > 0
    assert len(sent) < len(online.sent) / 2  # most quiet batches stay home
    ends = [b.t_end_us for b in sent]
    assert ends == sorted(set(ends))  # strictly increasing
    for batch in sent:
        if len(batch.spikes):
            assert batch.t_end_us >= int(batch.spikes["t"].max())


def test_filter_stage_is_the_front_end_step(config: ChipConfig) -> None:
    config = replace(
        config, dvs=replace(config.dvs, noise_filter=NoiseFilter(mode="neighbourhood", threshold=5, window=3))
    )
    windows = _windows(_head(synthetic_events(seed=3), 50_000))
    stage, out = FilterStage(config), Outbox("cam0", FakeClock())
    noise = init_filter_state(config.dvs.width, config.dvs.height)
    _, out_h, out_w = output_shape(config.dvs)
    energy = [0.0]
    for msg in _raw(windows):
        got = _only(EventBatch, stage.handle(msg, out))
        noise, kept, _ = front_end_step(noise, msg.events, config)
        assert got.topic == "events.filtered"
        assert (got.width, got.height) == (out_w, out_h)
        np.testing.assert_array_equal(got.events, kept)
        _, groups = stage.telemetry()
        energy.append(sum(groups[tm.ENERGY_J].values()))
        assert energy[-1] > energy[-2]  # every input event is priced
    _, groups = stage.telemetry()
    dropped = sum(groups[tm.DROPPED_EVENTS].values())
    assert dropped + _kept(config, windows) == sum(len(w) for w in windows)
    assert dropped > 0  # the synthetic stream has noise to remove


def _kept(config: ChipConfig, windows: Sequence[Events]) -> int:
    stage, out = FilterStage(config), Outbox("cam0", FakeClock())
    return sum(len(_only(EventBatch, stage.handle(m, out)).events) for m in _raw(windows))


def test_filter_energy_grows_with_input(config: ChipConfig) -> None:
    windows = _windows(_head(synthetic_events(seed=4), 20_000))
    out = Outbox("cam0", FakeClock())

    def energy(n_windows: int) -> float:
        stage = FilterStage(config)
        for msg in _raw(windows[:n_windows]):
            stage.handle(msg, out)
        return sum(stage.telemetry()[1][tm.ENERGY_J].values())

    small, large = energy(5), energy(len(windows))
    assert 0 < small < large


def test_chip_stage_without_mask_is_the_chip(config: ChipConfig) -> None:
    windows = _windows(_head(synthetic_events(seed=1), 400_000))
    offline, online = _offline(config, windows), _online(config, windows)
    assert len(online.sent) == len(windows)
    _assert_the_chip_sends_its_spikes(online, offline)
    values, groups = online.chip.telemetry()
    assert values[tm.INPUT_MASKED_RATIO] == 0.0
    assert groups[tm.DROPPED_EVENTS].get("masked", 0) == 0


def test_the_mask_halves_the_work(config: ChipConfig) -> None:
    windows = _windows(_head(synthetic_events(seed=2), 600_000))
    full, masked = _online(config, windows, 0.0), _online(config, windows, 0.5)
    values_full, _ = full.chip.telemetry()
    values, groups = masked.chip.telemetry()
    assert 0 < int(values[tm.SYNOPS]) < int(values_full[tm.SYNOPS])
    # the same mask run directly over the filtered stream decides the same windows
    params = MaskParams(mask_ratio=0.5)
    filtered = _filtered(config, windows)
    state = init_mask_state(params, int(filtered["t"][0]), masked.chip.width, masked.chip.height)
    _, _, counts = mask_step(state, filtered, params, masked.chip.scorer)
    assert values[tm.WINDOWS] == counts.windows > 0
    assert values[tm.MASKED_WINDOWS] == counts.windows_masked
    assert values[tm.INPUT_MASKED_RATIO] == pytest.approx(counts.windows_masked / counts.windows)
    assert values[tm.INPUT_MASKED_RATIO] == pytest.approx(0.5, abs=0.15)
    assert groups[tm.DROPPED_EVENTS]["masked"] == counts.events_masked > 0


def _filtered(config: ChipConfig, windows: Sequence[Events]) -> Events:
    stage, out = FilterStage(config), Outbox("cam0", FakeClock())
    return concat_events([_only(EventBatch, stage.handle(m, out)).events for m in _raw(windows)])


def _assert_predictions_are_the_decisions(config: ChipConfig, online: Online, offline: Offline) -> None:
    # Chip decides up to each raw batch's last event, the stages up to the last *filtered* one (all of
    # whose passing decisions reach the readout, even where the chip sent the readout nothing after)
    done = offline.decisions["t"] <= np.uint64(online.chip.t_last_us)
    decisions, latency = offline.decisions[done], offline.latency_us[done]
    assert len(decisions) > 0
    assert [(p.class_id, p.t_end_us) for p in online.predictions] == [
        (int(d["class_index"]), int(d["t"])) for d in decisions
    ]
    # each prediction comes out with the first batch whose time closes its cycle, sent or not: the chip
    # never holds back a batch the readout needs
    t_last = np.array(online.t_last, np.uint64)
    assert online.emitted_by == [int(np.searchsorted(t_last, d["t"])) for d in decisions]
    for p, d, lat in zip(online.predictions, decisions, latency, strict=True):
        assert p.label == config.readout.labels[p.class_id - 1]
        assert p.score == float(d["value"])
        assert p.extras["cycle"] == int(d["cycle"])
        if np.isnan(lat):  # a cycle without a spike of its own (a boxcar's tail) has no chip latency
            assert tm.CHIP_LATENCY_US not in p.extras
        else:
            assert p.extras[tm.CHIP_LATENCY_US] == pytest.approx(float(lat))
        assert p.t_start_us <= p.t_end_us
    values, groups = online.readout.telemetry()
    assert values[tm.PREDICTIONS] == len(online.predictions)
    assert sum(groups[tm.PREDICTIONS].values()) == len(online.predictions)
    assert values[TIME_RESETS] == 0


@pytest.mark.parametrize(("average", "slow_clock_hz"), [(1, None), (16, 50.0)])
def test_readout_stage_predicts_what_the_chip_decides(config: ChipConfig, average: int, slow_clock_hz: float) -> None:
    """With a boxcar of 16 cycles a decision can pass 15 cycles after the last spike: the chip keeps
    sending the readout the batches that close them. (20 ms cycles and an output layer at an eighth of
    its threshold, so that some 16-cycle averages reach a spike per cycle and pass.)"""
    hz = slow_clock_hz or config.slow_clock_hz
    config = replace(config, slow_clock_hz=hz, readout=replace(config.readout, average=average))
    if average > 1:
        out_layer = config.layers[-1]
        eager = replace(out_layer, threshold_high=max(1, out_layer.threshold_high // 8))
        config = replace(config, layers=(*config.layers[:-1], eager))
    gesture = _head(synthetic_events(seed=0), 1_000_000)
    t = np.arange(int(gesture["t"][-1]) + 1000, int(gesture["t"][-1]) + 400_000, 1000)
    quiet = make_events(t, np.zeros(len(t), int), np.zeros(len(t), int), np.ones(len(t), int))  # one pixel ticking
    windows = _windows(concat_events([gesture, quiet]))
    online, offline = _online(config, windows), _offline(config, windows)
    _assert_predictions_are_the_decisions(config, online, offline)
    tails = [p for p in online.predictions if tm.CHIP_LATENCY_US not in p.extras]  # cycles without a spike
    assert (len(tails) > 0) == (average > 1)  # the boxcar passes decisions after the last spike's cycle


def test_stages_on_a_real_dvs128_recording(config: ChipConfig) -> None:
    events, _ = read_recording(real_file(SHORT))
    windows = _windows(_head(events, 3_000_000))  # its first decisions come after ~2 s
    online, offline = _online(config, windows), _offline(config, windows)
    _assert_the_chip_sends_its_spikes(online, offline)
    _assert_predictions_are_the_decisions(config, online, offline)


def test_readout_restarts_when_time_goes_back(config: ChipConfig) -> None:
    windows = _windows(_head(synthetic_events(seed=0), 300_000))
    online = _online(config, windows)
    stage, out = ReadoutStage(config), Outbox("cam0", FakeClock())

    def run() -> list[tuple[int, int]]:
        sent = [b for b in online.sent if b is not None]
        predictions = [_only(Prediction, [p]) for b in sent for p in stage.handle(b, out)]
        return [(p.class_id, p.t_end_us) for p in predictions]

    first = run()
    again = run()  # the chip restarted: its time starts again
    assert stage.telemetry()[0][TIME_RESETS] == 1
    assert again == first == [(p.class_id, p.t_end_us) for p in online.predictions]
    assert len(first) > 0


def test_the_readout_sees_a_restart_inside_a_quiet_spell(config: ChipConfig) -> None:
    """The chip left the readout behind during a quiet spell; time then restarts at a moment inside
    that spell (after what the readout last saw: the chip sends it one quiet batch per 0.1 s). The chip brings the readout up to date first, so it
    restarts too, and predicts on the new stream what fresh stages predict."""
    gesture = _head(synthetic_events(seed=0), 1_000_000)
    t0, t_end = int(gesture["t"][0]), int(gesture["t"][-1])
    t = np.arange(t_end + 1000, t_end + 3_000_000, 1000)
    first = concat_events([gesture, make_events(t, np.zeros(len(t), int), np.zeros(len(t), int), np.ones(len(t), int))])
    again = gesture.copy()  # restarts 0.5 ms before the spell's end: after the last batch the readout got
    again["t"] += np.uint64(int(first["t"][-1]) - 500 - t0)
    before = _windows(first)
    both = _online(config, [*before, *_windows(again)])
    alone = _online(config, _windows(again))
    assert both.chip.telemetry()[0][TIME_RESETS] == 1
    assert both.readout.telemetry()[0][TIME_RESETS] == 1
    after = [p for p, i in zip(both.predictions, both.emitted_by, strict=True) if i >= len(before)]
    restarted = [(p.class_id, p.t_end_us) for p in after]
    assert restarted == [(p.class_id, p.t_end_us) for p in alone.predictions] and restarted


def test_filter_and_chip_restart_when_time_goes_back(config: ChipConfig) -> None:
    windows = _windows(_head(synthetic_events(seed=0), 50_000))
    out = Outbox("cam0", FakeClock())
    flt, chip = FilterStage(config), ChipStage(config, MaskParams(mask_ratio=0.0))
    for msg in [*_raw(windows), *_raw(windows[:3])]:
        for filtered in flt.handle(msg, out):
            chip.handle(filtered, out)
    assert flt.telemetry()[0][TIME_RESETS] == 1
    assert chip.telemetry()[0][TIME_RESETS] == 1


def test_active_power_is_measured_afresh_after_event_time_goes_back() -> None:
    from emulator.power import Rail
    from services.energy_meter import EnergyMeter

    meter = EnergyMeter()
    for t in range(10):  # 1 J per second of event time, batches of 1 s
        meter.add({Rail.LOGIC: 1.0}, t * 1_000_000, (t + 1) * 1_000_000)
    assert meter.report()["active_power_w"]["logic"] == pytest.approx(1.0)
    meter.restart()  # the sensor restarted: time begins again at 0
    for t in range(3):
        meter.add({Rail.LOGIC: 2.0}, t * 1_000_000, (t + 1) * 1_000_000)
    report = meter.report()
    assert report["active_power_w"]["logic"] == pytest.approx(2.0)
    assert report["energy_j"]["logic"] == pytest.approx(16.0)  # energy keeps adding up


_PROBE = """
import json, sys
from services.config import Settings
from services.launch import build_stage
settings = Settings()
build_stage(sys.argv[1], settings)
print(json.dumps(sorted(m for m in ("numba", "llvmlite") if m in sys.modules)))
"""


@pytest.mark.parametrize(("stage", "jit"), [("readout", False), ("filter", False), ("chip", True)])
def test_only_the_stages_that_need_a_jit_load_numba(stage: str, jit: bool) -> None:
    """numba (llvmlite) costs a process ~150 MB of memory: the readout never needs it, the filter only
    when its noise filter filters (the bundled models' filters nothing), the chip always."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, stage], cwd=repo, capture_output=True, text=True, check=True, timeout=300
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == (["llvmlite", "numba"] if jit else [])


def test_a_filter_that_filters_noise_loads_its_kernel_and_drops_noise(config: ChipConfig) -> None:
    noisy = replace(config, dvs=replace(config.dvs, noise_filter=NoiseFilter(mode="neighbourhood", threshold=2)))
    stage = FilterStage(noisy)
    stage.warm_up()
    out = Outbox("cam0", FakeClock())
    for msg in _raw(_windows(_head(synthetic_events(seed=5), 30_000))):
        stage.handle(msg, out)
    assert stage.telemetry()[1][tm.DROPPED_EVENTS]["noise"] > 0
