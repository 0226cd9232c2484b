"""Power model: resting split, linear active energy, units, calibration against Table 1."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.power import (
    COEFFICIENTS,
    IDLE_READINGS_W,
    OPERATING_POINT,
    PROCESSOR_RAILS,
    RESTING_W,
    SENSOR_RAILS,
    ActivityCounts,
    Rail,
    RailEnergy,
    energy_j,
    mean_power_w,
    resting_energy_j,
)

counts_st = st.builds(
    ActivityCounts,
    st.integers(0, 10**10),
    st.integers(0, 10**10),
    st.integers(0, 10**8),
    st.integers(0, 10**8),
)


def test_rails_are_numbered_as_the_dev_kit_monitor() -> None:
    assert [int(r) for r in (Rail.IO, Rail.RAM, Rail.LOGIC, Rail.PIXEL_DIGITAL, Rail.PIXEL_ANALOG)] == [0, 1, 2, 3, 4]


def test_processor_resting_power_is_042_mw_in_idle_proportions() -> None:
    assert sum(RESTING_W[r] for r in PROCESSOR_RAILS) == pytest.approx(0.42e-3, rel=1e-12)
    idle_total = sum(IDLE_READINGS_W[r] for r in PROCESSOR_RAILS)
    for rail in PROCESSOR_RAILS:
        assert RESTING_W[rail] / 0.42e-3 == pytest.approx(IDLE_READINGS_W[rail] / idle_total, rel=1e-12)
    assert RESTING_W[Rail.LOGIC] == pytest.approx(320.86e-6, abs=0.01e-6)


def test_sensor_rails_rest_at_their_idle_readings_and_are_reported_apart() -> None:
    assert RESTING_W[Rail.PIXEL_DIGITAL] == 78.9e-6 and RESTING_W[Rail.PIXEL_ANALOG] == 610.9e-6
    report = mean_power_w(ActivityCounts(), 1.0)
    assert report.sensor_w == pytest.approx(689.8e-6)
    assert report.processor_w == pytest.approx(0.42e-3)
    assert report.total_w == pytest.approx(0.42e-3 + 689.8e-6)


def test_zero_activity_is_resting_only() -> None:
    report = mean_power_w(ActivityCounts(), 2.5)
    assert all(w == 0.0 for w in report.active_w.values())
    assert report.processor_active_w == 0.0
    assert report.resting_w == RESTING_W
    assert report.processor_w == report.processor_resting_w


@given(a=counts_st, b=counts_st, k=st.integers(0, 50))
def test_active_energy_is_linear_in_counts(a: ActivityCounts, b: ActivityCounts, k: int) -> None:
    total = ActivityCounts(*(x + y for x, y in zip(a, b, strict=True)))
    ea, eb, et = energy_j(a), energy_j(b), energy_j(total)
    scaled = energy_j(ActivityCounts(*(k * x for x in a)))
    for rail in Rail:
        assert et[rail] == pytest.approx(ea[rail] + eb[rail], rel=1e-9, abs=1e-30)
        assert scaled[rail] == pytest.approx(k * ea[rail], rel=1e-9, abs=1e-30)
    assert all(energy_j(a)[r] == 0.0 for r in SENSOR_RAILS)


def test_each_operation_costs_its_table_entry() -> None:
    for field, per_op in zip(ActivityCounts._fields, dataclasses.astuple(COEFFICIENTS), strict=True):
        e = energy_j(ActivityCounts(**{field: 1}))
        assert (e[Rail.LOGIC], e[Rail.RAM], e[Rail.IO]) == tuple(per_op)


def test_joules_and_watts_agree() -> None:
    counts, seconds = ActivityCounts(10**6, 10**6, 10**4, 10**3), 0.25
    report = mean_power_w(counts, seconds)
    active, resting = energy_j(counts), resting_energy_j(seconds)
    for rail in Rail:
        assert report.active_w[rail] * seconds == pytest.approx(active[rail])
        assert report.resting_w[rail] * seconds == pytest.approx(resting[rail])
    assert resting_energy_j(2.0)[Rail.LOGIC] == pytest.approx(2 * RESTING_W[Rail.LOGIC])
    # the same activity over twice the window: same energy, half the active power
    assert mean_power_w(counts, 2 * seconds).processor_active_w == pytest.approx(report.processor_active_w / 2)


def test_calibration_reproduces_the_table_1_operating_point() -> None:
    report = mean_power_w(OPERATING_POINT.counts, OPERATING_POINT.duration_s)
    assert report.processor_w == pytest.approx(9.5e-3, rel=0.01)
    per_sop = sum(energy_j(ActivityCounts(synops=1, neuron_updates=1)).values())
    assert 10e-12 <= per_sop <= 25e-12  # the order of the 10–20 pJ/SOP estimate


@pytest.mark.parametrize(
    ("spikes_millions", "measured_mw"),
    [(1.0, 9.5), (0.4, 3.8), (2.9, 16.1), (1.2, 7.3), (3.3, 46.8), (1.5, 12.3)],
)
def test_every_table_1_row_within_a_factor_2(spikes_millions: float, measured_mw: float) -> None:
    counts = ActivityCounts(*(round(n * spikes_millions) for n in OPERATING_POINT.counts))
    modelled = mean_power_w(counts, OPERATING_POINT.duration_s).processor_w * 1e3
    assert 0.5 <= modelled / measured_mw <= 2.0


def test_coefficients_can_be_overridden() -> None:
    cheap = dataclasses.replace(COEFFICIENTS, synop=RailEnergy(logic_j=1e-12, ram_j=0.0))
    e = energy_j(ActivityCounts(synops=1000), cheap)
    assert e[Rail.LOGIC] == pytest.approx(1e-9) and e[Rail.RAM] == 0.0


def test_bad_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        mean_power_w(ActivityCounts(), 0.0)
    with pytest.raises(ValueError, match="duration_s"):
        resting_energy_j(-1.0)
    assert not math.isnan(mean_power_w(ActivityCounts(), 1e-9).total_w)
