"""The readout stage: ``spikes`` → the readout's per-cycle decisions → ``prediction`` messages.

Holds :func:`emulator.readout.readout_step`'s state; numpy only (no numba: the readout process
stays small). Event time going back (the chip restarted) starts the readout afresh and counts a
``time_resets``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from emulator.config import ChipConfig
from emulator.latency import decision_latency_us, delay_us, longest_paths_ns
from emulator.readout import ReadoutState, new_readout_state, readout_step
from proto.fields import Number
from proto.messages import Message, Prediction, SpikeBatch
from services import telemetry as tm
from services.runtime import Groups, Outbox


class ReadoutStage:
    """``spikes`` → the readout's per-cycle decisions → one ``prediction`` per passed decision."""

    name = "readout"
    input_topic = "spikes"

    def __init__(self, config: ChipConfig) -> None:
        self.config = config
        self.hz = config.slow_clock_hz
        self.delay_us = delay_us(longest_paths_ns(config)[1])
        """The path latency in the spikes' stamps: the readout counts them at their input's time, as
        :class:`emulator.chip.Chip` does, so a stamp that crosses a cycle end changes no decision."""
        self.cycle_us = 1e6 / self.hz
        self.state: ReadoutState | None = None
        self.t_end_us = 0
        self.decisions = self.predictions = self.resets = 0
        self.by_label: Counter[str] = Counter()

    def label(self, class_id: int) -> str:
        labels = self.config.readout.labels
        return labels[class_id - 1] if 0 < class_id <= len(labels) else f"class_{class_id}"

    def handle(self, msg: Message, out: Outbox) -> Sequence[Message]:
        if not isinstance(msg, SpikeBatch):
            return ()
        spikes = msg.spikes
        if len(spikes):
            spikes = spikes.copy()
            spikes["t"] = np.maximum(spikes["t"], self.delay_us) - np.uint64(self.delay_us)
        t_end_us = max(msg.t_end_us - self.delay_us, 0)
        t_start = int(spikes["t"][0]) if len(spikes) else t_end_us
        if self.state is None or t_start < self.t_end_us:
            self.resets += self.state is not None
            self.state = new_readout_state(self.config.readout, self.hz, t_start)
        self.t_end_us = t_end_us
        decisions, self.state = readout_step(spikes, self.state, self.config.readout, self.hz, t_end_us)
        self.decisions += len(decisions)
        if not len(decisions):
            return ()
        passed = decisions[decisions["passed"]]
        latency = decision_latency_us(passed)
        window_us = int(self.cycle_us * self.config.readout.average)
        outputs = []
        for row, chip_us in zip(passed, latency, strict=True):
            label = self.label(int(row["class_index"]))
            extras: dict[str, Number] = {"cycle": int(row["cycle"])}
            if not math.isnan(chip_us):
                extras[tm.CHIP_LATENCY_US] = float(chip_us)
            env = out.envelope("prediction", msg.origin_ns)
            t_end = int(row["t"])
            outputs.append(Prediction(
                class_id=int(row["class_index"]), label=label, score=float(row["value"]),
                t_start_us=max(0, t_end - window_us), t_end_us=t_end,
                latency_us=(env["sent_ns"] - msg.origin_ns) / 1e3 if msg.origin_ns else 0.0, extras=extras, **env,
            ))  # fmt: skip
            self.by_label[label] += 1
        self.predictions += len(outputs)
        return outputs

    def telemetry(self) -> tuple[dict[str, Number], Groups]:
        values: dict[str, Number] = {
            tm.DECISIONS: self.decisions,
            tm.PREDICTIONS: self.predictions,
            tm.TIME_RESETS: self.resets,
        }
        return values, {tm.PREDICTIONS: dict(self.by_label)}
