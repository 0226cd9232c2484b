"""A trained model on the emulated chip: accuracy, spikes, NASFR, power, energy, latency (paper Table 1).

Each sample (raw sensor events, time-ordered) runs through a fresh chip: the front end (noise filter
and DVS pre-processing, :func:`emulator.front_end.front_end_step`), the attention input mask when given
(:func:`emulator.attention.mask_step` on the DVS output, as :class:`services.stages.ChipStage` does),
then the cores (:func:`emulator.chip.cores_step`), bin by bin (``dt_us``) so that spikes and active
energy are known per time step. Classification:

* **chip**: the output layer's (the one routed to the readout, else the last) spike count per channel
  over the sample; argmax; no spike or a tied maximum counts as wrong (:data:`NO_PREDICTION`);
* **readout**: the majority of the readout core's passed decisions (class k → channel k − 1); ties
  or no passed decision count as wrong.

Metrics (attention-snn.md), ``c(l, t, s)`` the spikes of layer ``l`` in bin ``t`` of sample ``s``,
``N_l`` the neurons of layer ``l`` (``f · oh · ow`` from the config, the output layer included)::

    NSFR(t, s) = Σ_l c(l, t, s) / Σ_l N_l
    NASFR      = Σ_{s,t,l} c(l, t, s) / (Σ_s T_s · Σ_l N_l),     T_s = ⌊duration_s / dt⌋ + 1 bins

(``Σ_s T_s = S · T`` when every sample spans ``T`` bins.) Power is the processor's (IO + RAM + LOGIC),
comparable with the paper's Table 1 (resting 0.42 mW): resting + active energy over the samples'
total duration (first to last event). Energy per sample: the processor's resting + active energy.
Latency: the modeled path latency to the readout (or the output layer), :mod:`emulator.latency`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from emulator.attention import EventRateScorer, MaskParams, Scorer, init_mask_state, mask_step
from emulator.chip import ChipParams, check_time_order, cores_step, init_chip
from emulator.config import READOUT, READOUT_ADDRESS, ChipConfig
from emulator.dvs import output_shape
from emulator.engine import init_state
from emulator.front_end import front_end_step
from emulator.noise import init_filter_state
from emulator.power import PROCESSOR_RAILS, RESTING_W, Rail
from emulator.readout import cycle_end_us, cycle_index, new_readout_state, readout_step
from proto.events import Events, Spikes, empty_spikes, make_events

NO_PREDICTION = -1
"""The prediction of a sample with no output spike or a tied maximum: always wrong."""
DEFAULT_DT_US = 30_000
"""Bin width for NSFR(t) and the power trace (``InputSpec.dt_us``'s default)."""
PROCESSOR_RESTING_W = sum(RESTING_W[r] for r in PROCESSOR_RAILS)
COLUMNS = (
    "acc_float", "acc_chip", "acc_readout", "spikes_per_sample", "nasfr", "kept_input", "power_resting_mw",
    "power_active_mw", "power_total_mw", "energy_per_sample_uj", "latency_us",
)  # fmt: skip
"""The columns of :func:`format_table` and of each model in :func:`as_json`, in order."""
_HEADERS = ("acc float", "acc chip", "acc readout", "spikes/sample", "NASFR", "kept in", "P rest mW",
            "P act mW", "P tot mW", "E/sample µJ", "latency µs")  # fmt: skip

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class SampleResult(NamedTuple):
    """One sample on the chip; per-bin arrays have one row per ``dt_us`` bin from the first event."""

    label: int
    prediction: int
    readout_prediction: int
    input_events: int
    dvs_events: int
    """Events out of the DVS layer (after the noise filter and pre-processing)."""
    kept_events: int
    """Events the cores received (after the input mask)."""
    windows: int
    windows_masked: int
    spikes: I64
    """``[L]`` spikes per core layer."""
    synops: int
    active_j: F64
    """``[5]`` active energy per rail (:class:`Rail` order)."""
    duration_s: float
    spikes_per_bin: I64
    """``[T, L]``."""
    active_j_per_bin: F64
    """``[T]`` processor active energy."""
    wall_s: float


@dataclass(frozen=True)
class ChipEvaluation:
    """Per-sample results of one model on the chip and the Table 1 metrics computed from them."""

    layer_names: tuple[str, ...]
    neurons: tuple[int, ...]
    dt_us: int
    path_latency_ns: tuple[int, ...]
    output_latency_ns: int
    samples: tuple[SampleResult, ...]
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.samples)

    def _mean(self, values: Iterable[float]) -> float:
        v = list(values)
        return float(np.mean(v)) if v else 0.0

    @property
    def accuracy(self) -> float:
        return self._mean(s.prediction == s.label for s in self.samples)

    @property
    def readout_accuracy(self) -> float:
        return self._mean(s.readout_prediction == s.label for s in self.samples)

    @property
    def no_prediction(self) -> int:
        """Samples with no output spike or a tied maximum."""
        return sum(s.prediction == NO_PREDICTION for s in self.samples)

    @property
    def spikes_per_sample(self) -> float:
        return self._mean(int(s.spikes.sum()) for s in self.samples)

    @property
    def spikes_per_layer(self) -> dict[str, float]:
        total = np.sum([s.spikes for s in self.samples], axis=0) if self.samples else np.zeros(len(self.neurons))
        return {name: float(v) / max(self.n, 1) for name, v in zip(self.layer_names, total, strict=True)}

    @property
    def synops_per_sample(self) -> float:
        return self._mean(s.synops for s in self.samples)

    @property
    def nasfr(self) -> float:
        bins = sum(len(s.spikes_per_bin) for s in self.samples)
        spikes = sum(int(s.spikes.sum()) for s in self.samples)
        return spikes / (bins * sum(self.neurons)) if bins else 0.0

    @property
    def kept_input(self) -> float:
        """Events kept by the input mask / events out of the DVS layer (1 without a mask)."""
        dvs = sum(s.dvs_events for s in self.samples)
        return sum(s.kept_events for s in self.samples) / dvs if dvs else 1.0

    @property
    def kept_windows(self) -> float:
        windows = sum(s.windows for s in self.samples)
        return 1.0 - sum(s.windows_masked for s in self.samples) / windows if windows else 1.0

    @property
    def duration_s(self) -> float:
        return float(sum(s.duration_s for s in self.samples))

    @property
    def power_resting_mw(self) -> float:
        return PROCESSOR_RESTING_W * 1e3

    @property
    def power_active_mw(self) -> float:
        active = sum(float(s.active_j[list(PROCESSOR_RAILS)].sum()) for s in self.samples)
        return active / self.duration_s * 1e3 if self.duration_s > 0 else 0.0

    @property
    def power_total_mw(self) -> float:
        return self.power_resting_mw + self.power_active_mw

    @property
    def energy_per_sample_uj(self) -> float:
        per = (
            PROCESSOR_RESTING_W * s.duration_s + float(s.active_j[list(PROCESSOR_RAILS)].sum()) for s in self.samples
        )
        return self._mean(per) * 1e6

    @property
    def latency_us(self) -> float:
        return self.output_latency_ns / 1e3

    @property
    def events_per_s(self) -> float:
        wall = sum(s.wall_s for s in self.samples)
        return sum(s.input_events for s in self.samples) / wall if wall > 0 else 0.0

    def nsfr(self, sample: int) -> F64:
        """NSFR(t) of one sample, one value per bin."""
        spikes: F64 = self.samples[sample].spikes_per_bin.sum(axis=1) / sum(self.neurons)
        return spikes

    def row(self, acc_float: float | None = None) -> dict[str, float | None]:
        """The :data:`COLUMNS` of this model."""
        values = {name: getattr(self, name) for name in COLUMNS if name not in ("acc_float", "acc_chip", "acc_readout")}
        return {"acc_float": acc_float, "acc_chip": self.accuracy, "acc_readout": self.readout_accuracy, **values}


