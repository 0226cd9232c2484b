"""Synthetic DVS128 Gesture recordings: rendered limbs turned into events by a DVS pixel model.

A scene is a reflectance image ``R`` (128 × 128): a static textured background with a torso and a
head painted in, and moving limbs drawn on top — an arm is a thick segment (capsule) from a shoulder
to the hand, a hand is a disk. Edges are soft (a linear ramp of ``EDGE_PX`` each side), so sub-pixel
motion changes intensity smoothly. The camera faces the subject: the subject's right side is the
image's left (``RIGHT_SIDE = -1`` in x).

Pixel model, per pixel and per 1 ms step (``STEP_US``), with ``L = log(lux · R + DARK)``:

* a reference level ``ref`` (started at ``L`` plus a random fraction of a threshold);
* while ``L − ref ≥ C_on`` an ON event, ``ref += C_on``; while ``ref − L ≥ C_off`` an OFF event,
  ``ref −= C_off`` (several per step allowed); ``C_on``, ``C_off`` ~ N(C0, σ) per pixel (mismatch);
* each event's time is where the linearly interpolated ``L`` crosses the level within the step;
  an event closer than ``REFRACTORY_US`` to the pixel's last one is delayed to the end of the
  refractory period, and left for a later step if that falls past this one;
* background activity: Poisson per pixel at the subject's ``noise_hz`` (mostly ON, like leak events);
  shot noise: Poisson at ``SHOT_NOISE_HZ · DARK / (lux · R + DARK)`` (darker pixels are noisier).
  Noise events do not move ``ref``.

Only pixels whose limb coverage changed in a step are re-rendered (numba), so a 1 s sample costs
a few tens of ms. Every random draw comes from the arguments' seeds.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from emulator.default_net import GESTURE_LABELS
from emulator.io.base import Label
from emulator.io.speck_npz import write_npz
from proto.events import Events, concat_events, empty_events, make_events

SENSOR = 128
"""DVS128: 128 × 128 pixels."""
STEP_US = 1000
"""Rendering time step (1 ms): limbs move < 0.2 px per step, well under the soft edge."""
EDGE_PX = 1.0
"""Half-width of the soft edge ramp (optical blur), in pixels."""
DARK = 0.02
"""Photoreceptor dark current in reflectance units: compresses contrast in dim light."""
REFRACTORY_US = 200
"""Per-pixel refractory period (a typical DVS128 bias setting is 0.1–1 ms)."""
C_MIN = 0.05
"""Thresholds drawn below this are clipped: a real pixel never fires on nothing."""
SHOT_NOISE_HZ = 0.3
"""Shot-noise rate of a pixel that sees only dark current (per second)."""
BA_ON_FRACTION = 0.8
"""Background-activity (leak) events are mostly ON."""
GAP_US = 200_000
"""Silence between two samples written one after another into a subject's recording."""
RIGHT_SIDE = -1.0
"""x direction of the subject's right side in the image (the camera faces the subject)."""
SHAPE_FIELDS = 6
"""A shape row: x0, y0, x1, y1, radius, reflectance (a disk has x1 = x0, y1 = y0)."""
HAND_REFLECTANCE = 0.75
ARM_REFLECTANCE = 0.5
TORSO_REFLECTANCE = 0.32
HEAD_REFLECTANCE = 0.6
BACKGROUND_RANGE = (0.08, 0.3)
"""Background reflectance spans this range: darker than the skin and the sleeves."""
EVENTS_PER_US_CAPACITY = 0.3
"""First guess of the event buffer size per µs of sample (300 k ev/s; doubled when too small)."""

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Subject:
    """One person in one room: body geometry, how they move, lighting and the sensor's noise."""

    seed: int
    scale: float  # body size factor (1 = shoulders 51 px apart)
    dx: float  # body position offset from the image centre, px
    dy: float
    speed: float  # motion frequency factor
    amplitude: float  # motion amplitude factor
    lux: float  # global brightness (relative); low light compresses contrast → fewer events
    contrast: float  # scene reflectance contrast around its mean
    noise_hz: float  # background activity per pixel, Hz
    c0: float  # mean contrast threshold (log units)
    c_sigma: float  # per-pixel threshold mismatch (std, log units)

    @property
    def name(self) -> str:
        return f"subject_{self.seed:08x}"


