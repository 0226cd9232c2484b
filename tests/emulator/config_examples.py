"""Valid chip configs for tests: one small hand-written net and a hypothesis strategy of random ones."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from emulator.config import (
    POOLINGS,
    READOUT,
    STRIDES,
    ChipConfig,
    CoreLayer,
    Destination,
    DvsConfig,
    NoiseFilter,
    ReadoutConfig,
)


def small_config() -> ChipConfig:
    """DVS 16×16 (both polarities) → conv 2→4 k3 s1 p1 → pool 2 → conv 4→10 k8 (1×1) → readout."""
    rng = np.random.default_rng(0)
    conv1 = CoreLayer(
        name="conv1",
        input_shape=(2, 16, 16),
        weights=rng.integers(-128, 128, (4, 2, 3, 3)).astype(np.int8),
        threshold_high=64,
        padding=1,
        bias=np.array([0, 1, -1, 2]),
        destinations=(Destination(1, pooling=2),),
    )
    head = CoreLayer(
        name="head",
        input_shape=(4, 8, 8),
        weights=rng.integers(-128, 128, (10, 4, 8, 8)).astype(np.int8),
        threshold_high=100,
        reset="zero",
        destinations=(Destination(READOUT),),
    )
    dvs = DvsConfig(width=16, height=16, destinations=(Destination(0),))
    return ChipConfig((conv1, head), dvs=dvs, readout=ReadoutConfig(labels=tuple("abcdefghij")))


def _array(rng: np.random.Generator, lo: int, hi: int, shape: tuple[int, ...], dtype: Any) -> Any:
    return rng.integers(lo, hi, shape, endpoint=True).astype(dtype)


@st.composite
def _layer(draw: st.DrawFn, i: int, shape: tuple[int, int, int], rng: np.random.Generator) -> CoreLayer:
    """A random valid layer for ``shape`` (destinations added later)."""
    c, h, w = shape
    padding = draw(st.integers(0, 2))
    kernel = draw(st.integers(1, min(5, h + 2 * padding, w + 2 * padding)))
    f = draw(st.integers(1, 6))
    low = draw(st.integers(-(1 << 15), -1) | st.integers(1, 50))
    layer = CoreLayer(
        name=f"L{i}_{draw(st.text('abc_', max_size=3))}",
        input_shape=shape,
        weights=_array(rng, -128, 127, (f, c, kernel, kernel), np.int8),
        threshold_high=draw(st.integers(max(low + 1, -100), 1 << 14)),
        threshold_low=low,
        bias=draw(st.none() | st.just(_array(rng, -(1 << 15), (1 << 15) - 1, (f,), np.int16))),
        stride=draw(st.sampled_from(STRIDES)),
        padding=padding,
        reset=draw(st.sampled_from(["subtract", "zero"])),
        leak=draw(st.booleans()),
        decimator=draw(st.none() | st.sampled_from([2, 4, 512])),
        core=draw(st.none() | st.just(8 - i)),
    )
    if draw(st.booleans()):
        state = _array(rng, -(1 << 15), (1 << 15) - 1, layer.output_shape, np.int16)
        layer = replace(layer, initial_state=state)
    return layer


@st.composite
def valid_configs(draw: st.DrawFn) -> ChipConfig:
    """A feed-forward chain of 1–4 layers, each destination sized to fit, optional DVS input and readout."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    layers, routes = [], []
    for i in range(draw(st.integers(1, 4))):
        layer = draw(_layer(i, shape, rng))
        f, oh, ow = layer.output_shape
        pooling = draw(st.sampled_from([p for p in POOLINGS if p <= min(oh, ow)]))
        shift = draw(st.integers(0, 2))
        layers.append(layer)
        routes.append(Destination(i + 1, pooling, shift))
        shape = (f + shift + draw(st.integers(0, 1)), oh // pooling, ow // pooling)
    readout = ReadoutConfig(
        address_mode=draw(st.integers(0, 3)),
        average=draw(st.sampled_from([1, 16, 32])),
        threshold=draw(st.integers(0, 65535)),
        channel_erratum=draw(st.booleans()),
        labels=tuple(draw(st.lists(st.text(max_size=4), max_size=15))),
    )
    destinations = [(r,) for r in routes[:-1]] + [_readout_route(layers[-1], readout)]
    layers = [replace(lay, destinations=d) for lay, d in zip(layers, destinations, strict=True)]
    return ChipConfig(
        tuple(layers),
        dvs=_dvs_for(draw, layers[0]),
        readout=readout,
        slow_clock_hz=float(draw(st.integers(1, 100_000))),
    )


def _readout_route(layer: CoreLayer, readout: ReadoutConfig) -> tuple[Destination, ...]:
    f, oh, ow = layer.output_shape
    c, h, w = readout.input_shape
    for p in POOLINGS:
        if f <= c and oh // p <= h and ow // p <= w:
            return (Destination(READOUT, p),)
    return ()


def _dvs_for(draw: st.DrawFn, first: CoreLayer) -> DvsConfig:
    c, h, w = first.input_shape
    noise = NoiseFilter(
        mode=draw(st.sampled_from(["none", "neighbourhood", "low_pass", "hot_pixel"])),
        threshold=draw(st.integers(1, 65535)),
        window=draw(st.sampled_from([1, 3, 15])),
    )
    wired = draw(st.booleans())
    return DvsConfig(
        width=w,
        height=h,
        polarity="both" if c >= 2 else "merge",
        mirror_x=draw(st.booleans()),
        swap_xy=False,
        noise_filter=noise,
        destinations=(Destination(0),) if wired else (),
        pass_sensor_events=draw(st.booleans()),
    )
