"""A slow, plain-Python reference of the event-driven engine, written from the spec alone.

Recursion for depth-first propagation, nested lists for membranes, a scan of *every* output
neuron to find the covered ones, one loop iteration per leak tick, exact rational tick times.
It shares nothing with :mod:`emulator.engine` but the config data model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from emulator.config import READOUT, ChipConfig, CoreLayer

I16_MIN, I16_MAX = -32768, 32767
READOUT_LAYER = 12


@dataclass
class Reference:
    """State and counters of the reference chip; feed it with :meth:`run`."""

    config: ChipConfig
    v: list[list[list[list[int]]]] = field(default_factory=list)
    decim: list[int] = field(default_factory=list)
    tick: int = 0
    out: list[tuple[int, int, int, int, int]] = field(default_factory=list)  # (t, layer, c, y, x)
    synops: list[int] = field(default_factory=list)
    updates: list[int] = field(default_factory=list)
    spikes: list[int] = field(default_factory=list)
    routed: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    dropped_inputs: int = 0

    def __post_init__(self) -> None:
        for layer in self.config.layers:
            f, oh, ow = layer.output_shape
            if layer.initial_state is None:
                self.v.append([[[0] * ow for _ in range(oh)] for _ in range(f)])
            else:
                self.v.append([[[int(a) for a in row] for row in plane] for plane in layer.initial_state])
        n = len(self.config.layers)
        self.decim = [0] * n
        for name in ("synops", "updates", "spikes", "routed", "dropped"):
            setattr(self, name, [0] * n)

    # --- slow clock -------------------------------------------------------------------------
    def _tick_once(self) -> None:
        for i, layer in enumerate(self.config.layers):
            if not layer.leak:
                continue
            for f, plane in enumerate(self.v[i]):
                b = 0 if layer.bias is None else int(layer.bias[f])
                for row in plane:
                    for x in range(len(row)):
                        row[x] = max(min(max(row[x] + b, I16_MIN), I16_MAX), layer.threshold_low)
                        self.updates[i] += 1

    def _ticks_until(self, t: int) -> None:
        period = Fraction(10**6) / Fraction(self.config.slow_clock_hz)
        while (self.tick + 1) * period <= t:
            self.tick += 1
            self._tick_once()

    # --- one input --------------------------------------------------------------------------
    def _input(self, t: int, i: int, c: int, y: int, x: int) -> None:
        layer: CoreLayer = self.config.layers[i]
        f_n, oh, ow = layer.output_shape
        k, s, p = layer.kernel, layer.stride, layer.padding
        fired = []
        for oy in range(oh):
            for ox in range(ow):
                for f in range(f_n):
                    y0, x0 = oy * s - p, ox * s - p
                    if not (y0 <= y < y0 + k and x0 <= x < x0 + k):
                        continue
                    w = int(layer.weights[f, c, y - y0, x - x0])
                    a = self.v[i][f][oy][ox] + w
                    a = max(min(a, I16_MAX), I16_MIN)
                    a = max(a, layer.threshold_low)
                    if a >= layer.threshold_high:
                        a = 0 if layer.reset == "zero" else a - layer.threshold_high
                        a = max(min(max(a, layer.threshold_low), I16_MAX), I16_MIN)
                        fired.append((f, oy, ox))
                    self.v[i][f][oy][ox] = a
                    self.synops[i] += 1
                    self.updates[i] += 1
        routed: list[tuple[int, int, int, int]] = []
        for f, oy, ox in fired:
            self._spike(t, i, f, oy, ox, routed)
        for target, c2, y2, x2 in routed:
            self._input(t, target, c2, y2, x2)

    def _spike(self, t: int, i: int, f: int, oy: int, ox: int, routed: list[tuple[int, int, int, int]]) -> None:
        """Monitor row, decimator, then the destinations in order: readout rows now, core inputs queued."""
        layer = self.config.layers[i]
        self.out.append((t, i, f, oy, ox))
        self.spikes[i] += 1
        n = 1 if layer.decimator is None else layer.decimator
        self.decim[i] += 1
        if self.decim[i] < n:
            return
        self.decim[i] = 0
        for d in layer.destinations:
            self.routed[i] += 1
            c, y, x = f + d.feature_shift, oy // d.pooling, ox // d.pooling
            if d.layer == READOUT:
                self.out.append((t, READOUT_LAYER, c, y, x))
                continue
            tc, th, tw = self.config.layers[int(d.layer)].input_shape
            if c < tc and y < th and x < tw:
                routed.append((int(d.layer), c, y, x))
            else:
                self.dropped[i] += 1

    def run(self, events: list[tuple[int, int, int, int, int]]) -> None:
        """Process ``(t, layer, c, y, x)`` input events in order."""
        for t, i, c, y, x in events:
            self._ticks_until(t)
            if i >= len(self.config.layers):
                self.dropped_inputs += 1
                continue
            tc, th, tw = self.config.layers[i].input_shape
            if not (c < tc and y < th and x < tw):
                self.dropped_inputs += 1
                continue
            self._input(t, i, c, y, x)
