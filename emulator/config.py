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

Validation choices (each refused with a :class:`ConfigLimitError`, a ``ValueError``):

* integer arrays of any integer dtype are accepted if their values fit, and stored as read-only
  copies in the hardware dtype; float or bool arrays are refused;
* ``threshold_low == 0`` is refused (a hardware bug: use −1); ``threshold_low < threshold_high``;
* a destination's pooled output ``(oh // p, ow // p)`` and channels ``f + feature_shift`` must fit
  the target's input (smaller is allowed: merges, concatenation); the engine drops what falls outside;
* loops between core layers (a layer reaching itself) are refused: they can deadlock the chip;
* the DVS output (ceil-pooled, ROI, swap; 1 channel for ``merge``, else 2) must equal the target's
  input ``(h, w)`` and its channels (+ shift) fit the target's channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

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
READOUT: Literal["readout"] = "readout"
"""Destination name of the readout core (hardware address 12)."""
READOUT_ADDRESS = 12
DVS_ADDRESS = 13
"""DVS-layer output appears as layer 13 on the chip."""
READOUT_INPUT_SHAPES: dict[int, tuple[int, int, int]] = {0: (4, 2, 2), 1: (2, 4, 2), 2: (1, 4, 4), 3: (16, 1, 1)}
"""Largest ``(c, h, w)`` each readout address mode maps to classes (§4: 2x·2y·4f, 2x·4y·2f, 4x·4y·1f, 1x·1y·16f)."""
READOUT_ERRATUM_CHANNELS = 57
"""Mode 3 with the channel erratum: class k comes from channel 4(k−1), so 15 classes need (15 − 1)·4 + 1 channels."""
READOUT_AVERAGES = (1, 16, 32)
MAX_LABELS = 15
"""Readout classes 1–15 are real (0 = no class)."""
SENSOR_SIDE = 128
"""The DVS128 sensor is 128 × 128."""
MAX_FILTER_WINDOW = 15
U16_MAX = (1 << 16) - 1
"""16-bit unsigned registers: readout threshold, noise-filter threshold."""
SLOW_CLOCK_MIN_HZ, SLOW_CLOCK_MAX_HZ = 1.0, 100_000.0
"""Accepted slow-clock range (the documents give 10 Hz–10 kHz as typical; we allow a decade either side)."""

Reset = Literal["subtract", "zero"]
Polarity = Literal["on", "off", "merge", "both"]
FilterMode = Literal["none", "neighbourhood", "low_pass", "hot_pixel"]


class ConfigLimitError(ValueError):
    """A broken hardware limit: ``where`` (``"layer 2 'conv3'"``, ``"dvs"``), ``field`` as shown in the
    message, ``problem`` (``"3 is not one of (1, 2, 4, 8)"``) and ``path``, the field's path from the
    object validated (``"layers[2].stride"`` from a :class:`ChipConfig`), which file loaders prefix."""

    def __init__(self, where: str, field: str, problem: str, path: str | None = None) -> None:
        super().__init__(f"{where}: {field} {problem}")
        self.where, self.field, self.problem = where, field, problem
        self.path = field if path is None else path


def _set(obj: object, name: str, value: object) -> None:
    """Store a normalised value on a frozen dataclass (only ever from ``__post_init__``)."""
    object.__setattr__(obj, name, value)


