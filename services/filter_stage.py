"""The filter stage: ``events.raw`` → the chip's sensor side (:func:`emulator.front_end.front_end_step`)
→ ``events.filtered``.

Event time must not go back within a stream. When it does (the sensor restarted and started its
clock again) the stage starts afresh from the new time and counts a ``time_resets``. numba is loaded
only when the config's noise filter filters (:mod:`emulator.noise`), so by default this process is
small.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from emulator.config import ChipConfig
from emulator.dvs import output_shape
from emulator.front_end import front_end_step
from emulator.noise import FilterState, init_filter_state
from emulator.power import ActivityCounts, energy_j
from proto.events import make_events
from proto.fields import Number
from proto.messages import EventBatch, Message
from services import telemetry as tm
from services.energy_meter import EnergyMeter
from services.runtime import Groups, Outbox


class FilterStage:
    """``events.raw`` → noise filter and Speck pre-processing → ``events.filtered``."""

    name = "filter"
    input_topic = "events.raw"

    def __init__(self, config: ChipConfig) -> None:
        self.config = config
        _, self.out_height, self.out_width = output_shape(config.dvs)
        self.noise: FilterState = init_filter_state(config.dvs.width, config.dvs.height)
        self.t_last_us = 0
        self.resets = 0
        self.dropped: Counter[str] = Counter()
        self.energy = EnergyMeter()

    def warm_up(self) -> None:
        """Load the noise filter's compiled code now (on throwaway state), not on the first batch; a
        config without a noise filter loads none."""
        front_end_step(
            init_filter_state(self.config.dvs.width, self.config.dvs.height),
            make_events([0], [0], [0], [1]),
            self.config,
        )

    def handle(self, msg: Message, out: Outbox) -> Sequence[Message]:
        if not isinstance(msg, EventBatch) or len(msg.events) == 0:
            return ()
        events = msg.events
        if int(events["t"][0]) < self.t_last_us:
            self.noise = init_filter_state(self.config.dvs.width, self.config.dvs.height)
            self.resets += 1
            self.energy.restart()
        self.t_last_us = int(events["t"][-1])
        self.noise, kept, c = front_end_step(self.noise, events, self.config)
        for reason, n in (("noise", c.noise_dropped), ("polarity", c.polarity_dropped), ("roi", c.roi_dropped),
                          ("outside_sensor", c.outside_sensor), ("blocked", c.blocked_sensor_events)):  # fmt: skip
            self.dropped[reason] += n
        joules = energy_j(ActivityCounts(input_events=c.dvs_input_events))
        self.energy.add(joules, int(events["t"][0]), self.t_last_us)
        env = out.envelope("events.filtered", msg.origin_ns)
        return (EventBatch(events=kept, width=self.out_width, height=self.out_height, **env),)

    def telemetry(self) -> tuple[dict[str, Number], Groups]:
        return {tm.TIME_RESETS: self.resets}, {tm.DROPPED_EVENTS: dict(self.dropped), **self.energy.report()}
