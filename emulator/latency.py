"""Latency model: per-layer latency from fan-out, summed along a spike's path.

    fan_out(layer)   = max(1, C_out · k² // s²)                     neurons one input event updates
    layer_ns(layer)  = clip(LAYER_BASE_NS + PER_SYNOP_NS · fan_out, LAYER_MIN_NS, LAYER_MAX_NS)
    path_ns(layers)  = PATH_OVERHEAD_NS + Σ layer_ns                over the layers the spike passed
    t_out_us         = t_in_us + ceil(path_ns / 1000)               integer µs, never early

The paper gives per-layer latency 120 ns–7 µs and an end-to-end minimum of 3.36 µs per spike; the
fixed overhead (sensor, pre-processing, router to the readout) is chosen so that a path through one
fastest layer takes exactly 3.36 µs. The per-synop slope is not published (our assumption).

Per-decision latency (:func:`decision_latency_us`): the decision's time (the end of its slow-clock
cycle) minus the time of the first input event that contributed to that cycle, i.e. the cycle's first
counted readout spike ``t_first`` moved back by the path latency its time stamp includes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from emulator.config import READOUT, ChipConfig, CoreLayer
from emulator.readout import NO_SPIKE_US, Decisions
from proto.events import Spikes

LAYER_MIN_NS = 120
"""Paper: fastest per-layer latency 120 ns."""
LAYER_MAX_NS = 7_000
"""Paper: slowest per-layer latency 7 µs."""
LAYER_BASE_NS = LAYER_MIN_NS
"""A layer with (almost) no fan-out costs the paper's minimum."""
PER_SYNOP_NS = 2
"""Assumption (unpublished): ~0.5 G synops/s per core; a 32C3S1 layer (288) takes 696 ns, and the
7 µs ceiling is reached at a fan-out of 3440."""
END_TO_END_MIN_NS = 3_360
"""Paper: end-to-end minimum 3.36 µs per spike through the pipeline."""
PATH_OVERHEAD_NS = END_TO_END_MIN_NS - LAYER_MIN_NS
"""Sensor / pre-processing / readout overhead: 3240 ns, so one fastest layer gives 3.36 µs."""
NS_PER_US = 1_000


def fan_out(layer: CoreLayer) -> int:
    """Output neurons one input event reaches: ``max(1, C_out · k² // s²)``."""
    return max(1, layer.out_channels * layer.kernel**2 // layer.stride**2)


def layer_latency_ns(layer: CoreLayer) -> int:
    """Latency of one core layer in ns, within ``[LAYER_MIN_NS, LAYER_MAX_NS]``."""
    return int(np.clip(LAYER_BASE_NS + PER_SYNOP_NS * fan_out(layer), LAYER_MIN_NS, LAYER_MAX_NS))


def path_latency_ns(layers: Sequence[CoreLayer]) -> int:
    """End-to-end latency (ns) of a spike passing through ``layers`` (at least one)."""
    if not layers:
        raise ValueError("a path passes through at least one core layer")
    return PATH_OVERHEAD_NS + sum(layer_latency_ns(layer) for layer in layers)


def delay_us(latency_ns: int) -> int:
    """A latency as whole µs, rounded up so an output is never stamped before it can exist."""
    if latency_ns < 0:
        raise ValueError(f"latency_ns must be >= 0, got {latency_ns}")
    return -(-int(latency_ns) // NS_PER_US)


def delay_spikes(spikes: Spikes, latency_ns: int) -> Spikes:
    """A new spike array stamped ``t_out_us = t_in_us + ceil(latency_ns / 1000)``."""
    out = spikes.copy()
    out["t"] = spikes["t"] + np.uint64(delay_us(latency_ns))
    return out


def decision_latency_us(decisions: Decisions, path_latency_ns: int = 0) -> npt.NDArray[np.float64]:
    """Per decision: cycle end − first contributing input (µs); NaN for a cycle with no spike.

    ``path_latency_ns`` is the latency already in the readout spikes' stamps (that of
    :func:`delay_spikes`, rounded up to µs the same way); 0 if they carry their input's time.
    """
    t_first = decisions["t_first"]
    has_input = t_first != np.uint64(NO_SPIKE_US)
    t_input = t_first.astype(np.float64) - delay_us(path_latency_ns)
    return np.where(has_input, decisions["t"].astype(np.float64) - t_input, np.nan)


def longest_paths_ns(config: ChipConfig) -> tuple[npt.NDArray[np.int64], int]:
    """Latency of the longest path from the DVS layer to each core layer's output, and to the readout."""
    layers = config.layers
    sources: list[list[int]] = [[] for _ in layers]
    into_readout: list[int] = []
    for i, layer in enumerate(layers):
        for d in layer.destinations:
            (into_readout if d.layer == READOUT else sources[int(d.layer)]).append(i)
    memo: dict[int, list[CoreLayer]] = {}

    def path(i: int) -> list[CoreLayer]:  # the config refuses loops, so this ends
        if i not in memo:
            longest = max((path(j) for j in sources[i]), key=len, default=[])
            memo[i] = [*longest, layers[i]]
        return memo[i]

    per_layer = np.array([path_latency_ns(path(i)) for i in range(len(layers))], np.int64)
    readout = max((int(per_layer[i]) for i in into_readout), default=0)
    return per_layer, readout
