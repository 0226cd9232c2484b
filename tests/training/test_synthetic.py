"""The synthetic gesture generator: determinism, realism bounds, separability, files it writes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from emulator.default_net import GESTURE_LABELS
from emulator.io import read_recording
from proto.events import EVENT_DTYPE, Events
from training.data import Sample, split_by_subject, synthetic_samples
from training.synthetic import MANIFEST_COLUMNS, SENSOR, generate_dataset, generate_sample, subjects

DURATION_US = 500_000
RATE_RANGE = (20_000, 100_000)
"""DVS128 Gesture-like mean event rates (events/s) over a subject's classes."""
SAMPLE_RATE_RANGE = (5_000, 200_000)
"""Bounds on any single sample's rate."""
RIGHT_WAVE, LEFT_WAVE = GESTURE_LABELS.index("right_hand_wave"), GESTURE_LABELS.index("left_hand_wave")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 subjects × 2 samples per class of 0.5 s."""
    out = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(out, n_subjects=4, samples_per_class=2, duration_us=DURATION_US, seed=7, progress=False)


def test_same_arguments_same_events_other_seed_differs() -> None:
    person = subjects(1, 3)[0]
    a = generate_sample(4, person, 200_000, seed=11)
    b = generate_sample(4, person, 200_000, seed=11)
    c = generate_sample(4, person, 200_000, seed=12)
    assert a.dtype == EVENT_DTYPE
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_subjects_are_seeded_and_differ() -> None:
    people = subjects(5, 0)
    assert people == subjects(5, 0)
    assert len({p.seed for p in people}) == 5
    assert len({round(p.scale, 6) for p in people}) == 5
    a, b = (generate_sample(1, p, 200_000, seed=0) for p in people[:2])
    assert not np.array_equal(a["x"][:100], b["x"][:100])


@pytest.mark.parametrize("label", range(len(GESTURE_LABELS)))
def test_events_are_well_formed(label: int) -> None:
    events = generate_sample(label, subjects(1, 5)[0], DURATION_US, seed=1)
    t = events["t"]
    assert np.all(t[1:] >= t[:-1])
    assert t[0] >= 0 and t[-1] <= DURATION_US
    assert events["x"].max() < SENSOR and events["y"].max() < SENSOR
    assert set(np.unique(events["p"])) == {0, 1}
    rate = len(events) / (DURATION_US * 1e-6)
    assert SAMPLE_RATE_RANGE[0] <= rate <= SAMPLE_RATE_RANGE[1]


def test_mean_event_rate_is_gesture_like() -> None:
    for person in subjects(3, 9):
        counts = [len(generate_sample(k, person, DURATION_US, seed=2)) for k in range(len(GESTURE_LABELS))]
        rate = np.mean(counts) / (DURATION_US * 1e-6)
        assert RATE_RANGE[0] <= rate <= RATE_RANGE[1]


def test_right_and_left_waves_are_on_opposite_sides() -> None:
    for person in subjects(4, 1):
        right = generate_sample(RIGHT_WAVE, person, DURATION_US, seed=0)
        left = generate_sample(LEFT_WAVE, person, DURATION_US, seed=0)
        assert right["x"].mean() < SENSOR / 2 < left["x"].mean()


def test_recordings_read_back_with_labels(dataset: Path) -> None:
    with dataset.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    assert len(rows) == 4 * 2 * len(GESTURE_LABELS)
    for file in sorted({r["file"] for r in rows}):
        events, rec = read_recording(dataset.parent / file)
        mine = [r for r in rows if r["file"] == file]
        assert (rec.info.width, rec.info.height) == (SENSOR, SENSOR)
        assert rec.info.header["label_names"].split(",") == list(GESTURE_LABELS)
        assert [(GESTURE_LABELS[lb.label], lb.t_start_us, lb.t_end_us) for lb in rec.info.labels] == [
            (r["label"], int(r["t_start_us"]), int(r["t_end_us"])) for r in mine
        ]
        assert np.all(np.diff(events["t"].astype(np.int64)) >= 0)
        assert {r["subject"] for r in mine} == {Path(file).stem}


def test_manifest_round_trip(dataset: Path) -> None:
    samples = synthetic_samples(dataset.parent)
    assert len(samples) == 4 * 2 * len(GESTURE_LABELS)
    assert [s.label for s in samples[: len(GESTURE_LABELS)]] == list(range(len(GESTURE_LABELS)))
    assert all(s.label_name == GESTURE_LABELS[s.label] for s in samples)
    assert all(s.duration_us == DURATION_US and len(s.events) for s in samples)
    assert all(int(s.events["t"].max()) < DURATION_US for s in samples)
    assert len({s.subject for s in samples}) == 4


def test_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate_dataset(tmp_path, n_subjects=1, samples_per_class=1, duration_us=20_000, seed=0, progress=True)
    captured = capsys.readouterr()
    assert "11/11" in captured.err and captured.out == ""


# ---------------------------------------------------------------- separability


MOTION_BINS_US = 25_000
GRID = 4


def motion_features(events: Events, duration_us: int) -> np.ndarray:
    """Coarse features: where events are (a GRID × GRID histogram) and which way their centroid turns."""
    x, y = events["x"].astype(float), events["y"].astype(float)
    where = np.histogram2d(y, x, bins=GRID, range=[[0, SENSOR], [0, SENSOR]])[0].ravel() / len(events)
    b = events["t"].astype(np.int64) // MOTION_BINS_US
    n = duration_us // MOTION_BINS_US
    count = np.bincount(b, minlength=n)[:n] + 1e-9
    cx, cy = np.bincount(b, x, n)[:n] / count, np.bincount(b, y, n)[:n] / count
    cx, cy = cx - cx.mean(), cy - cy.mean()
    turn = np.mean(cx[:-1] * cy[1:] - cy[:-1] * cx[1:]) / (np.mean(cx**2 + cy**2) + 1e-9)
    return np.append(where, turn)


def test_held_out_subject_classified_well_above_chance(dataset: Path) -> None:
    samples = synthetic_samples(dataset.parent)
    held = max({s.subject for s in samples})
    train, test = split_by_subject(samples, [held])
    assert len(test) == 2 * len(GESTURE_LABELS)

    def feats(items: list[Sample]) -> np.ndarray:
        return np.array([motion_features(s.events, s.duration_us) for s in items])

    f_train, f_test = feats(train), feats(test)
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-9
    y_train = np.array([s.label for s in train])
    centroids = np.array([((f_train - mu) / sd)[y_train == k].mean(0) for k in range(len(GESTURE_LABELS))])
    dist = (((f_test - mu) / sd)[:, None, :] - centroids[None]) ** 2
    accuracy = np.mean(dist.sum(-1).argmin(1) == np.array([s.label for s in test]))
    chance = 1 / len(GESTURE_LABELS)
    print(f"held-out accuracy {accuracy:.2f} (chance {chance:.2f})")
    assert accuracy >= 4 * chance, accuracy