def subjects(n: int, seed: int) -> list[Subject]:
    """``n`` different subjects drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return [
        Subject(
            seed=int(rng.integers(1 << 32)),
            scale=float(rng.uniform(0.85, 1.15)),
            dx=float(rng.uniform(-10, 10)),
            dy=float(rng.uniform(-6, 8)),
            speed=float(rng.uniform(0.75, 1.3)),
            amplitude=float(rng.uniform(0.8, 1.2)),
            lux=float(rng.uniform(0.3, 1.5)),
            contrast=float(rng.uniform(0.7, 1.2)),
            noise_hz=float(rng.uniform(0.05, 0.5)),
            c0=float(rng.uniform(0.1, 0.2)),
            c_sigma=float(rng.uniform(0.02, 0.05)),
        )
        for _ in range(n)
    ]


# ---------------------------------------------------------------- motion


@dataclass(frozen=True)
class Body:
    """Where a subject's body is in the image: centre, shoulders and size (px)."""

    cx: float
    cy: float
    s: float

    def shoulder(self, side: float) -> tuple[float, float]:
        return self.cx + side * 16 * self.s, self.cy - 22 * self.s


BODY_SCALE = 1.6
"""Body units → px at ``Subject.scale`` 1: the upper body fills the frame, as in DVS128 Gesture."""
BODY_DROP_PX = 20
"""The body centre sits this far below the image centre (the head near the top, the hips cut off)."""


def _body(subject: Subject) -> Body:
    return Body(SENSOR / 2 + subject.dx, SENSOR / 2 + BODY_DROP_PX + subject.dy, BODY_SCALE * subject.scale)


Hands = tuple[Array, Array]
"""(right hand, left hand) positions, each (steps, 2)."""


def _rest(b: Body, side: float, n: int) -> Array:
    """A hand hanging at the side."""
    x, y = b.shoulder(side)
    return np.tile([x + side * 5 * b.s, y + 36 * b.s], (n, 1))


def _wave(b: Body, side: float, ph: Array, a: float) -> Array:
    x, y = b.shoulder(side)
    return np.stack([x + side * (10 + 10 * a * np.sin(ph)) * b.s, np.full_like(ph, y - 24 * b.s)], axis=1)


def _circle(b: Body, side: float, ph: Array, a: float, direction: float) -> Array:
    x, y = b.shoulder(side)
    cx, cy, r = x + side * 12 * b.s, y - 4 * b.s, 12 * a * b.s
    return np.stack([cx + r * np.cos(direction * ph), cy + r * np.sin(direction * ph)], axis=1)


def _clap(b: Body, ph: Array, a: float) -> Hands:
    half = (4 + 9 * a * (1 + np.cos(ph))) * b.s
    y = np.full_like(ph, b.cy - 6 * b.s)
    return np.stack([b.cx + RIGHT_SIDE * half, y], 1), np.stack([b.cx - RIGHT_SIDE * half, y], 1)


def _roll(b: Body, ph: Array, a: float) -> Hands:
    r = 8 * a * b.s
    c, s = r * np.cos(ph), r * np.sin(ph)
    cy = b.cy - 2 * b.s
    return np.stack([b.cx + c, cy + s], 1), np.stack([b.cx - c, cy - s], 1)


def _drums(b: Body, ph: Array, a: float) -> Hands:
    def hand(side: float, phase: float) -> Array:
        y = b.cy + (2 + 10 * a * np.sin(ph + phase)) * b.s
        return np.stack([np.full_like(ph, b.cx + side * 16 * b.s), y], 1)

    return hand(RIGHT_SIDE, 0.0), hand(-RIGHT_SIDE, np.pi)


