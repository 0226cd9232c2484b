"""Active energy by rail, as the filter and chip stages report it (``energy_j``, ``active_power_w``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.power import Rail
from proto.fields import Number
from services import telemetry as tm
from services.runtime import Groups


def rails(joules: dict[Rail, float]) -> dict[str, Number]:
    return {rail.name.lower(): joules.get(rail, 0.0) for rail in Rail}


@dataclass
class EnergyMeter:
    """Active energy by rail, cumulative, and its mean power over the event time since the last report."""

    total_j: dict[Rail, float] = field(default_factory=lambda: dict.fromkeys(Rail, 0.0))
    _mark_j: dict[Rail, float] = field(default_factory=lambda: dict.fromkeys(Rail, 0.0))
    _mark_us: int | None = None
    _last_us: int | None = None

    def add(self, joules: dict[Rail, float], t_first_us: int, t_last_us: int) -> None:
        """The energy of a batch spanning ``[t_first_us, t_last_us]`` of event time."""
        for rail, j in joules.items():
            self.total_j[rail] += j
        self._mark_us = t_first_us if self._mark_us is None else self._mark_us
        self._last_us = t_last_us

    def restart(self) -> None:
        """Event time went back: power is measured afresh from the next batch (energy keeps adding up)."""
        self._mark_j, self._mark_us, self._last_us = dict(self.total_j), None, None

    def report(self) -> Groups:
        """``energy_j`` and ``active_power_w`` (over the event time since the last report) by rail."""
        span_s = (self._last_us - self._mark_us) / 1e6 if self._mark_us is not None and self._last_us else 0.0
        power = {r: (self.total_j[r] - self._mark_j[r]) / span_s if span_s > 0 else 0.0 for r in Rail}
        if span_s > 0:
            self._mark_j, self._mark_us = dict(self.total_j), self._last_us
        return {tm.ENERGY_J: rails(self.total_j), tm.ACTIVE_POWER_W: rails(power)}
