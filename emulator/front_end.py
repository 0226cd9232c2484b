"""The chip's sensor side, steps 1–3 of :func:`emulator.chip.chip_step`: events outside the DVS array
dropped and counted, the noise filter (:mod:`emulator.noise`), pre-processing (:mod:`emulator.dvs`).

Kept apart from :mod:`emulator.chip` because it needs no numba unless the noise filter filters: the
filter service imports only this, and stays a small process.
"""

from __future__ import annotations

from typing import NamedTuple

from emulator.config import ChipConfig
from emulator.dvs import preprocess
from emulator.noise import FilterState, noise_filter
from proto.events import Events


class FrontEndCounts(NamedTuple):
    """What the sensor side did with one batch."""

    input_events: int
    blocked_sensor_events: int
    """All events, when the config sets ``dvs.pass_sensor_events = false``."""
    outside_sensor: int
    noise_dropped: int
    polarity_dropped: int
    roi_dropped: int
    kept_events: int
    dvs_input_events: int
    """Events the DVS layer took in (priced as input events)."""


def _inside_sensor(events: Events, width: int, height: int) -> Events:
    inside = (events["x"] < width) & (events["y"] < height)
    return events if bool(inside.all()) else events[inside]


def front_end_step(noise: FilterState, events: Events, cfg: ChipConfig) -> tuple[FilterState, Events, FrontEndCounts]:
    """Steps 1–3 of :func:`emulator.chip.chip_step`: drop events outside the array, the noise filter,
    pre-processing (pure)."""
    passed = events if cfg.dvs.pass_sensor_events else events[:0]
    inside = _inside_sensor(passed, cfg.dvs.width, cfg.dvs.height)
    filtered, noise, noise_dropped = noise_filter(
        inside, noise, cfg.dvs.noise_filter, cfg.slow_clock_hz, cfg.dvs.width, cfg.dvs.height
    )
    pre, dvs_counts = preprocess(filtered, cfg.dvs)
    counts = FrontEndCounts(
        input_events=len(events), blocked_sensor_events=len(events) - len(passed),
        outside_sensor=len(passed) - len(inside), noise_dropped=noise_dropped, polarity_dropped=dvs_counts.polarity,
        roi_dropped=dvs_counts.roi, kept_events=len(pre), dvs_input_events=len(inside),
    )  # fmt: skip
    return noise, pre, counts
