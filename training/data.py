"""Training data: labelled event samples from any recording, and the chip's input frames.

A :class:`Sample` is one labelled span of events, re-timed so that t = 0 is its start. Loaders:

* :func:`folder_samples` — a CSV manifest (``file,label[,t_start_us,t_end_us][,subject]``, paths
  relative to the CSV) over any format :func:`emulator.io.open_recording` reads;
* :func:`synthetic_samples` — the folder :func:`training.synthetic.generate_dataset` wrote;
* :func:`dvsgesture_samples` — DVS128 Gesture already on disk (IBM's raw AEDAT 3.1 layout or tonic's
  npy layout); nothing is ever downloaded.

:func:`frames` bins events as the chip's DVS layer pools them (``pooling = downsample``: every event
counted at ``(y // ds, x // ds)``, channel = polarity) into ``steps`` bins of ``dt_us``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from emulator.default_net import GESTURE_LABELS
from emulator.io import read_recording
from emulator.io.base import Label
from proto.events import Events
from training.spec import InputSpec
from training.synthetic import MANIFEST

CHANNEL_ON = 1
"""Frame channel of ON events (the polarity bit, as on the chip)."""
GESTURE_DIR = "DvsGesture"
TONIC_DIR = "DVSGesture"
TONIC_SPLITS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
TRIALS = {"train": "trials_to_train.txt", "test": "trials_to_test.txt"}
GESTURE_FIRST_CLASS = 1
"""The raw ``_labels.csv`` numbers classes 1–11; samples use 0–10."""
GESTURE_HELP = (
    "DVS128 Gesture not found under {root}. It is never downloaded here. Get IBM's DvsGesture.tar.gz "
    "(https://research.ibm.com/interactive/dvsgesture/, mirrored on figshare: "
    "https://figshare.com/articles/dataset/DVS128_Gesture/) and extract it so that "
    "{root}/DvsGesture/user01_fluorescent.aedat and {root}/DvsGesture/trials_to_train.txt exist; or put "
    "tonic's preprocessed ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz (figshare files 38022171 / 38020584) "
    "extracted under {root}/DVSGesture/ibmGestureTrain/userNN_<lighting>/<class>.npy."
)


@dataclass(frozen=True)
class Sample:
    """One labelled span: ``events`` re-timed to start at 0, lasting ``duration_us``."""

    events: Events
    label: int
    label_name: str
    subject: str
    source: str
    duration_us: int


def frames(events: Events, spec: InputSpec, t_start_us: int) -> npt.NDArray[np.float32]:
    """Event counts ``(model_steps, 2, H, W)`` per ``step_us`` bin from ``t_start_us``, pooled by ``downsample``."""
    c, h, w = spec.shape
    ds, n = spec.downsample, spec.model_steps
    t = events["t"].astype(np.int64) - int(t_start_us)
    y, x = events["y"].astype(np.int64) // ds, events["x"].astype(np.int64) // ds
    keep = (t >= 0) & (t < spec.steps * spec.dt_us) & (x < w) & (y < h)
    index = (((t[keep] // spec.step_us) * c + events["p"][keep]) * h + y[keep]) * w + x[keep]
    counts = np.bincount(index, minlength=n * c * h * w)
    return counts.reshape(n, c, h, w).astype(np.float32)


class _Times(NamedTuple):
    """A recording's timestamps, contiguous, and whether they are in order: computed once per file,
    not per manifest row."""

    t: npt.NDArray[np.uint64]
    ordered: bool


def _times(events: Events) -> _Times:
    t = np.ascontiguousarray(events["t"])
    return _Times(t, len(t) < 2 or bool(np.all(t[1:] >= t[:-1])))


def _span(events: Events, t0: int, t1: int, times: _Times | None = None) -> Events:
    """The events with t0 <= t < t1, re-timed to start at t0 (a new array); ``times``: :func:`_times` of
    ``events`` when the caller cuts many spans from it."""
    t, ordered = times if times is not None else _times(events)
    if ordered:
        # uint64 needles: a Python int made numpy convert the whole haystack on every call
        lo, hi = np.searchsorted(t, np.array([max(t0, 0), max(t1, 0)], np.uint64))
        part = events[lo:hi].copy()
    else:
        part = events[(t >= t0) & (t < t1)].copy()
    part["t"] -= np.uint64(t0)
    return part


def _label_index(names: Sequence[str], name: str, where: str) -> int:
    try:
        return list(names).index(name)
    except ValueError:
        raise ValueError(f"{where}: label {name!r} is not one of {list(names)}") from None


def folder_samples(manifest_csv: Path | str, labels: list[str] | None = None) -> list[Sample]:
    """Samples listed by a CSV manifest (see the module docstring); each file is read once.

    Labels are indices into ``labels`` (default: the sorted unique names in the manifest)."""
    path = Path(manifest_csv)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"file", "label"} <= rows[0].keys():
        raise ValueError(f"{path}: a manifest needs the columns file,label (got {list(rows[0])})")
    names = labels if labels is not None else sorted({r["label"] for r in rows})
    by_file: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_file[row["file"]].append((i, row))
    out: list[Sample | None] = [None] * len(rows)
    for file, entries in by_file.items():
        events, _ = read_recording(path.parent / file)
        times = _times(events)
        for i, row in entries:
            t0, t1 = _row_span(row, events)
            label = _label_index(names, row["label"], f"{path} row {i + 2}")
            subject = row.get("subject") or file
            out[i] = Sample(_span(events, t0, t1, times), label, row["label"], subject, file, t1 - t0)
    return [s for s in out if s is not None]


def _row_span(row: dict[str, str], events: Events) -> tuple[int, int]:
    if row.get("t_start_us") and row.get("t_end_us"):
        return int(row["t_start_us"]), int(row["t_end_us"])
    if len(events) == 0:
        return 0, 0
    return int(events["t"].min()), int(events["t"].max()) + 1


def synthetic_samples(directory: Path | str) -> list[Sample]:
    """The samples of a :func:`training.synthetic.generate_dataset` folder (labels = GESTURE_LABELS)."""
    return folder_samples(Path(directory) / MANIFEST, list(GESTURE_LABELS))


def dvsgesture_samples(root: Path | str, split: Literal["train", "test"] = "train") -> list[Sample]:
    """DVS128 Gesture from ``root``: the raw layout if present, else tonic's npy layout (never downloads)."""
    if split not in TRIALS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    base = Path(root)
    for raw in (base / GESTURE_DIR, base):
        if (raw / TRIALS[split]).is_file():
            return _raw_gesture(raw, split)
    for npy in (base / TONIC_DIR / TONIC_SPLITS[split], base / TONIC_SPLITS[split]):
        if npy.is_dir() and any(npy.glob("*/*.npy")):
            return _tonic_gesture(npy)
    raise FileNotFoundError(GESTURE_HELP.format(root=base))


