"""Float layers → a chip config: sinabs' discretisation, the chain DVS → cores → readout, mapping.

Quantisation (speck-hardware.md §6), per layer. For a tensor with min ``m``, max ``M`` and ``b`` bits,
``Dmax = 2^(b−1) − 1``, ``Dmin = 2^(b−1)``::

    scale(t, b) = Dmax / |M|   if |m| ≤ |M| · Dmin / Dmax   else   Dmin / |m|     (∞ for an all-zero t)
    s = min(scale(weight, weight_bits), scale(bias, weight_bits), scale((−θ, θ), state_bits))
    W = round(s · weight)            int8        threshold_high = max(1, round(s · θ))
    b = round(s · bias · tick / dt)  int16       threshold_low  = −threshold_high

* The threshold pair is ``(min_v_mem, θ) = (−θ, θ)``: every official sinabs example sets
  ``min_v_mem = −1.0`` (in threshold units). Left at −32768 the pair would force ``s ≤ 1`` and small
  weights would round to 0 (the pitfall of §6). The chip clamps the membrane at ``threshold_low``.
* The state's own scale is ∞: exported layers start from zero membranes (no ``initial_state``).
* ``round`` is numpy's (half to even, like torch's); values are clipped to the bit width after it.
* **Bias** (:data:`BIAS_PER_TICK`): a float model adds ``bias`` once per time step (``step_us``); the
  chip's leak adds ``bias`` once per slow-clock tick, so the exported value is the per-step bias × the
  ticks per step ⁻¹. Its scale is computed, as sinabs does, on the per-step bias. ``leak`` is on iff
  any exported bias is non-zero; biases that round to 0 are reported.

Chain: the DVS layer pools ``input_spec.downsample`` × ``downsample`` and keeps both polarities
(2 channels) → layer 0; layer ``i`` → layer ``i + 1`` with ``pooling = pool_after``; the last layer →
the readout (address mode 3, channel → class, average 1) when there are at most 15 classes; with more
the readout cannot hold them and the last layer's spikes are only monitored (``labels`` empty).

:func:`float_vs_quantised` runs the float and the integer layers as the same time-stepped M-IF net
(numpy), so that a model's accuracy loss from quantisation alone can be read off.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from emulator.attention import TemporalAttentionScorer
from emulator.config import (
    MAX_LABELS,
    READOUT,
    STATE_MAX,
    STATE_MIN,
    ChipConfig,
    ConfigLimitError,
    CoreLayer,
    Destination,
    DvsConfig,
    ReadoutConfig,
)
from emulator.config_io import save_config
from emulator.mapping import MappingError, map_layers
from training.spec import InputSpec, SpeckLayerSpec

WEIGHT_BITS = 8
"""Speck's weights are 8-bit signed (biases are discretised at the weight width too, as sinabs does)."""
STATE_BITS = 16
"""Speck's neuron states, thresholds and biases are 16-bit signed."""
MIN_THRESHOLD = 1
"""A threshold that rounds below 1 would make every neuron fire on any input: clamp to 1."""
BIAS_PER_TICK = True
"""The chip's leak adds the bias once per slow-clock tick: the float per-step bias is divided by the ticks per step."""
READOUT_MODE_CHANNELS = 3
"""Readout address mode 3 (1x · 1y · 16f): output channel k → class k + 1."""
SCORER_SUFFIX = ".scorer.npz"
META_SUFFIX = ".meta.json"

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class ExportError(ValueError):
    """A model the chip cannot run: ``layer`` names the offending layer (``None``: the whole net)."""

    def __init__(self, layer: str | None, problem: str) -> None:
        super().__init__(f"layer {layer!r}: {problem}" if layer is not None else problem)
        self.layer, self.problem = layer, problem


