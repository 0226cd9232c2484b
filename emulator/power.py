"""Power model: resting power per rail plus active energy per counted operation.

    E_rail = P_rest,rail · T  +  Σ_op  n_op · e_op,rail          (joules; P in watts, T in seconds)

Rails (:class:`Rail`) are the dev-kit monitor's: 0 IO, 1 RAM, 2 LOGIC, 3 PIXEL_DIGITAL, 4 PIXEL_ANALOG.

**Resting power** (:data:`RESTING_W`). The processor rails IO/RAM/LOGIC share the paper's processor
resting power 0.42 mW in the proportions of the Speck2f dev-kit idle readings (IO 61.7, RAM 51.7,
LOGIC 367.0 µW; sum 480.4 µW): IO 53.94, RAM 45.20, LOGIC 320.86 µW. The sensor rails rest at their
idle readings (PIXEL_DIGITAL 78.9, PIXEL_ANALOG 610.9 µW). Resting energy covers all five rails, but
every report keeps processor and sensor apart: the paper's powers (Table 1) exclude the sensor, so
compare them with :attr:`PowerReport.processor_w`. The active model has no sensor terms (the pixel
rails' activity dependence is not modelled).

**Active energy** (:data:`COEFFICIENTS`, joules per operation, split LOGIC / RAM / IO):

=============== ======= ======= ====== ======= ================================================
operation        LOGIC    RAM     IO    total   meaning and source
=============== ======= ======= ====== ======= ================================================
synop            4 pJ    7 pJ    0     11 pJ   kernel-word read + accumulate; calibrated (below)
neuron_update    3 pJ    9 pJ    0     12 pJ   16-bit state read-modify-write + compare; calibrated
routed_spike    800 pJ  200 pJ   0      1 nJ   router, handshakes, kernel-address mapping; calibrated
input_event     600 pJ  100 pJ 300 pJ   1 nJ   AER in, pre-processing, filter; calibrated
=============== ======= ======= ====== ======= ================================================

No public energy per synaptic operation exists. The coefficients are calibrated so the paper's
Table 1 operating point comes out right (:data:`OPERATING_POINT`): Gesture, vanilla SNN, 9.5 mW
processor power, 1.0 × 10⁶ spikes per sample (the column read as ×10⁶), one sample = the paper's
0.54 s window; network Input-32C3S1-32C3S2-32C3S1-AP4-32FC. Assumption: the 10⁶ events entering the
cores split evenly over the four core inputs, so 250 k input events and 750 k routed spikes. Fan-out
per event, C_out·k²/s²: 288 (L1), 72 (L2), 288 (L3), 32 (FC after AP4) → 680 synops per "column" of
events, 250 k · 680 = 170 M synops, and one neuron update per synop (no leak):

    active = (9.5 − 0.42) mW · 0.54 s = 4.903 mJ
    model  = 170 M · (11 + 12) pJ + 750 k · 1 nJ + 250 k · 1 nJ = 3.910 + 0.750 + 0.250 = 4.910 mJ
    → 4.910 mJ / 0.54 s + 0.42 mW = 9.51 mW  (0.1 % off)

A synop with its neuron update costs 23 pJ, the order of the 10–20 pJ/SOP that speck-hardware.md
estimates; ~80 % of active energy is synaptic. Table 1 gives one number per operating point, so the
split between per-synop and per-event terms (and over rails) is an assumption, not a measurement. With
the same assumptions the other Table 1 rows come out within a factor 2 (Gait-night vanilla: 30 vs
46.8 mW). Override with ``dataclasses.replace(COEFFICIENTS, synop=RailEnergy(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import NamedTuple


class Rail(IntEnum):
    """Power rails, numbered as the dev-kit power monitor numbers them."""

    IO = 0
    RAM = 1
    LOGIC = 2
    PIXEL_DIGITAL = 3
    PIXEL_ANALOG = 4


PROCESSOR_RAILS = (Rail.IO, Rail.RAM, Rail.LOGIC)
SENSOR_RAILS = (Rail.PIXEL_DIGITAL, Rail.PIXEL_ANALOG)

PROCESSOR_RESTING_W = 0.42e-3
"""Paper: processor resting power 0.42 mW."""
IDLE_READINGS_W: dict[Rail, float] = {
    Rail.IO: 61.7e-6,
    Rail.RAM: 51.7e-6,
    Rail.LOGIC: 367.0e-6,
    Rail.PIXEL_DIGITAL: 78.9e-6,
    Rail.PIXEL_ANALOG: 610.9e-6,
}
"""Speck2f dev-kit idle readings per rail (speck-hardware.md §5)."""
_IDLE_PROCESSOR_W = sum(IDLE_READINGS_W[r] for r in PROCESSOR_RAILS)
RESTING_W: dict[Rail, float] = {
    **{r: PROCESSOR_RESTING_W * IDLE_READINGS_W[r] / _IDLE_PROCESSOR_W for r in PROCESSOR_RAILS},
    **{r: IDLE_READINGS_W[r] for r in SENSOR_RAILS},
}
"""Resting power per rail (W): 0.42 mW split in idle proportions; sensor rails at their idle readings."""


class RailEnergy(NamedTuple):
    """Energy of one operation on each processor rail, in joules."""

    logic_j: float
    ram_j: float
    io_j: float = 0.0

    def by_rail(self) -> dict[Rail, float]:
        return {Rail.LOGIC: self.logic_j, Rail.RAM: self.ram_j, Rail.IO: self.io_j}


@dataclass(frozen=True)
class EnergyCoefficients:
    """Active energy per operation (J), split over rails; see the table in the module docstring."""

    synop: RailEnergy
    neuron_update: RailEnergy
    routed_spike: RailEnergy
    input_event: RailEnergy


COEFFICIENTS = EnergyCoefficients(
    synop=RailEnergy(logic_j=4e-12, ram_j=7e-12),
    neuron_update=RailEnergy(logic_j=3e-12, ram_j=9e-12),
    routed_spike=RailEnergy(logic_j=800e-12, ram_j=200e-12),
    input_event=RailEnergy(logic_j=600e-12, ram_j=100e-12, io_j=300e-12),
)
"""The one coefficient table (calibrated on :data:`OPERATING_POINT`, module docstring)."""


class ActivityCounts(NamedTuple):
    """Operations counted over a window: synaptic operations, neuron state read-modify-writes
    (one per synop, plus leak updates), spikes routed between cores, input events entering the chip."""

    synops: int = 0
    neuron_updates: int = 0
    routed_spikes: int = 0
    input_events: int = 0


class OperatingPoint(NamedTuple):
    """A measured point to calibrate against: counts over ``duration_s`` at ``processor_w`` watts."""

    counts: ActivityCounts
    duration_s: float
    processor_w: float


OPERATING_POINT = OperatingPoint(
    counts=ActivityCounts(synops=170_000_000, neuron_updates=170_000_000, routed_spikes=750_000, input_events=250_000),
    duration_s=0.54,
    processor_w=9.5e-3,
)
"""Paper Table 1, Gesture vanilla SNN, under the assumptions in the module docstring."""


class PowerReport(NamedTuple):
    """Mean power over a window, in watts: resting and active per rail, and totals.

    ``processor_w`` (IO + RAM + LOGIC, resting + active) is what the paper reports;
    ``sensor_w`` is the pixel rails' resting power; ``total_w`` is both.
    """

    resting_w: dict[Rail, float]
    active_w: dict[Rail, float]
    processor_resting_w: float
    processor_active_w: float
    processor_w: float
    sensor_w: float
    total_w: float


def energy_j(counts: ActivityCounts, coeffs: EnergyCoefficients = COEFFICIENTS) -> dict[Rail, float]:
    """Active energy per rail (J) of the counted operations (0 on the sensor rails)."""
    s, u, r, i = counts.synops, counts.neuron_updates, counts.routed_spikes, counts.input_events
    return {rail: s * js + u * ju + r * jr + i * ji for rail, (js, ju, jr, ji) in _per_rail(coeffs)}


@lru_cache(maxsize=8)
def _per_rail(coeffs: EnergyCoefficients) -> tuple[tuple[Rail, tuple[float, float, float, float]], ...]:
    """Per rail, the joules of (synop, neuron update, routed spike, input event): a stage prices every
    message, so the table is built once per coefficient set."""
    ops = (coeffs.synop, coeffs.neuron_update, coeffs.routed_spike, coeffs.input_event)
    by_rail = [op.by_rail() for op in ops]
    return tuple((rail, tuple(r.get(rail, 0.0) for r in by_rail)) for rail in Rail)  # type: ignore[misc]


def resting_energy_j(duration_s: float) -> dict[Rail, float]:
    """Resting energy per rail (J) over ``duration_s`` seconds, sensor rails included."""
    if duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    return {rail: watts * duration_s for rail, watts in RESTING_W.items()}


def mean_power_w(counts: ActivityCounts, duration_s: float, coeffs: EnergyCoefficients = COEFFICIENTS) -> PowerReport:
    """Mean power (W) over a window of ``duration_s`` seconds in which ``counts`` happened."""
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    active = {rail: joules / duration_s for rail, joules in energy_j(counts, coeffs).items()}
    resting = dict(RESTING_W)
    proc_rest = sum(resting[r] for r in PROCESSOR_RAILS)
    proc_active = sum(active[r] for r in PROCESSOR_RAILS)
    sensor = sum(resting[r] + active[r] for r in SENSOR_RAILS)
    return PowerReport(
        resting_w=resting,
        active_w=active,
        processor_resting_w=proc_rest,
        processor_active_w=proc_active,
        processor_w=proc_rest + proc_active,
        sensor_w=sensor,
        total_w=proc_rest + proc_active + sensor,
    )
