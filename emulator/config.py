"""The whole chip as data: DVS pre-processing, up to 9 core layers, readout, slow clock.

Everything here is a frozen dataclass; arrays are numpy arrays with the exact
integer dtypes the hardware stores (int8 weights, int16 biases and states).
Validation of every hardware limit happens in ``__post_init__`` (``ValueError``
naming the layer and the field); the file format lives in :mod:`emulator.config_io`.

Conventions (see ``docs/chip-config.md``):

* shapes are ``(channels, height, width)``; positions ``(y, x)`` with ``y = 0`` the top row;
* weights are ``[f, c, ky, kx]`` (output channel, input channel, kernel row, kernel column) —
  the chip stores ``[f][c][x][y]``; we keep the torch order and transpose on export;
* a :class:`Destination` names a core layer by its index in :attr:`ChipConfig.layers`,
  or the readout with :data:`READOUT`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

# --- hardware limits (speck-hardware.md §1–2) -----------------------------------------------
N_CORES = 9
"""Speck has nine spiking-convolution cores."""
MAX_INPUT_SIDE = 128
"""A core's input feature map is at most 128 × 128."""
MAX_OUTPUT_SIDE = 64
"""A core's output feature map is at most 64 × 64."""
MAX_CHANNELS = 1024
"""At most 1024 output (and input) channels per core."""
MAX_KERNEL = 16
"""Square kernels up to 16 × 16."""
STRIDES = (1, 2, 4, 8)
MAX_PADDING = 7
POOLINGS = (1, 2, 4)
"""Sum-pooling factors of a destination (square)."""
MAX_DESTINATIONS = 2
DECIMATOR_RATES = (2, 4, 8, 16, 32, 128, 256, 512)
"""Decimator codes 0–7 pass 1 of every N spikes, N as printed in the datasheet."""
WEIGHT_DTYPE = np.dtype(np.int8)
"""Weights are 8-bit signed."""
STATE_DTYPE = np.dtype(np.int16)
"""Neuron states, biases and thresholds are 16-bit signed."""
STATE_MIN, STATE_MAX = -(1 << 15), (1 << 15) - 1
READOUT = "readout"
"""Destination name of the readout core (hardware address 12)."""
READOUT_ADDRESS = 12
DVS_ADDRESS = 13
"""DVS-layer output appears as layer 13 on the chip."""

Reset = Literal["subtract", "zero"]
Polarity = Literal["on", "off", "merge", "both"]
FilterMode = Literal["none", "neighbourhood", "low_pass", "hot_pixel"]


@dataclass(frozen=True)
class Destination:
    """Where a core's output spikes go: a core layer (index) or the readout, with sum-pooling
    (output position ``(y // pooling, x // pooling)``) and a channel offset ``feature_shift``."""

    layer: int | Literal["readout"]
    pooling: int = 1
    feature_shift: int = 0


@dataclass(frozen=True)
class CoreLayer:
    """One convolutional core layer of integrate-and-fire neurons.

    ``input_shape`` is ``(c, h, w)``; ``weights`` int8 ``[f, c, k, k]``; ``bias`` int16 ``[f]``
    or ``None`` (no bias words); ``initial_state`` int16 ``[f, oh, ow]`` or ``None`` (zeros).
    ``core`` pins the layer to a core id (0–8); ``None`` lets the mapper choose.
    """

    name: str
    input_shape: tuple[int, int, int]
    weights: npt.NDArray[np.int8]
    threshold_high: int
    threshold_low: int = -1
    bias: npt.NDArray[np.int16] | None = None
    stride: int = 1
    padding: int = 0
    reset: Reset = "subtract"
    leak: bool = False
    decimator: int | None = None
    destinations: tuple[Destination, ...] = ()
    initial_state: npt.NDArray[np.int16] | None = None
    core: int | None = None

    @property
    def kernel(self) -> int:
        return int(self.weights.shape[-1])

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(f, oh, ow)`` with ``o = (i + 2p − k) // s + 1``."""
        c, h, w = self.input_shape
        k, s, p = self.kernel, self.stride, self.padding
        return self.out_channels, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


@dataclass(frozen=True)
class NoiseFilter:
    """The DVS noise filter (one mode at a time), timed by the slow clock.

    ``window``: neighbourhood side (1–15, odd); ``threshold``: slow-clock ticks.
    """

    mode: FilterMode = "none"
    threshold: int = 1
    window: int = 3


@dataclass(frozen=True)
class DvsConfig:
    """The pre-processing core: polarity → pooling → ROI → mirror/swap → destinations.

    ``roi`` is ``(y0, x0, y1, x1)`` inclusive, in pooled coordinates (``None`` = all);
    output is shifted to start at 0. Mirrors apply first, then the diagonal swap.
    """

    width: int = 128
    height: int = 128
    polarity: Polarity = "both"
    pooling_x: int = 1
    pooling_y: int = 1
    roi: tuple[int, int, int, int] | None = None
    mirror_x: bool = False
    mirror_y: bool = False
    swap_xy: bool = False
    noise_filter: NoiseFilter = field(default_factory=NoiseFilter)
    destinations: tuple[Destination, ...] = ()
    pass_sensor_events: bool = True


@dataclass(frozen=True)
class ReadoutConfig:
    """The readout core: per-slow-clock class counts, averaged, thresholded, argmax.

    ``address_mode`` 0–3 maps neuron addresses to classes (speck-hardware.md §4);
    ``average`` is 1, 16 or 32 cycles; ``channel_erratum`` models Speck2e/2f's
    "CNN channel 4(k−1) arrives at class k" bug (off by default).
    """

    address_mode: int = 3
    average: int = 1
    threshold: int = 0
    channel_erratum: bool = False
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChipConfig:
    """The whole chip: DVS layer, core layers (in network order), readout, slow clock (Hz)."""

    layers: tuple[CoreLayer, ...]
    dvs: DvsConfig = field(default_factory=DvsConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    slow_clock_hz: float = 1000.0