@dataclass(frozen=True)
class LayerReport:
    """What discretisation did to one layer (ranges are ``(min, max)``; biases per slow-clock tick)."""

    name: str
    core: int
    scale: float
    limited_by: str
    """Which tensor set the scale: ``weights``, ``bias`` or ``thresholds``."""
    weights: int
    weights_zeroed: int
    """Non-zero float weights that rounded to 0."""
    weight_range_float: tuple[float, float]
    weight_range_int: tuple[int, int]
    threshold_float: float
    threshold_high: int
    threshold_low: int
    bias_range_float: tuple[float, float] | None
    bias_range_int: tuple[int, int] | None
    bias_zeroed: int


@dataclass(frozen=True)
class ExportResult:
    """The validated, mapped chip config and one :class:`LayerReport` per layer."""

    config: ChipConfig
    report: tuple[LayerReport, ...]

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(row) for row in self.report]

    def format_report(self) -> str:
        head = f"{'layer':12} {'core':>4} {'scale':>9} {'by':10} {'zeroed':>12} {'W int':>11} {'θ':>7} {'θ low':>7}"
        rows = [head]
        for r in self.report:
            zeroed = f"{r.weights_zeroed}/{r.weights}"
            w = f"{r.weight_range_int[0]}..{r.weight_range_int[1]}"
            rows.append(
                f"{r.name:12} {r.core:>4} {r.scale:>9.3f} {r.limited_by:10} {zeroed:>12} {w:>11} "
                f"{r.threshold_high:>7} {r.threshold_low:>7}"
            )
        return "\n".join(rows)


# --- discretisation -------------------------------------------------------------------------------


def discretisation_scale(values: npt.ArrayLike, bits: int) -> float:
    """sinabs' ``determine_discretization_scale`` (module docstring); ∞ for an empty or all-zero tensor."""
    v = np.asarray(values, np.float64)
    if v.size == 0 or not v.any():
        return math.inf
    lo, hi = abs(float(v.min())), abs(float(v.max()))
    d_max, d_min = 2 ** (bits - 1) - 1, 2 ** (bits - 1)
    if lo <= hi * d_min / d_max:
        return d_max / hi
    return d_min / lo


def _round(values: npt.ArrayLike, scale: float, bits: int) -> I64:
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return np.clip(np.round(np.asarray(values, np.float64) * scale), lo, hi).astype(np.int64)


def layer_scale(spec: SpeckLayerSpec, weight_bits: int, state_bits: int) -> tuple[float, str]:
    """The one scale of a layer and the tensor that set it."""
    scales = {
        "weights": discretisation_scale(spec.weight, weight_bits),
        "bias": discretisation_scale(spec.bias if spec.bias is not None else [], weight_bits),
        "thresholds": discretisation_scale([-spec.threshold, spec.threshold], state_bits),
    }
    by = min(scales, key=lambda k: scales[k])
    return scales[by], by


def _range(a: npt.ArrayLike) -> tuple[float, float]:
    v = np.asarray(a, np.float64)
    return (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)


def _irange(a: npt.NDArray[np.integer[Any]]) -> tuple[int, int]:
    return (int(a.min()), int(a.max())) if a.size else (0, 0)