# --- running -------------------------------------------------------------------------------------


def output_layer(config: ChipConfig) -> int:
    """The layer routed to the readout, else the last layer."""
    for i, layer in enumerate(config.layers):
        if any(d.layer == READOUT for d in layer.destinations):
            return i
    return len(config.layers) - 1


def _argmax_unique(counts: I64) -> int:
    if counts.size == 0 or counts.max() <= 0 or np.count_nonzero(counts == counts.max()) > 1:
        return NO_PREDICTION
    return int(np.argmax(counts))


def _readout_prediction(config: ChipConfig, readout_spikes: list[Spikes], t0: int, t_last: int) -> int:
    """Majority of the passed decisions of every slow-clock cycle up to the one holding ``t_last``."""
    if not config.readout.labels:
        return NO_PREDICTION
    hz = config.slow_clock_hz
    spikes = np.concatenate(readout_spikes) if readout_spikes else empty_spikes()
    t_end = cycle_end_us(cycle_index(t_last, hz), hz)
    decisions, _ = readout_step(spikes, new_readout_state(config.readout, hz, t0), config.readout, hz, t_end)
    passed = decisions["class_index"][decisions["passed"]].astype(np.int64) - 1
    return _argmax_unique(np.bincount(passed, minlength=1)) if len(passed) else NO_PREDICTION