def _guitar(b: Body, ph: Array, a: float) -> Hands:
    strum = np.stack([np.full_like(ph, b.cx + RIGHT_SIDE * 4 * b.s), b.cy + (14 + 10 * a * np.sin(ph)) * b.s], 1)
    neck = np.tile([b.cx - RIGHT_SIDE * 28 * b.s, b.cy - 12 * b.s], (len(ph), 1))
    return strum, neck


def _other(b: Body, t: Array, a: float, rng: np.random.Generator) -> Array:
    """A hand wandering irregularly: a sum of random slow sinusoids around a random point."""
    side = float(rng.choice([-1.0, 1.0]))
    x, y = b.shoulder(side)
    centre = np.array([x + side * rng.uniform(0, 20) * b.s, y + rng.uniform(-20, 20) * b.s])
    path = np.tile(centre, (len(t), 1))
    for _ in range(4):
        f, phase = rng.uniform(0.3, 2.0), rng.uniform(0, 2 * np.pi, 2)
        amp = rng.uniform(2, 8) * a * b.s
        path += amp * np.stack([np.sin(2 * np.pi * f * t + phase[0]), np.cos(2 * np.pi * f * t + phase[1])], 1)
    return path


BASE_HZ = (1.5, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.5, 2.5, 3.0, 0.0)
"""Motion frequency of each class (Hz) before the subject's speed factor ('other' has its own)."""


def hand_paths(label: int, subject: Subject, t_s: Array, rng: np.random.Generator) -> Hands:
    """(right, left) hand positions at times ``t_s`` for gesture ``label``."""
    b = _body(subject)
    a = subject.amplitude * rng.uniform(0.9, 1.1)
    ph = 2 * np.pi * BASE_HZ[label] * subject.speed * rng.uniform(0.9, 1.1) * t_s + rng.uniform(0, 2 * np.pi)
    n = len(t_s)
    r, left = RIGHT_SIDE, -RIGHT_SIDE
    table: dict[int, Callable[[], Hands]] = {
        0: lambda: _clap(b, ph, a),
        1: lambda: (_wave(b, r, ph, a), _rest(b, left, n)),
        2: lambda: (_rest(b, r, n), _wave(b, left, ph, a)),
        3: lambda: (_circle(b, r, ph, a, 1.0), _rest(b, left, n)),
        4: lambda: (_circle(b, r, ph, a, -1.0), _rest(b, left, n)),
        5: lambda: (_rest(b, r, n), _circle(b, left, ph, a, 1.0)),
        6: lambda: (_rest(b, r, n), _circle(b, left, ph, a, -1.0)),
        7: lambda: _roll(b, ph, a),
        8: lambda: _drums(b, ph, a),
        9: lambda: _guitar(b, ph, a),
    }
    if label == len(GESTURE_LABELS) - 1:
        moving = _other(b, t_s * subject.speed, a, rng)
        return (moving, _rest(b, left, n)) if moving[0, 0] < b.cx else (_rest(b, r, n), moving)
    return table[label]()


def shape_track(label: int, subject: Subject, steps: int, rng: np.random.Generator) -> Array:
    """(steps, 4, SHAPE_FIELDS): right arm, left arm, right hand, left hand (drawn in that order)."""
    b = _body(subject)
    t_s: Array = np.arange(steps, dtype=np.float64) * (STEP_US * 1e-6)
    right, left = hand_paths(label, subject, t_s, rng)
    out = np.empty((steps, 4, SHAPE_FIELDS))
    for i, (side, hand) in enumerate(((RIGHT_SIDE, right), (-RIGHT_SIDE, left))):
        sx, sy = b.shoulder(side)
        shoulder = np.tile([sx, sy], (steps, 1))
        out[:, i] = np.column_stack([shoulder, hand, _full(steps, 3.5 * b.s), _full(steps, ARM_REFLECTANCE)])
        out[:, 2 + i] = np.column_stack([hand, hand, _full(steps, 5 * b.s), _full(steps, HAND_REFLECTANCE)])
    return out


