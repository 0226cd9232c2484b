"""The chip stage: the emulator's pure steps with their service state.

The stage holds the state of its pure steps (``emulator.attention.mask_step`` +
``emulator.chip.cores_step``) and turns one input message into its outputs; :mod:`services.runtime`
does the sockets. The filter and readout stages are in :mod:`services.filter_stage` and
:mod:`services.readout_stage`, apart, so that their processes load no numba they do not need.

The chip stage sends the readout only the batches it needs: those with readout spikes, and those whose
time closes a slow-clock cycle that may still pass a decision — one of the ``average`` cycles from the
last readout spike's on (a cycle whose boxcar holds no count decides "no class") — plus one per
``QUIET_SEND_US`` of event time. The readout decides the quiet cycles when the next batch comes. At 1×
on a DVS128 recording, with the readout's 1 ms cycles, 151 of 2844 batches go out; the readout had
spent 14 % of a core decoding them all. On a time reset the chip first brings the readout up to date
(:meth:`ChipStage._restart_readout`), so that it sees the reset too.

Event time must not go back within a stream. When it does (the upstream process restarted and
started its clock again) the stage starts afresh from the new time and counts a ``time_resets``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Final

import numpy as np

from emulator.attention import EventRateScorer, MaskParams, MaskState, Scorer, init_mask_state, mask_step
from emulator.chip import ChipParams, cores_step, init_chip, stamp
from emulator.config import READOUT_ADDRESS, ChipConfig
from emulator.dvs import output_shape
from emulator.engine import EngineState, init_state
from emulator.latency import delay_us
from emulator.power import RESTING_W
from emulator.readout import cycle_index
from proto.events import Spikes, empty_spikes, make_events
from proto.fields import Number
from proto.messages import EventBatch, Message, SpikeBatch
from services import telemetry as tm
from services.energy_meter import EnergyMeter, rails
from services.runtime import Groups, Outbox

QUIET_SEND_US: Final = 100_000
"""While nothing needs it, the readout still gets a batch every 0.1 s of event time: its decisions
(counted in telemetry) stay at most that far behind, and a quiet spell costs it bounded work."""


class ChipStage:
    """``events.filtered`` → attention input mask → the cores → readout-bound ``spikes``."""

    name = "chip"
    input_topic = "events.filtered"

    def __init__(self, config: ChipConfig, mask: MaskParams, scorer: Scorer | None = None) -> None:
        self.config, self.mask_params = config, mask
        self.scorer: Scorer = scorer or EventRateScorer()
        params = init_chip(config)[0]
        # no monitor rows: only the readout rows go on (the counts still count every spike); writing a
        # row per core spike (~5 per input event) and filtering them out again cost 4-8 % of the stage
        self.params: ChipParams = params._replace(engine=params.engine._replace(monitor=False))
        self.readout_delay_us = delay_us(self.params.readout_latency_ns)
        _, self.height, self.width = output_shape(config.dvs)
        self.engine: EngineState | None = None
        self.mask: MaskState | None = None
        self.t_first_us: int | None = None
        self.t_last_us = 0
        self.resets = 0
        self._sent_end_cycle = self._close_through = self._sent_t1 = 0
        self.model_s_before = 0.0
        """Event time processed before the last time reset."""
        self.synops = self.neuron_updates = self.windows = self.masked_windows = 0
        self.spikes = np.zeros(len(config.layers), np.int64)
        self.dropped: Counter[str] = Counter()
        self.energy = EnergyMeter()

    def warm_up(self) -> None:
        """Load the mask's and the engine's compiled code now (on throwaway state), not on the first batch."""
        one = make_events([0], [0], [0], [1])
        mask_step(init_mask_state(self.mask_params, 0, self.width, self.height), one, self.mask_params, self.scorer)
        cores_step(init_state(self.params.engine, 0), one, self.params)

    def _start(self, t0_us: int) -> None:
        self._sent_end_cycle, self._close_through = -1, 0  # the first batch goes out: the readout (re)starts
        self._sent_t1 = t0_us
        self.engine = init_state(self.params.engine, t0_us)
        self.mask = init_mask_state(self.mask_params, t0_us, self.width, self.height)
        self.t_first_us = t0_us

    def handle(self, msg: Message, out: Outbox) -> Sequence[Message]:
        if not isinstance(msg, EventBatch) or len(msg.events) == 0:
            return ()
        restart: tuple[SpikeBatch, ...] = ()
        t0, t1 = int(msg.events["t"][0]), int(msg.events["t"][-1])
        if self.engine is None or self.mask is None or t0 < self.t_last_us:
            if self.engine is not None:  # event time went back (the sensor restarted)
                self.resets += 1
                self.model_s_before += self._model_s()
                self.energy.restart()
                restart = self._restart_readout(t0, out, msg.origin_ns)
            self._start(t0)
        assert self.engine is not None and self.mask is not None
        self.mask, kept, mc = mask_step(self.mask, msg.events, self.mask_params, self.scorer)
        self.windows += mc.windows
        self.masked_windows += mc.windows_masked
        self.dropped["masked"] += mc.events_masked
        self.engine, spikes, counts, joules = cores_step(self.engine, kept, self.params)
        self.t_last_us = t1
        self.synops += int(counts.synops.sum())
        self.neuron_updates += int(counts.neuron_updates.sum())
        self.spikes += counts.spikes
        self.dropped["outside_core"] += counts.dropped_inputs
        self.energy.add(joules, t0, t1)
        readout_spikes = spikes[spikes["layer"] == READOUT_ADDRESS]
        if not self._readout_needs(readout_spikes, t1):
            return restart
        return (*restart, self._to_readout(stamp(readout_spikes, self.params), t1, out, msg.origin_ns))

    def _to_readout(self, spikes: Spikes, t1: int, out: Outbox, origin_ns: int) -> SpikeBatch:
        # a later input (≥ t1) reaches the readout at ≥ t1 + delay: complete up to there
        self._sent_t1 = t1
        return SpikeBatch(spikes=spikes, t_end_us=t1 + self.readout_delay_us, **out.envelope("spikes", origin_ns))

    def _readout_needs(self, readout_spikes: Spikes, t1: int) -> bool:
        """Whether the readout needs this batch (module docstring): it carries readout spikes, its time
        closes a cycle that may still pass (one of the ``average`` cycles from the last spike's), or the
        readout has heard nothing for ``QUIET_SEND_US``."""
        hz = self.config.slow_clock_hz
        end_cycle = cycle_index(t1, hz)  # the readout closes the cycles before this one
        if len(readout_spikes):
            last = cycle_index(int(readout_spikes["t"].max()), hz)
            self._close_through = max(self._close_through, last + self.config.readout.average)
        elif end_cycle <= self._sent_end_cycle or (
            self._sent_end_cycle >= self._close_through and t1 - self._sent_t1 < QUIET_SEND_US
        ):
            return False  # closes no cycle, or only cycles without a count: all "no class"
        self._sent_end_cycle = end_cycle
        return True

    def _restart_readout(self, t0: int, out: Outbox, origin_ns: int) -> tuple[SpikeBatch, ...]:
        """On a time reset: the readout restarts when a batch's time goes back from the last it saw, so
        bring it up to the old stream's last event time (it may lag, module docstring), then send it an
        empty batch complete up to the new stream's first event time (``t0`` < that)."""
        empty = empty_spikes()
        catch_up = () if self._sent_t1 >= self.t_last_us else (self._to_readout(empty, self.t_last_us, out, origin_ns),)
        return (*catch_up, self._to_readout(empty, t0, out, origin_ns))

    def _model_s(self) -> float:
        return (self.t_last_us - self.t_first_us) / 1e6 if self.t_first_us is not None else 0.0

    def telemetry(self) -> tuple[dict[str, Number], Groups]:
        model_s = self.model_s_before + self._model_s()  # a counter: never goes back across resets
        values: dict[str, Number] = {
            tm.SYNOPS: self.synops, tm.NEURON_UPDATES: self.neuron_updates, tm.WINDOWS: self.windows,
            tm.MASKED_WINDOWS: self.masked_windows, tm.MODEL_TIME_S: model_s, tm.TIME_RESETS: self.resets,
            tm.INPUT_MASKED_RATIO: self.masked_windows / self.windows if self.windows else 0.0,
        }  # fmt: skip
        groups: Groups = {
            tm.SPIKES: {layer.name: int(n) for layer, n in zip(self.config.layers, self.spikes, strict=True)},
            tm.RESTING_POWER_W: rails(RESTING_W),
            tm.PATH_LATENCY_NS: {
                layer.name: int(ns) for layer, ns in zip(self.config.layers, self.params.layer_latency_ns, strict=True)
            },
            tm.RESTING_ENERGY_J: rails({r: w * model_s for r, w in RESTING_W.items()}),
            tm.DROPPED_EVENTS: dict(self.dropped),
            **self.energy.report(),
        }
        return values, groups