def _int(where: str, name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ConfigLimitError(where, name, f"{value!r} is not an integer")
    if not lo <= value <= hi:
        raise ConfigLimitError(where, name, f"{value} is outside {lo}..{hi}")
    return int(value)


def _int_choice(where: str, name: str, value: object, choices: Sequence[int]) -> int:
    number = _int(where, name, value, -(1 << 62), 1 << 62)
    if number not in choices:
        raise ConfigLimitError(where, name, f"{number} is not one of {tuple(choices)}")
    return number


def _str_choice(where: str, name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigLimitError(where, name, f"{value!r} is not one of {tuple(choices)}")
    return value


def _bool(where: str, name: str, value: object) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ConfigLimitError(where, name, f"{value!r} is not a boolean")
    return bool(value)


def _int_array(where: str, name: str, value: object, dtype: np.dtype[Any], shape: tuple[int, ...] | None) -> Any:
    """A read-only copy of ``value`` in ``dtype``; its values must fit, its shape match (if given)."""
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise ConfigLimitError(where, name, f"dtype {array.dtype} is not an integer dtype ({dtype} expected)")
    if shape is not None and array.shape != shape:
        raise ConfigLimitError(where, name, f"shape {array.shape} is not {shape}")
    info = np.iinfo(dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        problem = f"values {array.min()}..{array.max()} do not fit {dtype} ({info.min}..{info.max})"
        raise ConfigLimitError(where, name, problem)
    out = array.astype(dtype, copy=True)
    out.flags.writeable = False
    return out


def _tuple(where: str, name: str, value: object, length: int | None = None) -> tuple[Any, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigLimitError(where, name, f"{value!r} is not a sequence")
    if length is not None and len(value) != length:
        raise ConfigLimitError(where, name, f"{tuple(value)} does not have {length} elements")
    return tuple(value)


def _destinations(where: str, value: object) -> tuple[Destination, ...]:
    destinations = _tuple(where, "destinations", value)
    if len(destinations) > MAX_DESTINATIONS:
        raise ConfigLimitError(where, "destinations", f"has {len(destinations)} entries, at most {MAX_DESTINATIONS}")
    for j, destination in enumerate(destinations):
        if not isinstance(destination, Destination):
            raise ConfigLimitError(where, f"destinations[{j}]", f"{destination!r} is not a Destination")
    return destinations


def _field_equal(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return bool(a == b)


@dataclass(frozen=True)
class Destination:
    """Where a core's output spikes go: a core layer (index) or the readout, with sum-pooling
    (output position ``(y // pooling, x // pooling)``) and a channel offset ``feature_shift``."""

    layer: int | Literal["readout"]
    pooling: int = 1
    feature_shift: int = 0

    def __post_init__(self) -> None:
        where = "destination"
        if self.layer != READOUT:
            _set(self, "layer", _int(where, "layer", self.layer, 0, N_CORES - 1))
        _set(self, "pooling", _int_choice(where, "pooling", self.pooling, POOLINGS))
        _set(self, "feature_shift", _int(where, "feature_shift", self.feature_shift, 0, MAX_CHANNELS - 1))


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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigLimitError("layer", "name", f"{self.name!r} is not a non-empty string")
        where = f"layer {self.name!r}"
        self._check_geometry(where)
        self._check_neurons(where)
        self._check_outputs(where)

    def _check_geometry(self, where: str) -> None:
        """Input shape, weights, stride, padding and the output size they give."""
        c, h, w = _tuple(where, "input_shape", self.input_shape, 3)
        shape = (_int(where, "input_shape", c, 1, MAX_CHANNELS),) + tuple(
            _int(where, "input_shape", side, 1, MAX_INPUT_SIDE) for side in (h, w)
        )
        _set(self, "input_shape", shape)
        weights = _int_array(where, "weights", self.weights, WEIGHT_DTYPE, None)
        if weights.ndim != 4 or weights.shape[2] != weights.shape[3]:
            raise ConfigLimitError(where, "weights", f"shape {weights.shape} is not square [f, c, k, k]")
        f, wc, k, _ = weights.shape
        _int(where, "weights", f, 1, MAX_CHANNELS)  # output channels
        _int(where, "weights", k, 1, MAX_KERNEL)  # kernel side
        if wc != shape[0]:
            raise ConfigLimitError(where, "weights", f"shape {weights.shape} has {wc} input channels, not {shape[0]}")
        _set(self, "weights", weights)
        _set(self, "stride", _int_choice(where, "stride", self.stride, STRIDES))
        _set(self, "padding", _int(where, "padding", self.padding, 0, MAX_PADDING))
        _, oh, ow = self.output_shape
        if not (1 <= oh <= MAX_OUTPUT_SIDE and 1 <= ow <= MAX_OUTPUT_SIDE):
            problem = (
                f"{(oh, ow)} is outside 1..{MAX_OUTPUT_SIDE} (kernel {k}, stride {self.stride}, padding {self.padding})"
            )
            raise ConfigLimitError(where, "output_shape", problem)

    def _check_neurons(self, where: str) -> None:
        """Thresholds, bias, reset, leak and initial state."""
        high = _int(where, "threshold_high", self.threshold_high, STATE_MIN, STATE_MAX)
        low = _int(where, "threshold_low", self.threshold_low, STATE_MIN, STATE_MAX)
        if low == 0:
            raise ConfigLimitError(where, "threshold_low", "0 is refused: a hardware bug; use -1")
        if low >= high:
            raise ConfigLimitError(where, "threshold_low", f"{low} is not below threshold_high {high}")
        _set(self, "threshold_high", high)
        _set(self, "threshold_low", low)
        if self.bias is not None:
            _set(self, "bias", _int_array(where, "bias", self.bias, STATE_DTYPE, (self.out_channels,)))
        _set(self, "reset", _str_choice(where, "reset", self.reset, get_args(Reset)))
        _set(self, "leak", _bool(where, "leak", self.leak))
        if self.initial_state is not None:
            state = _int_array(where, "initial_state", self.initial_state, STATE_DTYPE, self.output_shape)
            _set(self, "initial_state", state)

    def _check_outputs(self, where: str) -> None:
        """Decimator, destinations and the pinned core."""
        if self.decimator is not None:
            _set(self, "decimator", _int_choice(where, "decimator", self.decimator, DECIMATOR_RATES))
        _set(self, "destinations", _destinations(where, self.destinations))
        if self.core is not None:
            _set(self, "core", _int(where, "core", self.core, 0, N_CORES - 1))

    def __eq__(self, other: object) -> bool:
        """Field by field; arrays equal in shape, dtype and values."""
        if not isinstance(other, CoreLayer):
            return NotImplemented
        return all(_field_equal(getattr(self, n), getattr(other, n)) for n in self.__dataclass_fields__)

    @property
    def kernel(self) -> int:
        return int(self.weights.shape[-1])

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(f, oh, ow)`` with ``o = (i + 2p − k) // s + 1``."""
        _, h, w = self.input_shape
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

    def __post_init__(self) -> None:
        where = "dvs noise_filter"
        _set(self, "mode", _str_choice(where, "mode", self.mode, get_args(FilterMode)))
        _set(self, "threshold", _int(where, "threshold", self.threshold, 1, U16_MAX))
        window = _int(where, "window", self.window, 1, MAX_FILTER_WINDOW)
        if window % 2 == 0:
            raise ConfigLimitError(where, "window", f"{window} is not odd")
        _set(self, "window", window)


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

    def __post_init__(self) -> None:
        where = "dvs"
        _set(self, "width", _int(where, "width", self.width, 1, SENSOR_SIDE))
        _set(self, "height", _int(where, "height", self.height, 1, SENSOR_SIDE))
        _set(self, "polarity", _str_choice(where, "polarity", self.polarity, get_args(Polarity)))
        _set(self, "pooling_x", _int_choice(where, "pooling_x", self.pooling_x, POOLINGS))
        _set(self, "pooling_y", _int_choice(where, "pooling_y", self.pooling_y, POOLINGS))
        if self.roi is not None:
            _set(self, "roi", self._checked_roi(where))
        for name in ("mirror_x", "mirror_y", "swap_xy", "pass_sensor_events"):
            _set(self, name, _bool(where, name, getattr(self, name)))
        if not isinstance(self.noise_filter, NoiseFilter):
            raise ConfigLimitError(where, "noise_filter", f"{self.noise_filter!r} is not a NoiseFilter")
        _set(self, "destinations", _destinations(where, self.destinations))
        for j, destination in enumerate(self.destinations):
            if destination.layer == READOUT or destination.pooling != 1:
                problem = f"{destination} must name a core layer with pooling 1 (the DVS pools with pooling_x/y)"
                raise ConfigLimitError(where, f"destinations[{j}]", problem)

    @property
    def pooled_shape(self) -> tuple[int, int]:
        """``(height, width)`` after pooling (ceil division: every sensor pixel lands somewhere)."""
        return -(-self.height // self.pooling_y), -(-self.width // self.pooling_x)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(c, h, w)`` sent to the destinations: 1 channel for ``merge``, else 2 (channel = polarity)."""
        h, w = self.pooled_shape
        y0, x0, y1, x1 = (0, 0, h - 1, w - 1) if self.roi is None else self.roi
        h, w = y1 - y0 + 1, x1 - x0 + 1
        channels = 1 if self.polarity == "merge" else 2
        return (channels, w, h) if self.swap_xy else (channels, h, w)

    def _checked_roi(self, where: str) -> tuple[int, int, int, int]:
        h, w = self.pooled_shape
        y0, x0, y1, x1 = (_int(where, "roi", v, 0, (1 << 31)) for v in _tuple(where, "roi", self.roi, 4))
        if not (y0 <= y1 < h and x0 <= x1 < w):
            problem = f"{(y0, x0, y1, x1)} is not ordered (y0 <= y1, x0 <= x1) inside the pooled sensor {h} x {w}"
            raise ConfigLimitError(where, "roi", problem)
        return y0, x0, y1, x1


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

    def __post_init__(self) -> None:
        where = "readout"
        _set(self, "address_mode", _int_choice(where, "address_mode", self.address_mode, tuple(READOUT_INPUT_SHAPES)))
        _set(self, "average", _int_choice(where, "average", self.average, READOUT_AVERAGES))
        _set(self, "threshold", _int(where, "threshold", self.threshold, 0, U16_MAX))
        _set(self, "channel_erratum", _bool(where, "channel_erratum", self.channel_erratum))
        labels = _tuple(where, "labels", self.labels)
        if len(labels) > MAX_LABELS or not all(isinstance(label, str) for label in labels):
            raise ConfigLimitError(where, "labels", f"{labels!r} is not at most {MAX_LABELS} strings")
        _set(self, "labels", labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Largest ``(c, h, w)`` the address mode maps to classes (wider channels with the erratum, mode 3)."""
        c, h, w = READOUT_INPUT_SHAPES[self.address_mode]
        if self.channel_erratum and self.address_mode == 3:
            c = READOUT_ERRATUM_CHANNELS
        return c, h, w


@dataclass(frozen=True)
class ChipConfig:
    """The whole chip: DVS layer, core layers (in network order), readout, slow clock (Hz)."""

    layers: tuple[CoreLayer, ...]
    dvs: DvsConfig = field(default_factory=DvsConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    slow_clock_hz: float = 1000.0

    def __post_init__(self) -> None:
        layers = _tuple("chip", "layers", self.layers)
        if len(layers) > N_CORES:
            raise ConfigLimitError("chip", "layers", f"has {len(layers)} layers, at most {N_CORES}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, CoreLayer):
                raise ConfigLimitError("chip", f"layers[{i}]", f"{layer!r} is not a CoreLayer")
        _set(self, "layers", layers)
        if not isinstance(self.dvs, DvsConfig):
            raise ConfigLimitError("chip", "dvs", f"{self.dvs!r} is not a DvsConfig")
        if not isinstance(self.readout, ReadoutConfig):
            raise ConfigLimitError("chip", "readout", f"{self.readout!r} is not a ReadoutConfig")
        _set(self, "slow_clock_hz", _slow_clock(self.slow_clock_hz))
        _check_unique(layers, "name")
        _check_unique(layers, "core")
        for i, layer in enumerate(layers):
            for j, destination in enumerate(layer.destinations):
                _check_destination(self, i, j, destination)
        _check_no_loops(layers)
        for j, destination in enumerate(self.dvs.destinations):
            _check_dvs_destination(self, j, destination)


def _layer_error(layers: Sequence[CoreLayer], i: int, name: str, problem: str) -> ConfigLimitError:
    """An error about field ``name`` of layer ``i``, with its path from the chip."""
    return ConfigLimitError(f"layer {i} {layers[i].name!r}", name, problem, f"layers[{i}].{name}")


def _slow_clock(value: object) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigLimitError("chip", "slow_clock_hz", f"{value!r} is not a number")
    hz = float(value)
    if not (math.isfinite(hz) and SLOW_CLOCK_MIN_HZ <= hz <= SLOW_CLOCK_MAX_HZ):
        raise ConfigLimitError("chip", "slow_clock_hz", f"{hz} is outside {SLOW_CLOCK_MIN_HZ}..{SLOW_CLOCK_MAX_HZ}")
    if not hz.is_integer():  # the noise filter's and readout's exact tick arithmetic works in whole Hz
        raise ConfigLimitError("chip", "slow_clock_hz", f"{hz} is not a whole number of Hz")
    return hz


def _check_unique(layers: Sequence[CoreLayer], name: str) -> None:
    """Layer names, and pinned cores, are unique."""
    seen: dict[object, int] = {}
    for i, layer in enumerate(layers):
        value = getattr(layer, name)
        if value is not None and value in seen:
            raise _layer_error(layers, i, name, f"{value!r} is already used by layer {seen[value]}")
        seen[value] = i


def _routed_shape(layer: CoreLayer, destination: Destination) -> tuple[int, int, int]:
    """``(c, h, w)`` a destination receives: channels after the shift, floor-pooled size."""
    f, oh, ow = layer.output_shape
    p = destination.pooling
    return f + destination.feature_shift, oh // p, ow // p


def _check_destination(chip: ChipConfig, i: int, j: int, destination: Destination) -> None:
    """The target exists, is not the layer itself, and the routed shape fits its input."""
    layers, name = chip.layers, f"destinations[{j}]"
    if destination.layer == READOUT:
        target, limit = "the readout", chip.readout.input_shape
    else:
        t = int(destination.layer)
        if t >= len(layers):
            raise _layer_error(layers, i, name + ".layer", f"{t} does not exist (the chip has {len(layers)} layers)")
        if t == i:
            raise _layer_error(layers, i, name + ".layer", f"{t} is the layer itself (loops are refused)")
        target, limit = f"layer {t} {layers[t].name!r}", layers[t].input_shape
    routed = _routed_shape(layers[i], destination)
    if any(r > m for r, m in zip(routed, limit, strict=True)):
        problem = f"sends (c + feature_shift, h // pooling, w // pooling) = {routed}, larger than the input {limit} of {target}"
        raise _layer_error(layers, i, name, problem)


def _check_no_loops(layers: Sequence[CoreLayer]) -> None:
    """Refuse any cycle between core layers (depth-first, colouring)."""
    state = [0] * len(layers)  # 0 unseen, 1 on the current path, 2 done

    def visit(i: int, path: list[int]) -> None:
        state[i] = 1
        for j, destination in enumerate(layers[i].destinations):
            if destination.layer == READOUT:
                continue
            t = int(destination.layer)
            if state[t] == 1:
                loop = " -> ".join(str(k) for k in path[path.index(t) :] + [t])
                raise _layer_error(layers, i, f"destinations[{j}].layer", f"{t} closes a loop {loop} (can deadlock)")
            if state[t] == 0:
                visit(t, path + [t])
        state[i] = 2

    for i in range(len(layers)):
        if state[i] == 0:
            visit(i, [i])


def _check_dvs_destination(chip: ChipConfig, j: int, destination: Destination) -> None:
    """A DVS destination exists; the DVS output matches its input (channels fit, same h and w)."""
    name, path = f"destinations[{j}]", f"dvs.destinations[{j}]"
    t = int(destination.layer)
    if t >= len(chip.layers):
        problem = f"{t} does not exist (the chip has {len(chip.layers)} layers)"
        raise ConfigLimitError("dvs", name + ".layer", problem, path + ".layer")
    c, h, w = chip.dvs.output_shape
    tc, th, tw = chip.layers[t].input_shape
    if c + destination.feature_shift > tc or (h, w) != (th, tw):
        problem = (
            f"sends (c + feature_shift, h, w) = {(c + destination.feature_shift, h, w)}, "
            f"which does not match the input {(tc, th, tw)} of layer {t} {chip.layers[t].name!r}"
        )
        raise ConfigLimitError("dvs", name, problem, path)