def _full(n: int, value: float) -> Array:
    return np.full(n, value)


# ---------------------------------------------------------------- scene


def _capsule_alpha(shape: Array, xs: Array, ys: Array) -> Array:
    """Coverage (0–1, soft edge) of one capsule row over pixel centres ``xs``, ``ys`` (numpy)."""
    x0, y0, x1, y1, r = shape[:5]
    dx, dy = x1 - x0, y1 - y0
    len2 = dx * dx + dy * dy
    u = np.clip(((xs - x0) * dx + (ys - y0) * dy) / len2, 0.0, 1.0) if len2 > 0 else np.zeros_like(xs)
    d = np.hypot(xs - x0 - u * dx, ys - y0 - u * dy)
    return np.asarray(np.clip((r + EDGE_PX - d) / (2 * EDGE_PX), 0.0, 1.0))


def background(subject: Subject) -> Array:
    """The static reflectance image of the subject's room and body (texture, torso, head)."""
    rng = np.random.default_rng([subject.seed, 1])
    coarse = rng.uniform(size=(9, 9))
    pos = np.linspace(0, 8, SENSOR)
    rows = np.array([np.interp(pos, np.arange(9), c) for c in coarse])  # 9 × 128
    smooth = np.array([np.interp(pos, np.arange(9), c) for c in rows.T]).T  # 128 × 128
    texture = 0.75 * smooth + 0.25 * rng.uniform(size=(SENSOR, SENSOR))
    lo, hi = BACKGROUND_RANGE
    refl = lo + (hi - lo) * texture
    b = _body(subject)
    ys, xs = np.mgrid[0:SENSOR, 0:SENSOR].astype(np.float64)
    torso = np.array([b.cx, b.cy - 20 * b.s, b.cx, b.cy + 45 * b.s, 15 * b.s])
    head = np.array([b.cx, b.cy - 38 * b.s, b.cx, b.cy - 38 * b.s, 9 * b.s])
    for shape, value in ((torso, TORSO_REFLECTANCE), (head, HEAD_REFLECTANCE)):
        a = _capsule_alpha(shape, xs, ys)
        refl = refl * (1 - a) + value * a
    return np.asarray(refl)


def _with_contrast(refl: Array, contrast: float, mean: float) -> Array:
    return np.asarray(np.clip(mean + contrast * (refl - mean), 0.01, 1.0))


# ---------------------------------------------------------------- pixel model (numba)


@numba.njit(cache=True, nogil=True)
def _alpha(sh: np.ndarray, x: float, y: float) -> float:
    dx, dy = sh[2] - sh[0], sh[3] - sh[1]
    len2 = dx * dx + dy * dy
    u = 0.0
    if len2 > 0:
        u = min(max(((x - sh[0]) * dx + (y - sh[1]) * dy) / len2, 0.0), 1.0)
    ex, ey = x - sh[0] - u * dx, y - sh[1] - u * dy
    return min(max((sh[4] + EDGE_PX - np.sqrt(ex * ex + ey * ey)) / (2 * EDGE_PX), 0.0), 1.0)


@numba.njit(cache=True, nogil=True)
def _level(shapes: np.ndarray, bg: np.ndarray, lux: float, x: int, y: int) -> float:
    """Log intensity of pixel (x, y) with ``shapes`` (n, SHAPE_FIELDS) painted over ``bg``."""
    r = bg[y, x]
    for i in range(shapes.shape[0]):
        a = _alpha(shapes[i], float(x), float(y))
        if a > 0:
            r = r * (1 - a) + shapes[i, 5] * a
    return np.log(lux * r + DARK)