def _raw_gesture(folder: Path, split: str) -> list[Sample]:
    out = []
    for name in (folder / TRIALS[split]).read_text().split():
        events, rec = read_recording(folder / name)
        user, times = name.split("_")[0], _times(events)
        for lb in rec.info.labels:
            out.append(_gesture_sample(events, lb, user, name, times))
    return out


def _gesture_sample(events: Events, lb: Label, user: str, source: str, times: _Times) -> Sample:
    label = lb.label - GESTURE_FIRST_CLASS
    if not 0 <= label < len(GESTURE_LABELS):
        raise ValueError(f"{source}: class {lb.label} is outside 1–{len(GESTURE_LABELS)}")
    span = lb.t_end_us - lb.t_start_us
    return Sample(_span(events, lb.t_start_us, lb.t_end_us, times), label, GESTURE_LABELS[label], user, source, span)


def _tonic_gesture(folder: Path) -> list[Sample]:
    out = []
    for path in sorted(folder.glob("*/*.npy")):
        events, _ = read_recording(path)
        label = int(path.stem)
        t0 = int(events["t"].min()) if len(events) else 0
        t1 = int(events["t"].max()) + 1 if len(events) else 0
        source = f"{path.parent.name}/{path.name}"
        user = path.parent.name.split("_")[0]
        out.append(Sample(_span(events, t0, t1), label, GESTURE_LABELS[label], user, source, t1 - t0))
    return out


def windows(samples: Iterable[Sample], spec: InputSpec, stride_us: int | None = None) -> list[Sample]:
    """Cut samples into windows of ``steps · dt_us`` every ``stride_us`` (default: the window length).

    A sample shorter than one window gives one window (its frames end empty)."""
    length = spec.steps * spec.dt_us
    stride = length if stride_us is None else stride_us
    if stride <= 0:
        raise ValueError(f"stride_us must be > 0, got {stride}")
    out = []
    for s in samples:
        last = max(s.duration_us - length, 0)
        for t0 in range(0, last + 1, stride):
            out.append(replace(s, events=_span(s.events, t0, t0 + length), duration_us=length))
    return out


def split_by_subject(samples: Iterable[Sample], test_subjects: Iterable[str]) -> tuple[list[Sample], list[Sample]]:
    """(train, test): the samples of ``test_subjects`` are held out."""
    held = set(test_subjects)
    items = list(samples)
    return [s for s in items if s.subject not in held], [s for s in items if s.subject in held]


def split_by_source(samples: Iterable[Sample], test_sources: Iterable[str]) -> tuple[list[Sample], list[Sample]]:
    """(train, test): the samples cut from ``test_sources`` (recording files) are held out."""
    held = set(test_sources)
    items = list(samples)
    return [s for s in items if s.source not in held], [s for s in items if s.source in held]
