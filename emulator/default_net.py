"""The paper's Speck network with fixed random weights: the default config until a trained one ships.

Input 2×128×128 (DVS, pooled 4× to 2×32×32) → 32C3S1 → 32C3S2 → 32C3S1 → sum-pool 4 → 32FC
(a 4×4 kernel) → 11-class output → readout (address mode 3). Five cores, as in the paper's
Table 1. The weights are a seeded draw and the thresholds are set so that a DVS128 recording makes about
4 spikes per input event over all layers, the order of the paper's Table 1 (10^6 spikes for a
sample of ~250 k events): the numbers it gives (spikes, synops, power, real-time factor) have the
shape of the real net's, not its accuracy.
"""

from __future__ import annotations

import numpy as np

from emulator.config import READOUT, ChipConfig, CoreLayer, Destination, DvsConfig, ReadoutConfig

GESTURE_LABELS = (
    "hand_clap", "right_hand_wave", "left_hand_wave", "right_arm_cw", "right_arm_ccw", "left_arm_cw",
    "left_arm_ccw", "arm_roll", "air_drums", "air_guitar", "other",
)  # fmt: skip
"""The 11 DVS128 Gesture classes, in the dataset's order."""

_LAYERS = (
    # name, input shape, out channels, kernel, stride, padding, threshold, destination pooling
    ("conv1", (2, 32, 32), 32, 3, 1, 1, 32, 1),
    ("conv2", (32, 32, 32), 32, 3, 2, 1, 32, 1),
    ("conv3", (32, 16, 16), 32, 3, 1, 1, 32, 4),
    ("fc1", (32, 4, 4), 32, 4, 1, 0, 32, 1),
    ("out", (32, 1, 1), len(GESTURE_LABELS), 1, 1, 0, 16, 1),
)


def speck_net(seed: int = 0) -> ChipConfig:
    """The 5-core Speck net with weights drawn from ``seed`` (int8 in [−5, 4]: slightly inhibitory
    on average, so activity thins out layer by layer instead of running away)."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (name, shape, f, k, s, p, threshold, pool) in enumerate(_LAYERS):
        last = i == len(_LAYERS) - 1
        dest = Destination(READOUT) if last else Destination(i + 1, pooling=pool)
        weights = rng.integers(-5, 5, size=(f, shape[0], k, k)).astype(np.int8)
        layers.append(
            CoreLayer(name, shape, weights, threshold_high=threshold, stride=s, padding=p, destinations=(dest,))
        )
    dvs = DvsConfig(pooling_x=4, pooling_y=4, destinations=(Destination(0),))
    readout = ReadoutConfig(address_mode=3, average=1, labels=GESTURE_LABELS)  # every cycle with output decides
    return ChipConfig(layers=tuple(layers), dvs=dvs, readout=readout, slow_clock_hz=1000.0)