def quantise_layer(
    spec: SpeckLayerSpec, destinations: tuple[Destination, ...], ticks_per_step: float, bits: tuple[int, int]
) -> tuple[CoreLayer, LayerReport]:
    """One float layer as a :class:`CoreLayer` (module docstring) and its report (core filled in later)."""
    weight_bits, state_bits = bits
    if not spec.threshold > 0:
        raise ExportError(spec.name, f"threshold {spec.threshold} is not > 0")
    s, by = layer_scale(spec, weight_bits, state_bits)
    weights = _round(spec.weight, s, weight_bits).astype(np.int8)
    high = int(min(max(MIN_THRESHOLD, round(spec.threshold * s)), STATE_MAX))
    bias: npt.NDArray[np.int16] | None = None
    bias_range, bias_zeroed = None, 0
    if spec.bias is not None:
        per_tick = np.asarray(spec.bias, np.float64) / (ticks_per_step if BIAS_PER_TICK else 1.0)
        bias = np.clip(np.round(per_tick * s), STATE_MIN, STATE_MAX).astype(np.int16)
        bias_range = _irange(bias)
        bias_zeroed = int(np.count_nonzero((bias == 0) & (per_tick != 0)))
    layer = CoreLayer(
        spec.name, spec.input_shape, weights, threshold_high=high, threshold_low=-high, bias=bias,
        stride=spec.stride, padding=spec.padding, leak=bool(bias is not None and bias.any()),
        destinations=destinations,
    )  # fmt: skip
    report = LayerReport(
        name=spec.name, core=-1, scale=s, limited_by=by, weights=int(weights.size),
        weights_zeroed=int(np.count_nonzero((weights == 0) & (np.asarray(spec.weight) != 0))),
        weight_range_float=_range(spec.weight), weight_range_int=_irange(weights),
        threshold_float=float(spec.threshold), threshold_high=high, threshold_low=-high,
        bias_range_float=None if spec.bias is None else _range(spec.bias), bias_range_int=bias_range,
        bias_zeroed=bias_zeroed,
    )  # fmt: skip
    return layer, report


# --- the chain ------------------------------------------------------------------------------------


def _check_chain(layers: Sequence[SpeckLayerSpec], input_spec: InputSpec, labels: Sequence[str]) -> None:
    """Each layer's input is the previous output after pooling; the last layer has one channel per label."""
    if not layers:
        raise ExportError(None, "no layers to export")
    shape = input_spec.shape
    for spec in layers:
        if tuple(spec.input_shape) != shape:
            raise ExportError(spec.name, f"input_shape {tuple(spec.input_shape)} is not {shape}, what it receives")
        f, oh, ow = spec.output_shape()
        shape = (f, oh // spec.pool_after, ow // spec.pool_after)
    if layers[-1].out_channels != len(labels):
        raise ExportError(layers[-1].name, f"has {layers[-1].out_channels} output channels for {len(labels)} labels")


def _destinations(i: int, layers: Sequence[SpeckLayerSpec], readout: bool) -> tuple[Destination, ...]:
    pooling = layers[i].pool_after
    if i + 1 < len(layers):
        return (Destination(i + 1, pooling=pooling),)
    return (Destination(READOUT, pooling=pooling),) if readout else ()


def export(
    layers: Sequence[SpeckLayerSpec],
    input_spec: InputSpec,
    labels: Sequence[str],
    *,
    weight_bits: int = WEIGHT_BITS,
    state_bits: int = STATE_BITS,
    slow_clock_hz: float = 1000.0,
) -> ExportResult:
    """Quantise ``layers`` and chain them into a validated, mapped :class:`ChipConfig` (module docstring).

    :class:`ExportError` (a ``ValueError``) names the layer when the chain is inconsistent, a hardware
    limit is broken or the net does not fit the cores.
    """
    if not (2 <= weight_bits <= WEIGHT_BITS and 2 <= state_bits <= STATE_BITS):
        raise ValueError(f"weight_bits {weight_bits} / state_bits {state_bits}: at most {WEIGHT_BITS} / {STATE_BITS}")
    _check_chain(layers, input_spec, labels)
    readout = len(labels) <= MAX_LABELS
    ticks_per_step = input_spec.step_us * slow_clock_hz / 1e6
    try:
        pairs = [
            quantise_layer(spec, _destinations(i, layers, readout), ticks_per_step, (weight_bits, state_bits))
            for i, spec in enumerate(layers)
        ]
        width, height = input_spec.sensor
        dvs = DvsConfig(
            width=width, height=height, polarity="both", pooling_x=input_spec.downsample,
            pooling_y=input_spec.downsample, destinations=(Destination(0),),
        )  # fmt: skip
        readout_cfg = ReadoutConfig(address_mode=READOUT_MODE_CHANNELS, average=1, labels=tuple(labels) * readout)
        config = ChipConfig(tuple(p[0] for p in pairs), dvs=dvs, readout=readout_cfg, slow_clock_hz=slow_clock_hz)
    except ConfigLimitError as e:
        raise ExportError(_layer_of(e.where, layers), str(e)) from e
    try:
        mapping = map_layers(config)
    except MappingError as e:
        first = next(iter(e.reasons))
        raise ExportError(layers[first].name, "does not fit the cores: " + "; ".join(e.reasons.values())) from e
    report = tuple(_with_core(p[1], core) for p, core in zip(pairs, mapping.cores, strict=True))
    return ExportResult(config, report)


def _layer_of(where: str, layers: Sequence[SpeckLayerSpec]) -> str | None:
    """The layer a :class:`ConfigLimitError` is about (its ``where`` quotes the name), if any."""
    return next((spec.name for spec in layers if f"{spec.name!r}" in where), None)


def _with_core(report: LayerReport, core: int) -> LayerReport:
    return LayerReport(**{**asdict(report), "core": core})


# --- files ----------------------------------------------------------------------------------------


def _sidecar(path_json: Path, suffix: str) -> Path:
    return path_json.with_name(path_json.stem + suffix)


def save_model(
    result: ExportResult,
    path_json: str | Path,
    input_scorer: tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]] | None,
    meta: dict[str, Any],
) -> None:
    """Write the config (``save_config``: ``<name>.json`` + ``<name>.npz``), ``<name>.meta.json`` (``meta``
    and the export report) and, given ``(w1, w2)`` of the input-mask TA MLP, ``<name>.scorer.npz``
    (an old scorer beside the file is removed when none is given: the service would load it)."""
    path_json = Path(path_json)
    scorer_path = _sidecar(path_json, SCORER_SUFFIX)
    if input_scorer is not None:
        w1, w2 = (np.asarray(w, np.float64) for w in input_scorer)
        TemporalAttentionScorer(w1, w2)  # validates the shapes
    save_config(result.config, path_json)
    doc = {"meta": meta, "export": result.as_json()}
    _sidecar(path_json, META_SUFFIX).write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    if input_scorer is not None:
        with scorer_path.open("wb") as f:
            np.savez(f, w1=w1, w2=w2)
    elif scorer_path.exists():
        scorer_path.unlink()


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_scorer(path_json: str | Path) -> TemporalAttentionScorer | None:
    """The input-mask scorer saved beside ``path_json`` by :func:`save_model`, or ``None`` if there is none."""
    path = _sidecar(Path(path_json), SCORER_SUFFIX)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return TemporalAttentionScorer(npz["w1"].astype(np.float64), npz["w2"].astype(np.float64))


