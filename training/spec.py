"""The contract between a trained model and the chip: one float layer as the chip will run it.

A model bound for Speck (``training.models``) lists its core layers as :class:`SpeckLayerSpec` in
order, input first; :mod:`training.export` quantises them into an :class:`emulator.config.ChipConfig`.
Every layer is an integrate-and-fire conv (no leak, reset by subtraction): BatchNorm already folded
into ``weight``/``bias``, average pooling already turned into sum pooling (``pool_after``), a linear
layer already a conv whose kernel covers its whole input (≤ 16). Units are the model's float units:
a neuron fires when its membrane reaches ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SpeckLayerSpec:
    """One core layer in float: ``input_shape`` (c, h, w) as the core sees it (after the previous
    layer's pooling), ``weight`` [f, c, k, k], ``bias`` [f] or None, ``stride``, ``padding``,
    ``threshold`` (> 0), ``pool_after`` (sum pooling 1, 2 or 4 on the way to the next layer)."""

    name: str
    input_shape: tuple[int, int, int]
    weight: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32] | None
    stride: int
    padding: int
    threshold: float
    pool_after: int = 1

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    def output_shape(self) -> tuple[int, int, int]:
        """(f, oh, ow) before ``pool_after``."""
        _, h, w = self.input_shape
        k, s, p = self.kernel, self.stride, self.padding
        return self.out_channels, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


@dataclass(frozen=True)
class InputSpec:
    """How events become the model's input: the chip's DVS layer pools ``downsample`` × ``downsample``
    pixels of a ``sensor`` (width, height) array into one, keeping both polarities as 2 channels; a
    time-stepped model sees counts per ``dt_us`` bin, ``steps`` bins per sample.

    ``substeps`` k > 1 splits every bin into k equal ones for the neurons (``model_steps`` = k·steps bins of
    ``step_us``) while the input mask, the loss and the firing rates still count ``dt_us`` steps. Finer
    steps bring the time-stepped model closer to the chip's event-driven neurons, which fire the moment
    an event lifts them over threshold and at most once per event: an earlier bundled vanilla net scored
    95.5 % float at 30 ms steps, 94.9 % at 10 ms, 94.6 % at 3 ms, and 94.3 % on the emulated chip."""

    sensor: tuple[int, int] = (128, 128)
    downsample: int = 4
    dt_us: int = 30_000
    steps: int = 20
    substeps: int = 1

    def __post_init__(self) -> None:
        if self.substeps < 1 or self.dt_us % self.substeps:
            raise ValueError(f"substeps: must be ≥ 1 and divide dt_us ({self.dt_us}), got {self.substeps}")

    @property
    def model_steps(self) -> int:
        """Bins per sample as the neurons step them."""
        return self.steps * self.substeps

    @property
    def step_us(self) -> int:
        """One neuron step (µs)."""
        return self.dt_us // self.substeps

    @property
    def shape(self) -> tuple[int, int, int]:
        """(c, h, w) of one input frame."""
        w, h = self.sensor
        return 2, h // self.downsample, w // self.downsample