@numba.njit(cache=True, nogil=True)
def _fire(old: float, new: float, y: int, x: int, t0: float, px: np.ndarray, out: np.ndarray, n: int) -> int:
    """Events of one pixel in one step (``px``: ref, c_on, c_off, last_t planes); returns the new count
    or −1 when ``out`` is full."""
    while True:
        ref = px[0, y, x]
        if new - ref >= px[1, y, x]:
            target, pol = ref + px[1, y, x], 1
        elif ref - new >= px[2, y, x]:
            target, pol = ref - px[2, y, x], 0
        else:
            return n
        frac = (target - old) / (new - old) if new != old else 1.0
        t = t0 + min(max(frac, 0.0), 1.0) * STEP_US
        t = max(t, px[3, y, x] + REFRACTORY_US)
        if t > t0 + STEP_US:
            return n
        if n >= out.shape[0]:
            return -1
        out[n, 0], out[n, 1], out[n, 2], out[n, 3] = t, x, y, pol
        px[0, y, x], px[3, y, x] = target, t
        n += 1


@numba.njit(cache=True, nogil=True)
def _simulate(track: np.ndarray, bg: np.ndarray, lux: float, px: np.ndarray, out: np.ndarray) -> int:
    """Run the pixel model over ``track`` (steps, shapes, SHAPE_FIELDS); events to ``out`` rows
    (t, x, y, p) unordered; returns the count or −1 when ``out`` is too small."""
    steps, n_shapes = track.shape[0], track.shape[1]
    h, w = bg.shape
    level = np.empty((h, w))
    for y in range(h):
        for x in range(w):
            level[y, x] = _level(track[0], bg, lux, x, y)
    px[0] += level
    stamp = np.full((h, w), -1, dtype=np.int64)
    n = 0
    for k in range(1, steps):
        t0 = float((k - 1) * STEP_US)
        for s in range(n_shapes):
            a, b = track[k - 1, s], track[k, s]
            if np.all(a == b):
                continue
            reach = max(a[4], b[4]) + EDGE_PX + 1
            x_lo = max(int(min(a[0], a[2], b[0], b[2]) - reach), 0)
            x_hi = min(int(max(a[0], a[2], b[0], b[2]) + reach) + 1, w)
            y_lo = max(int(min(a[1], a[3], b[1], b[3]) - reach), 0)
            y_hi = min(int(max(a[1], a[3], b[1], b[3]) + reach) + 1, h)
            for y in range(y_lo, y_hi):
                for x in range(x_lo, x_hi):
                    if stamp[y, x] == k or _alpha(a, float(x), float(y)) == _alpha(b, float(x), float(y)):
                        continue
                    stamp[y, x] = k
                    new = _level(track[k], bg, lux, x, y)
                    n = _fire(level[y, x], new, y, x, t0, px, out, n)
                    if n < 0:
                        return -1
                    level[y, x] = new
    return n


# ---------------------------------------------------------------- samples


def _pixel_planes(subject: Subject, rng: np.random.Generator) -> Array:
    """(4, H, W): ref offset, C_on, C_off (the subject's sensor mismatch), last event time."""
    mismatch = np.random.default_rng([subject.seed, 2])
    c = np.maximum(mismatch.normal(subject.c0, subject.c_sigma, size=(2, SENSOR, SENSOR)), C_MIN)
    ref = rng.uniform(-0.5, 0.5, size=(1, SENSOR, SENSOR)) * c[:1]
    last = np.full((1, SENSOR, SENSOR), -float(REFRACTORY_US))
    return np.ascontiguousarray(np.concatenate([ref, c, last]))