def run_sample(
    events: Events, label: int, params: ChipParams, mask: MaskParams | None, scorer: Scorer, dt_us: int
) -> SampleResult:
    """One sample through a fresh chip (module docstring)."""
    started = time.perf_counter()
    cfg = params.config
    n_layers, out = len(cfg.layers), output_layer(cfg)
    if len(events) == 0:
        zero = np.zeros(n_layers, np.int64)
        empty = (np.zeros((0, n_layers), np.int64), np.zeros(0))
        return SampleResult(label, NO_PREDICTION, NO_PREDICTION, 0, 0, 0, 0, 0, zero, 0, np.zeros(len(Rail)), 0.0,
                            *empty, time.perf_counter() - started)  # fmt: skip
    t0, t_last = int(events["t"][0]), int(events["t"][-1])
    check_time_order(events, t0)
    _, pre, front = front_end_step(init_filter_state(cfg.dvs.width, cfg.dvs.height), events, cfg)
    kept, windows, masked = pre, 0, 0
    if mask is not None:
        _, height, width = output_shape(cfg.dvs)
        _, kept, mc = mask_step(init_mask_state(mask, t0, width, height), pre, mask, scorer)
        windows, masked = mc.windows, mc.windows_masked
    n_bins = (t_last - t0) // dt_us + 1
    inside = (events["x"] < cfg.dvs.width) & (events["y"] < cfg.dvs.height) & cfg.dvs.pass_sensor_events
    dvs_in = np.bincount(((events["t"][inside] - t0) // dt_us).astype(np.int64), minlength=n_bins)
    bounds = np.searchsorted(kept["t"], t0 + dt_us * np.arange(n_bins + 1, dtype=np.uint64))
    bounds[-1] = len(kept)
    engine = init_state(params.engine, t0)
    spikes_per_bin = np.zeros((n_bins, n_layers), np.int64)
    active_per_bin, active = np.zeros(n_bins), np.zeros(len(Rail))
    channels, synops, to_readout = np.zeros(cfg.layers[out].out_channels, np.int64), 0, []
    for b in np.flatnonzero((np.diff(bounds) > 0) | (dvs_in > 0)):
        engine, spikes, counts, joules = cores_step(engine, kept[bounds[b] : bounds[b + 1]], params, int(dvs_in[b]))
        spikes_per_bin[b] = counts.spikes
        synops += int(counts.synops.sum())
        rails = np.array([joules.get(r, 0.0) for r in Rail])
        active += rails
        active_per_bin[b] = rails[list(PROCESSOR_RAILS)].sum()
        channels += np.bincount(spikes["channel"][spikes["layer"] == out], minlength=len(channels))[: len(channels)]
        to_readout.append(spikes[spikes["layer"] == READOUT_ADDRESS])
    return SampleResult(
        label=int(label), prediction=_argmax_unique(channels),
        readout_prediction=_readout_prediction(cfg, to_readout, t0, t_last), input_events=front.input_events,
        dvs_events=len(pre), kept_events=len(kept), windows=windows, windows_masked=masked,
        spikes=spikes_per_bin.sum(axis=0), synops=synops, active_j=active, duration_s=(t_last - t0) / 1e6,
        spikes_per_bin=spikes_per_bin, active_j_per_bin=active_per_bin, wall_s=time.perf_counter() - started,
    )  # fmt: skip


def warm_up(params: ChipParams, mask: MaskParams | None, scorer: Scorer) -> None:
    """Load (or compile) the numba code of the mask and the engine on a throwaway one-event sample."""
    run_sample(make_events([0], [0], [0], [1]), 0, params, mask, scorer, DEFAULT_DT_US)


def evaluate_on_chip(
    config: ChipConfig,
    samples: Iterable[tuple[Events, int]],
    *,
    mask: MaskParams | None,
    scorer: Scorer | None,
    progress: bool = True,
    dt_us: int = DEFAULT_DT_US,
) -> ChipEvaluation:
    """Run every ``(events, label)`` through a fresh chip (module docstring); ``scorer`` defaults to
    :class:`EventRateScorer` when a ``mask`` is given. Wall time excludes loading the numba code."""
    from tqdm import tqdm

    if dt_us < 1:
        raise ValueError(f"dt_us: must be >= 1, got {dt_us}")
    params = init_chip(config)[0]
    use_scorer: Scorer = scorer if scorer is not None else EventRateScorer()
    warm_up(params, mask, use_scorer)
    started = time.perf_counter()
    results = tuple(
        run_sample(events, label, params, mask, use_scorer, dt_us)
        for events, label in tqdm(samples, desc="chip", unit="sample", disable=not progress, leave=False)
    )
    out = output_layer(config)
    return ChipEvaluation(
        layer_names=tuple(layer.name for layer in config.layers),
        neurons=tuple(int(np.prod(layer.output_shape)) for layer in config.layers),
        dt_us=dt_us,
        path_latency_ns=tuple(int(ns) for ns in params.layer_latency_ns),
        output_latency_ns=params.readout_latency_ns if config.readout.labels else int(params.layer_latency_ns[out]),
        samples=results,
        wall_s=time.perf_counter() - started,
    )


# --- reporting -----------------------------------------------------------------------------------


def as_json(evaluations: dict[str, ChipEvaluation], float_acc: dict[str, float] | None = None) -> dict[str, Any]:
    """Per model: every :data:`COLUMNS` value plus samples, spikes per layer, per-layer latency and speed."""
    float_acc = float_acc or {}
    return {
        name: {
            **ev.row(float_acc.get(name)),
            "samples": ev.n,
            "no_prediction": ev.no_prediction,
            "kept_windows": ev.kept_windows,
            "spikes_per_layer": ev.spikes_per_layer,
            "path_latency_ns": dict(zip(ev.layer_names, ev.path_latency_ns, strict=True)),
            "synops_per_sample": ev.synops_per_sample,
            "wall_s": ev.wall_s,
            "events_per_s": ev.events_per_s,
        }
        for name, ev in evaluations.items()
    }


def _cell(name: str, value: float | None) -> str:
    if value is None:
        return "—"
    if name.startswith("acc") or name == "kept_input":
        return f"{100 * value:.1f}%"
    if name == "nasfr":
        return f"{value:.4f}"
    if name == "spikes_per_sample":
        return f"{value:.3g}"
    return f"{value:.2f}"


def format_table(evaluations: dict[str, ChipEvaluation], float_acc: dict[str, float] | None = None) -> str:
    """A table like the paper's Table 1: one row per model, the :data:`COLUMNS`."""
    rows: list[tuple[str, ...]] = [("model", *_HEADERS)]
    for name, values in as_json(evaluations, float_acc).items():
        rows.append((name, *(_cell(c, values[c]) for c in COLUMNS)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def plots(evaluations: dict[str, ChipEvaluation], out_dir: str | Path, traces: int = 5) -> list[Path]:
    """``nsfr.png`` (NSFR(t) per model: the mean over samples, bold, and ``traces`` single samples) and
    ``power.png`` (the processor's active power over time of each model's first sample); returns the paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (name, ev) in enumerate(evaluations.items()):
        colour = f"C{i}"
        series = [ev.nsfr(j) for j in range(ev.n)]
        for s in series[:traces]:
            ax.plot(np.arange(len(s)), s, color=colour, alpha=0.25, linewidth=0.8)
        if series:
            padded = np.full((len(series), max(len(s) for s in series)), np.nan)
            for j, s in enumerate(series):
                padded[j, : len(s)] = s
            counts = np.sum(~np.isnan(padded), axis=0)
            mean = np.nansum(padded, axis=0) / np.maximum(counts, 1)
            ax.plot(np.arange(len(mean)), mean, color=colour, linewidth=2, label=f"{name} (mean)")
    ax.set(xlabel="time step (bin of the sample)", ylabel="NSFR", title="Network spike firing rate over time")
    ax.legend()
    paths = [out / "nsfr.png", out / "power.png"]
    fig.savefig(paths[0], dpi=100, bbox_inches="tight")
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (name, ev) in enumerate(evaluations.items()):
        if ev.n:
            mw = ev.samples[0].active_j_per_bin / (ev.dt_us / 1e6) * 1e3
            ax.step(np.arange(len(mw)) * ev.dt_us / 1e3, mw, where="post", color=f"C{i}", label=f"{name} active")
    ax.axhline(PROCESSOR_RESTING_W * 1e3, color="grey", linestyle="--", label="resting")
    ax.set(xlabel="time (ms)", ylabel="processor power (mW)", title="Active power, first sample")
    ax.legend()
    fig.savefig(paths[1], dpi=100, bbox_inches="tight")
    return paths


__all__ = [
    "COLUMNS", "NO_PREDICTION", "ChipEvaluation", "SampleResult", "as_json", "evaluate_on_chip", "format_table",
    "output_layer", "plots", "run_sample",
]  # fmt: skip
