"""The bundled defaults: names that work wherever a chip config or a recording path is accepted.

* ``default-dynamic`` and ``default-vanilla`` (chip configs): the trained attention-based dynamic
  gesture net (with its input-mask scorer) and its vanilla twin, shipped in ``services/bundled/``
  (made by ``speck-edge make-defaults``, see README). ``default`` is ``default-dynamic``; before
  the bundle exists it is the paper's 5-core Speck net with random weights
  (:func:`emulator.default_net.speck_net`).
* ``default-recording``: the bundled short synthetic gesture recording. Without a bundle, a
  deterministic synthetic rotating arm (128 × 128, 4 s, ~50 k events/s) generated on first use into
  the cache directory (``$SPECK_EDGE_CACHE``, systemd's ``$CACHE_DIRECTORY``, or
  ``~/.cache/speck-edge``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emulator.config import ChipConfig
from emulator.default_net import speck_net
from proto.events import Events, make_events

DEFAULT_CONFIG = "default"
DEFAULT_RECORDING = "default-recording"
BUNDLED = Path(__file__).parent / "bundled"
"""Where the bundled model and recording live (package data)."""
MODEL_NAMES = ("default-dynamic", "default-vanilla")
RECORDING_VERSION = 1
"""Bumped when the generator changes, so a stale cached file is never replayed."""
SIDE = 128
DURATION_US = 4_000_000
STEP_US = 1000
"""The arm advances once per ms."""
EDGE_EVENTS = 40
"""Events per ms along the moving edge (≈ 40 k events/s)."""
NOISE_EVENTS = 10
"""Background events per ms (≈ 10 k events/s)."""
TURNS_PER_S = 0.75


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    for key in ("SPECK_EDGE_CACHE", "CACHE_DIRECTORY"):
        if env.get(key):
            return Path(env[key].split(":")[0])
    return Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "speck-edge"


def synthetic_events(seed: int = 0) -> Events:
    """The default recording's events (deterministic for a seed), time-ordered."""
    rng = np.random.default_rng(seed)
    steps = DURATION_US // STEP_US
    t = np.repeat(np.arange(steps, dtype=np.uint64) * STEP_US, EDGE_EVENTS + NOISE_EVENTS)
    t += rng.integers(0, STEP_US, t.size).astype(np.uint64)
    angle = 2 * np.pi * TURNS_PER_S * t.astype(np.float64) / 1e6
    radius = rng.uniform(8, SIDE / 2 - 4, t.size)
    side = rng.integers(0, 2, t.size)  # ahead of the arm (ON) or behind it (OFF)
    offset = np.where(side == 1, 1.5, -1.5) * rng.uniform(0.2, 1.0, t.size)
    x = SIDE / 2 + radius * np.cos(angle) - offset * np.sin(angle)
    y = SIDE / 2 + radius * np.sin(angle) + offset * np.cos(angle)
    noise = (np.arange(t.size) % (EDGE_EVENTS + NOISE_EVENTS)) >= EDGE_EVENTS
    x = np.where(noise, rng.integers(0, SIDE, t.size), x)
    y = np.where(noise, rng.integers(0, SIDE, t.size), y)
    p = np.where(noise, rng.integers(0, 2, t.size), side)
    order = np.argsort(t, kind="stable")
    xs = np.clip(np.round(x), 0, SIDE - 1).astype(np.uint16)
    ys = np.clip(np.round(y), 0, SIDE - 1).astype(np.uint16)
    return make_events(t[order], xs[order], ys[order], p[order].astype(np.uint8))


def default_recording(environ: Mapping[str, str] | None = None) -> Path:
    """The default recording: the bundled one, else the synthetic arm generated into the cache."""
    bundled = BUNDLED / f"{DEFAULT_RECORDING}.npz"
    if bundled.exists():
        return bundled
    path = cache_dir(environ) / f"default-recording-v{RECORDING_VERSION}.npz"
    if not path.exists():
        from emulator.io.speck_npz import write_npz  # (only where a recording is made)

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        write_npz(tmp, synthetic_events(), width=SIDE, height=SIDE, time_origin="0",
                  header={"source": "speck-edge default-recording (synthetic rotating arm)"})  # fmt: skip
        tmp.replace(path)  # atomic: concurrent first uses never see half a file
    return path


def resolve_recording(source: str, environ: Mapping[str, str] | None = None) -> str:
    """``source``, or the default recording's path for ``default-recording``."""
    return str(default_recording(environ)) if source == DEFAULT_RECORDING else source


def model_path(name: str) -> Path | None:
    """The chip config JSON a model name stands for: a bundled name, or ``name`` as a path; None for
    ``default`` when no model is bundled (the random-weight net then)."""
    if name == DEFAULT_CONFIG:
        name = MODEL_NAMES[0]
        if not (BUNDLED / f"{name}.json").exists():
            return None
    if name in MODEL_NAMES:
        path = BUNDLED / f"{name}.json"
        if not path.exists():
            raise FileNotFoundError(f"{name}: no bundled model at {path} (make it with `speck-edge make-defaults`)")
        return path
    return Path(name)


def resolve_chip_config(name: str) -> ChipConfig:
    """The chip config ``name`` stands for (a bundled name or a chip config file)."""
    path = model_path(name)
    if path is None:
        return speck_net()
    from emulator.config_io import load_config

    return load_config(path)


def model_meta(name: str) -> dict[str, Any]:
    """What export recorded beside a model (``<name>.meta.json``): training data, float accuracy, the
    input mask's window and history; empty when there is none."""
    path = model_path(name)
    meta = path.with_suffix(".meta.json") if path is not None else None
    if meta is None or not meta.exists():
        return {}
    doc = json.loads(meta.read_text())
    return dict(doc.get("meta", doc))


def load_input_scorer(name: str) -> Any:
    """The model's trained input-mask scorer (saved beside it by ``speck-edge export``), or None."""
    path = model_path(name)
    if path is None:
        return None
    from training.export import load_scorer  # numpy only: no torch

    return load_scorer(path)


def model_mask(name: str, window_us: int, history: int) -> tuple[int, int, Any]:
    """``(window_us, history, scorer)`` of the input mask a model runs with: a trained scorer judges the
    windows it was trained on, so its window and history come with it (``window_us``/``history`` are
    the settings, used when the model has no scorer)."""
    scorer = load_input_scorer(name)
    if scorer is None:
        return window_us, history, None
    meta = model_meta(name)
    return int(meta.get("mask_window_us") or window_us), int(meta.get("mask_history") or scorer.w1.shape[1]), scorer