def _noise(subject: Subject, refl: Array, duration_us: int, rng: np.random.Generator) -> Events:
    """Background activity and shot noise over the whole sensor (Poisson per pixel)."""
    shot = SHOT_NOISE_HZ * DARK / (subject.lux * refl + DARK)
    parts = []
    for rate, on_fraction in ((np.full(refl.size, subject.noise_hz), BA_ON_FRACTION), (shot.ravel(), 0.5)):
        total = float(rate.sum()) * duration_us * 1e-6
        n = int(rng.poisson(total))
        pix = rng.choice(refl.size, size=n, p=rate / rate.sum())
        t = rng.integers(0, duration_us, size=n)
        parts.append(make_events(t, pix % SENSOR, pix // SENSOR, rng.uniform(size=n) < on_fraction))
    return concat_events(parts)


def generate_sample(label: int, subject: Subject, duration_us: int, seed: int) -> Events:
    """One gesture of ``label`` (index into GESTURE_LABELS) by ``subject``: time-ordered events, t from 0 µs."""
    if not 0 <= label < len(GESTURE_LABELS):
        raise ValueError(f"label must be in 0–{len(GESTURE_LABELS) - 1}, got {label}")
    if duration_us < STEP_US:
        raise ValueError(f"duration_us must be >= {STEP_US}, got {duration_us}")
    rng = np.random.default_rng([subject.seed, label, seed])
    steps = duration_us // STEP_US + 1
    refl = background(subject)
    mean = float(refl.mean())
    bg = _with_contrast(refl, subject.contrast, mean)
    track = shape_track(label, subject, steps, rng)
    track[:, :, 5] = _with_contrast(track[:, :, 5], subject.contrast, mean)
    px = _pixel_planes(subject, rng)
    out = np.empty((int(duration_us * EVENTS_PER_US_CAPACITY) + 1024, 4))
    while (n := _simulate(track, bg, subject.lux, px.copy(), out)) < 0:
        out = np.empty((2 * len(out), 4))
    signal = make_events(out[:n, 0], out[:n, 1], out[:n, 2], out[:n, 3])
    events = concat_events([signal, _noise(subject, bg, duration_us, rng)])
    return events[np.argsort(events["t"], kind="stable")]


def generate_dataset(
    out_dir: Path | str,
    n_subjects: int,
    samples_per_class: int,
    duration_us: int,
    seed: int,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Write one speck ``.npz`` per subject (samples back to back, ``GAP_US`` apart, cycling
    through the classes) and ``manifest.csv`` (file,label,t_start_us,t_end_us,subject).
    The npz labels hold class indices (``header["label_names"]`` the names). Samples are rendered on
    ``workers`` threads (default: one per CPU; the numba kernel releases the GIL); the output does not
    depend on it. Returns the manifest path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    people = subjects(n_subjects, seed)
    rows: list[tuple[str, str, int, int, str]] = []
    bar = tqdm(
        total=n_subjects * samples_per_class * len(GESTURE_LABELS), disable=not progress, file=sys.stderr, unit="sample"
    )
    with bar, ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for i, subject in enumerate(people):
            jobs = [(label, j) for j in range(samples_per_class) for label in range(len(GESTURE_LABELS))]
            parts, labels, t = [], [], 0
            for (label, _), events in zip(
                jobs,
                pool.map(generate_sample, *zip(*[(k, subject, duration_us, j) for k, j in jobs], strict=True)),
                strict=True,
            ):
                events["t"] += np.uint64(t)
                parts.append(events)
                labels.append(Label(label, t, t + duration_us))
                rows.append((f"{subject.name}.npz", GESTURE_LABELS[label], t, t + duration_us, subject.name))
                t += duration_us + GAP_US
                bar.update()
            header = {"generator": "training.synthetic", "seed": str(seed), "subject_index": str(i)}
            header["label_names"] = ",".join(GESTURE_LABELS)
            write_npz(
                out / f"{subject.name}.npz",
                concat_events(parts) if parts else empty_events(),
                width=SENSOR,
                height=SENSOR,
                time_origin="sample start",
                labels=labels,
                header=header,
            )
    manifest = out / MANIFEST
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    return manifest


MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("file", "label", "t_start_us", "t_end_us", "subject")
