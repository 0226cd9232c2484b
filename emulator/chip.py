"""The whole chip, batch by batch: DVS layer → cores → readout, with power and latency.

One :func:`chip_step` (pure: ``state`` in, new state out) runs a time-ordered event batch:

1. events outside the DVS array are dropped and counted (a recording from a larger sensor);
2. the noise filter (on sensor coordinates, :mod:`emulator.noise`);
3. pre-processing: polarity, pooling, ROI, mirror/swap (:mod:`emulator.dvs`);
4. the DVS output goes to each DVS destination (destination 0 first, per event) as core input
   ``(layer, channel = p + feature_shift, y, x)``;
5. the event-driven cores (:mod:`emulator.engine`), depth-first and exact;
6. spikes routed to the readout are counted per slow-clock cycle (:mod:`emulator.readout`); every
   cycle that ends by the batch's last event time is decided;
7. output spikes are stamped input time + the modeled path latency of their layer
   (:mod:`emulator.latency`), and the batch's activity is priced (:mod:`emulator.power`).

The readout counts spikes at their input event's time (the path latency, a few µs, is far
below a slow-clock cycle); a decision's latency is its cycle's end minus the first input that
contributed to it. ``dvs.pass_sensor_events = false`` blocks every recording event (the chip then
only sees what other sources would inject; none are modeled yet).
:class:`Chip` is the thin stateful wrapper a service or the CLI holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from emulator import engine
from emulator.config import READOUT_ADDRESS, ChipConfig
from emulator.front_end import FrontEndCounts, front_end_step
from emulator.latency import decision_latency_us, delay_us, longest_paths_ns
from emulator.noise import FilterState, init_filter_state
from emulator.power import ActivityCounts, Rail, energy_j
from emulator.readout import Decisions, ReadoutState, new_readout_state, readout_step
from proto.events import SPIKE_DTYPE, Events, Spikes, empty_spikes


class ChipParams(NamedTuple):
    """Everything :func:`chip_step` needs that does not change: the config and what is built from it."""

    config: ChipConfig
    engine: engine.EngineParams
    layer_latency_ns: npt.NDArray[np.int64]
    """Path latency from the sensor to the output of each core layer (longest path)."""
    readout_latency_ns: int
    """Path latency of a spike reaching the readout (longest path into it)."""


class ChipState(NamedTuple):
    noise: FilterState
    engine: engine.EngineState
    readout: ReadoutState
    t_last_us: int
    """The last event time seen: the next batch may not start before it."""


class ChipTelemetry(NamedTuple):
    """Counts of one step; energies in joules (active only, by rail)."""

    front: FrontEndCounts
    """What the sensor side kept and dropped (input, blocked, outside, noise, polarity, ROI, kept)."""
    synops: int
    neuron_updates: int
    spikes_per_layer: tuple[int, ...]
    routed_spikes: int
    dropped_routed: int
    readout_spikes: int
    active_energy_j: dict[Rail, float]
    decision_latency_us: npt.NDArray[np.float64]


class ChipOutput(NamedTuple):
    spikes: Spikes
    """Core output spikes (``layer`` = core layer index) and readout spikes (``layer`` = 12), stamped."""
    decisions: Decisions
    telemetry: ChipTelemetry


def init_chip(config: ChipConfig, t0_us: int = 0) -> tuple[ChipParams, ChipState]:
    """Params built once from ``config`` and the chip's state at time ``t0_us``."""
    per_layer, readout = longest_paths_ns(config)
    params = ChipParams(config, engine.build_params(config), per_layer, readout)
    state = ChipState(
        noise=init_filter_state(config.dvs.width, config.dvs.height),
        engine=engine.init_state(params.engine, t0_us),
        readout=new_readout_state(config.readout, config.slow_clock_hz, t0_us),
        t_last_us=t0_us,
    )
    return params, state


def dvs_to_core_inputs(events: Events, config: ChipConfig) -> Spikes:
    """The pre-processed events as core inputs, one per DVS destination (destination 0 first)."""
    routes = config.dvs.destinations
    n = len(events)
    out = empty_spikes(n * len(routes))
    for d, route in enumerate(routes):
        view = out[d :: len(routes)]
        view["t"] = events["t"]
        view["layer"] = int(route.layer)
        view["channel"] = events["p"].astype(np.uint16) + route.feature_shift
        view["y"] = events["y"]
        view["x"] = events["x"]
    return out