# --- float vs quantised ---------------------------------------------------------------------------


class SteppedLayer(NamedTuple):
    """One layer of the time-stepped M-IF net, float or integer (same code for both)."""

    weight: F64
    bias_per_step: F64 | None
    stride: int
    padding: int
    threshold: float
    low: float
    pool_after: int
    integer: bool


class FloatVsQuantised(NamedTuple):
    """Predictions (argmax of the output spike counts; −1 when none or tied) and spikes per layer."""

    agreement: float
    float_predictions: I64
    quantised_predictions: I64
    float_spikes: I64
    """``[S, L]`` spikes per sample and layer."""
    quantised_spikes: I64


def _conv(x: F64, weight: F64, stride: int, padding: int) -> F64:
    """``x`` [B, c, h, w] ⋆ ``weight`` [f, c, k, k] → [B, f, oh, ow]."""
    k = weight.shape[-1]
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (padded.shape[2] - k) // stride + 1, (padded.shape[3] - k) // stride + 1
    windows = sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::stride, ::stride][:, :, :oh, :ow]
    return np.einsum("bcyxij,fcij->bfyx", windows, weight, optimize=True)


def _sum_pool(x: F64, p: int) -> F64:
    if p == 1:
        return x
    b, c, h, w = x.shape
    h, w = h // p * p, w // p * p
    return x[:, :, :h, :w].reshape(b, c, h // p, p, w // p, p).sum(axis=(3, 5))


def run_stepped(layers: Sequence[SteppedLayer], frames: npt.ArrayLike) -> tuple[F64, I64]:
    """Run ``frames`` [S, T, c, h, w] (event counts per bin) through the net: M-IF, ``spikes = ⌊v/θ⌋``
    for ``v ≥ θ``, reset by subtraction, membrane clamped at ``low`` (and int16 for integer layers).
    Returns the output counts ``[S, f]`` summed over time and the spikes per sample and layer ``[S, L]``."""
    x_all = np.asarray(frames, np.float64)
    s, t = x_all.shape[:2]
    v: list[F64 | None] = [None] * len(layers)
    spikes = np.zeros((s, len(layers)), np.int64)
    out: F64 | None = None
    for step in range(t):
        x = x_all[:, step]
        for i, layer in enumerate(layers):
            current = _conv(x, layer.weight, layer.stride, layer.padding)
            if layer.bias_per_step is not None:
                current += layer.bias_per_step[None, :, None, None]
            prev = v[i]
            state = current if prev is None else prev + current
            if layer.integer:
                state = np.clip(state, STATE_MIN, STATE_MAX)
            state = np.maximum(state, layer.low)
            fired = np.floor(np.maximum(state, 0.0) / layer.threshold)
            v[i] = state - fired * layer.threshold
            spikes[:, i] += fired.reshape(s, -1).sum(axis=1).astype(np.int64)
            x = _sum_pool(fired, layer.pool_after)
        out = x.reshape(s, -1) if out is None else out + x.reshape(s, -1)
    return (out if out is not None else np.zeros((s, 0))), spikes


def predictions(counts: npt.ArrayLike) -> I64:
    """Argmax per row; −1 when the row has no spike or its maximum is tied."""
    c = np.asarray(counts)
    best = np.argmax(c, axis=1)
    top = c.max(axis=1, initial=0)
    unique = (c == top[:, None]).sum(axis=1) == 1
    return np.where((top > 0) & unique, best, -1).astype(np.int64)


def float_vs_quantised(
    layers: Sequence[SpeckLayerSpec], result: ExportResult, frames: npt.ArrayLike, dt_us: int
) -> FloatVsQuantised:
    """Run ``frames`` [S, T, 2, h, w] (event counts per ``dt_us`` bin) through the float layers and
    through ``result``'s integer layers as the same time-stepped M-IF net (both clamped at −θ, as the
    chip is); report how often their predictions agree."""
    ticks_per_step = dt_us * result.config.slow_clock_hz / 1e6
    as_float = [
        SteppedLayer(
            np.asarray(spec.weight, np.float64), None if spec.bias is None else np.asarray(spec.bias, np.float64),
            spec.stride, spec.padding, float(spec.threshold), -float(spec.threshold), spec.pool_after, False,
        )
        for spec in layers
    ]  # fmt: skip
    as_int = [
        SteppedLayer(
            layer.weights.astype(np.float64),
            None if layer.bias is None else layer.bias.astype(np.float64) * ticks_per_step,
            layer.stride, layer.padding, float(layer.threshold_high), float(layer.threshold_low), spec.pool_after, True,
        )
        for layer, spec in zip(result.config.layers, layers, strict=True)
    ]  # fmt: skip
    float_out, float_spikes = run_stepped(as_float, frames)
    int_out, int_spikes = run_stepped(as_int, frames)
    pf, pq = predictions(float_out), predictions(int_out)
    agreement = float(np.mean(pf == pq)) if len(pf) else 1.0
    return FloatVsQuantised(agreement, pf, pq, float_spikes, int_spikes)


__all__ = [
    "ExportError", "ExportResult", "FloatVsQuantised", "LayerReport", "discretisation_scale", "export",
    "float_vs_quantised", "layer_scale", "load_scorer", "predictions", "quantise_layer", "run_stepped", "save_model",
]  # fmt: skip
