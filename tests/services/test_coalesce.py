"""Joining queued batches: what is joined, what the joined message says, and that every stage gives
the same outputs for a joined batch as for its parts."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from emulator.attention import MaskParams
from emulator.config import ChipConfig, NoiseFilter
from proto.events import Events, empty_spikes
from proto.messages import EventBatch, Message, Prediction, SpikeBatch, Telemetry
from services.clock import FakeClock
from services.coalesce import coalesce
from services.defaults import resolve_chip_config, synthetic_events
from services.filter_stage import FilterStage
from services.readout_stage import ReadoutStage
from services.runtime import Outbox
from services.stages import ChipStage


@pytest.fixture(scope="module")
def config() -> ChipConfig:
    return resolve_chip_config("default")


def _windows(events: Events, window_us: int = 1000) -> list[Events]:
    t0 = int(events["t"][0])
    edges = np.searchsorted(events["t"], np.arange(t0, int(events["t"][-1]) + window_us + 1, window_us))
    return [events[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _raw(events: Events, seq: int, origin_ns: int = 0, stream: str = "cam0", side: int = 128) -> EventBatch:
    return EventBatch(
        events=events, width=side, height=side, stream=stream, seq=seq, sent_ns=10 + seq, origin_ns=origin_ns,
        topic="events.raw",
    )  # fmt: skip


def test_a_run_of_batches_becomes_one_keeping_the_oldest_origin() -> None:
    windows = _windows(synthetic_events(seed=1)[:3000])[:5]
    parts = [_raw(w, seq, origin_ns=1000 + seq) for seq, w in enumerate(windows)]
    (joined,) = coalesce(parts)
    assert isinstance(joined, EventBatch)
    np.testing.assert_array_equal(joined.events, np.concatenate(windows))
    assert joined.origin_ns == parts[0].origin_ns  # latency counts from the oldest data in it
    assert (joined.seq, joined.sent_ns) == (parts[-1].seq, parts[-1].sent_ns)
    assert (joined.stream, joined.topic, joined.width) == ("cam0", "events.raw", 128)
    assert coalesce(parts[:1]) == parts[:1]  # one alone is passed through as it is
    assert coalesce([]) == []


def test_a_run_is_joined_up_to_the_record_cap_and_one_big_batch_stays_whole() -> None:
    windows = _windows(synthetic_events(seed=3)[:6000])[:6]
    parts = [_raw(w, seq) for seq, w in enumerate(windows)]
    sizes = [len(w) for w in windows]
    cap = sizes[0] + sizes[1] + sizes[2]  # the first three fit exactly, the fourth would not
    out = coalesce(parts, max_records=cap)
    assert isinstance(out[0], EventBatch) and len(out[0].events) == cap
    assert all(isinstance(m, EventBatch) and len(m.events) <= cap for m in out)
    np.testing.assert_array_equal(np.concatenate([m.events for m in out if isinstance(m, EventBatch)]),
                                  np.concatenate(windows))  # fmt: skip
    greedy: list[int] = []  # the runs, filled in order up to the cap
    for n in sizes:
        if greedy and greedy[-1] + n <= cap:
            greedy[-1] += n
        else:
            greedy.append(n)
    assert [len(m.events) for m in out if isinstance(m, EventBatch)] == greedy
    assert coalesce(parts[:2], max_records=1) == parts[:2]  # each bigger than the cap: passed on whole
    assert coalesce(parts) == coalesce(parts, max_records=sum(sizes))  # the default cap holds these six


def test_runs_break_where_joining_would_change_the_meaning() -> None:
    w = _windows(synthetic_events(seed=2)[:4000])
    restarted = _raw(w[0], 3)  # event time goes back: the upstream restarted
    other_stream = _raw(w[3], 4, stream="cam1")
    other_size = _raw(w[4], 5, side=256)
    tele = Telemetry(values={"x": 1}, stream="chip", seq=0, sent_ns=1, topic="telemetry")
    msgs: list[Message] = [_raw(w[0], 0), _raw(w[1], 1), tele, _raw(w[2], 2), restarted, other_stream, other_size]
    out = coalesce(msgs)
    assert [type(m).__name__ for m in out] == ["EventBatch", "Telemetry"] + ["EventBatch"] * 4
    assert isinstance(out[0], EventBatch) and len(out[0].events) == len(w[0]) + len(w[1])
    assert out[1] is tele and out[2] is msgs[3] and out[3] is restarted
    assert out[4] is other_stream and out[5] is other_size
    same_stream_other_size = [_raw(w[3], 4), _raw(w[4], 5, side=256)]  # time goes on, only the size differs
    assert coalesce(same_stream_other_size) == same_stream_other_size


def _spikes(batch: SpikeBatch, t: Sequence[int], t_end: int, seq: int) -> SpikeBatch:
    spikes = np.zeros(len(t), batch.spikes.dtype)
    spikes["t"] = t
    return SpikeBatch(spikes=spikes, t_end_us=t_end, stream="chip", seq=seq, sent_ns=1, topic="spikes")


def test_spike_batches_join_unless_the_next_starts_before_the_last_ends() -> None:
    template = SpikeBatch(spikes=empty_spikes(0), stream="chip", seq=0, sent_ns=1, topic="spikes")
    a, b = _spikes(template, [10, 12], 20, 0), _spikes(template, [20, 25], 30, 1)
    empty = _spikes(template, [], 40, 2)
    back = _spikes(template, [5], 8, 3)  # the chip restarted
    out = coalesce([a, b, empty, back])
    assert len(out) == 2 and out[1] is back
    joined = out[0]
    assert isinstance(joined, SpikeBatch)
    assert joined.spikes["t"].tolist() == [10, 12, 20, 25] and joined.t_end_us == 40
    assert coalesce([a, _spikes(template, [19], 30, 1)])[0] is a  # starts before a's t_end: not joined


def _run(stages: Sequence[FilterStage | ChipStage | ReadoutStage], batches: Sequence[Message]) -> list[Message]:
    out = Outbox("cam0", FakeClock())
    msgs = list(batches)
    for stage in stages:
        msgs = [o for m in msgs for o in stage.handle(m, out)]
    return msgs


@pytest.mark.parametrize(("group", "noise"), [(2, False), (7, True), (50, False)])
def test_every_stage_gives_the_same_for_a_joined_batch_as_for_its_parts(
    config: ChipConfig, group: int, noise: bool
) -> None:
    if noise:  # the noise filter's state carries across batches too
        config = replace(config, dvs=replace(config.dvs, noise_filter=NoiseFilter(mode="neighbourhood", threshold=5)))
    windows = _windows(synthetic_events(seed=4)[:60_000])
    raw = [_raw(w, seq) for seq, w in enumerate(windows)]
    joined = [m for i in range(0, len(raw), group) for m in coalesce(raw[i : i + group])]
    assert len(joined) < len(raw)

    def stages() -> list[FilterStage | ChipStage | ReadoutStage]:
        return [FilterStage(config), ChipStage(config, MaskParams(mask_ratio=0.5)), ReadoutStage(config)]

    # filter, chip: same events out, same spikes out
    for depth in (1, 2):
        apart, together = _run(stages()[:depth], raw), _run(stages()[:depth], joined)
        field = "events" if depth == 1 else "spikes"
        cat = [np.concatenate([getattr(m, field) for m in ms]) for ms in (apart, together)]
        assert len(cat[0]) > 0
        np.testing.assert_array_equal(cat[0], cat[1])
    # readout: same decisions, whether the events or the chip's spike batches were joined
    spikes = _run(stages()[:2], raw)
    joined_spikes = [m for i in range(0, len(spikes), group) for m in coalesce(spikes[i : i + group])]
    assert len(joined_spikes) < len(spikes)
    runs = [_run(stages(), raw), _run(stages(), joined), _run([ReadoutStage(config)], joined_spikes)]
    keys = [[(p.class_id, p.t_start_us, p.t_end_us, p.score) for p in r if isinstance(p, Prediction)] for r in runs]
    assert keys[0]
    assert keys[1] == keys[0] and keys[2] == keys[0]