def check_time_order(events: Events, t_last_us: int) -> None:
    """``ValueError`` naming the first event whose time goes back (within the batch or before ``t_last_us``)."""
    if len(events) == 0:
        return
    t = events["t"]
    if int(t[0]) < t_last_us:
        raise ValueError(f"events: t[0] = {int(t[0])} µs is before the previous batch's last event ({t_last_us} µs)")
    back = np.flatnonzero(t[1:] < t[:-1])
    if len(back):
        i = int(back[0]) + 1
        raise ValueError(f"events: t[{i}] = {int(t[i])} µs goes back from t[{i - 1}] = {int(t[i - 1])} µs")


def cores_step(
    state: engine.EngineState, pre: Events, params: ChipParams, dvs_input_events: int = 0
) -> tuple[engine.EngineState, Spikes, engine.EngineCounts, dict[Rail, float]]:
    """Steps 4, 5 and the pricing of 7: pre-processed events through the cores (pure).

    Returns the new engine state, the unstamped output spikes, the engine's counts and the active
    energy by rail (``dvs_input_events`` events priced as taken in by the DVS layer).
    """
    eng, spikes, counts = engine.step(state, dvs_to_core_inputs(pre, params.config), params.engine)
    activity = ActivityCounts(
        synops=int(counts.synops.sum()), neuron_updates=int(counts.neuron_updates.sum()),
        routed_spikes=int(counts.routed.sum()), input_events=dvs_input_events,
    )  # fmt: skip
    return eng, spikes, counts, energy_j(activity)


def chip_step(state: ChipState, events: Events, params: ChipParams) -> tuple[ChipState, ChipOutput]:
    """Run one time-ordered batch of sensor events through the chip (see the module docstring).

    Events must never go back in time, within a batch or across batches (``ValueError``).
    """
    cfg = params.config
    check_time_order(events, state.t_last_us)
    noise, pre, front = front_end_step(state.noise, events, cfg)
    # every event the DVS layer takes in is priced
    eng, spikes, counts, active_j = cores_step(state.engine, pre, params, front.dvs_input_events)
    to_readout = spikes[spikes["layer"] == READOUT_ADDRESS]
    # the cycle holding the last event stays open: the next batch may start at the same µs
    t_end = int(events["t"][-1]) if len(events) else state.t_last_us
    decisions, readout = readout_step(to_readout, state.readout, cfg.readout, cfg.slow_clock_hz, t_end)
    telemetry = ChipTelemetry(
        front=front, synops=int(counts.synops.sum()), neuron_updates=int(counts.neuron_updates.sum()),
        spikes_per_layer=tuple(int(n) for n in counts.spikes), routed_spikes=int(counts.routed.sum()),
        dropped_routed=int(counts.dropped.sum()), readout_spikes=len(to_readout),
        active_energy_j=active_j, decision_latency_us=decision_latency_us(decisions),
    )  # fmt: skip
    return ChipState(noise, eng, readout, t_end), ChipOutput(stamp(spikes, params), decisions, telemetry)


def stamp(spikes: Spikes, params: ChipParams) -> Spikes:
    """Spikes stamped input time + path latency: per core layer, or into the readout."""
    out = spikes.copy()
    layer = spikes["layer"].astype(np.int64)
    core = layer != READOUT_ADDRESS
    if not core.any():  # the service's case: only the readout-bound spikes (or none)
        out["t"] += np.uint64(delay_us(params.readout_latency_ns))
        return out
    delay = np.full(len(spikes), delay_us(params.readout_latency_ns), np.uint64)
    per_layer_us = np.array([delay_us(int(ns)) for ns in params.layer_latency_ns], np.uint64)
    delay[core] = per_layer_us[layer[core]] if len(per_layer_us) else 0
    out["t"] = spikes["t"] + delay
    return out


@dataclass
class Chip:
    """A chip and its state: ``Chip.from_config(config).step(events)`` batch after batch.

    Without ``t0_us`` the chip powers up at its first event's time (recordings count time from
    an arbitrary origin; the slow clock and the readout start there, not at t = 0).
    """

    params: ChipParams
    state: ChipState | None

    @classmethod
    def from_config(cls, config: ChipConfig, t0_us: int | None = None) -> Chip:
        params, state = init_chip(config, t0_us or 0)
        return cls(params, state if t0_us is not None else None)

    def step(self, events: Events) -> ChipOutput:
        if self.state is None:
            if len(events) == 0:  # not powered up yet: an empty batch must not fix the start at t = 0
                return chip_step(init_chip(self.params.config)[1], events, self.params)[1]
            self.state = init_chip(self.params.config, int(events["t"][0]))[1]
        self.state, out = chip_step(self.state, events, self.params)
        return out


__all__ = [
    "SPIKE_DTYPE", "Chip", "ChipOutput", "ChipParams", "ChipState", "ChipTelemetry", "FrontEndCounts",
    "chip_step", "cores_step", "front_end_step", "init_chip", "stamp",
]  # fmt: skip
