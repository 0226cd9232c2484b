"""Training data: frames as the chip pools them, loaders over manifests, DVS128 Gesture layouts, splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from emulator.config import DvsConfig
from emulator.default_net import GESTURE_LABELS
from emulator.dvs import preprocess
from proto.events import make_events
from tests.io.make_files import aedat31_file, polarity_packet
from tests.real_data import real_file, source_entry
from training.data import (
    dvsgesture_samples,
    folder_samples,
    frames,
    split_by_source,
    split_by_subject,
    windows,
)
from training.spec import InputSpec
from training.synthetic import generate_dataset, generate_sample, subjects

SPEC = InputSpec(downsample=4, dt_us=10_000, steps=5)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    generate_dataset(out, n_subjects=2, samples_per_class=1, duration_us=120_000, seed=3, progress=False)
    return out


def test_frames_counts_exact() -> None:
    ev = make_events(
        [0, 5, 9_999, 10_000, 49_999, 50_000], [0, 3, 4, 127, 8, 0], [0, 3, 0, 127, 9, 0], [1, 1, 0, 1, 0, 1]
    )
    f = frames(ev, SPEC, 0)
    assert f.shape == (5, 2, 32, 32) and f.dtype == np.float32
    assert f[0, 1, 0, 0] == 2 and f[0, 0, 0, 1] == 1 and f[1, 1, 31, 31] == 1 and f[4, 0, 2, 2] == 1
    assert f.sum() == 5  # t = 50 000 is past the window


@pytest.mark.parametrize("downsample", [1, 2, 4])
def test_frames_match_the_chip_dvs_pooling(downsample: int) -> None:
    spec = InputSpec(downsample=downsample, dt_us=20_000, steps=10)
    events = generate_sample(8, subjects(1, 2)[0], 300_000, seed=0)
    t0 = 50_000
    f = frames(events, spec, t0)
    inside = (events["t"] >= t0) & (events["t"] < t0 + spec.steps * spec.dt_us)
    assert f.sum() == np.count_nonzero(inside)
    pooled, dropped = preprocess(events[inside], DvsConfig(pooling_x=downsample, pooling_y=downsample))
    assert dropped.polarity == dropped.roi == 0
    expected = np.zeros_like(f)
    b = (pooled["t"].astype(np.int64) - t0) // spec.dt_us
    np.add.at(expected, (b, pooled["p"], pooled["y"], pooled["x"]), 1)
    assert np.array_equal(f, expected)


def test_windows_cut_long_samples(small_dir: Path) -> None:
    samples = folder_samples(small_dir / "manifest.csv", list(GESTURE_LABELS))
    spec = InputSpec(dt_us=10_000, steps=5)
    cut = windows(samples, spec)
    assert len(cut) == 2 * len(samples)  # 120 ms → two 50 ms windows
    assert all(w.duration_us == 50_000 and int(w.events["t"].max()) < 50_000 for w in cut)
    assert sum(len(w.events) for w in cut[:2]) == np.count_nonzero(samples[0].events["t"] < 100_000)
    assert len(windows(samples, spec, stride_us=10_000)) == 8 * len(samples)


def test_folder_dataset_whole_files_and_sorted_labels(small_dir: Path, tmp_path: Path) -> None:
    files = sorted(p.name for p in small_dir.glob("*.npz"))
    manifest = tmp_path / "m.csv"
    rel = os.path.relpath(small_dir, tmp_path)
    manifest.write_text("file,label\n" + "".join(f"{rel}/{f},{n}\n" for f, n in zip(files, ["zeta", "alpha"])))
    samples = folder_samples(manifest)
    assert [s.label for s in samples] == [1, 0] and [s.label_name for s in samples] == ["zeta", "alpha"]
    assert samples[0].subject == samples[0].source == f"{rel}/{files[0]}"
    assert all(s.events["t"][0] == 0 for s in samples)
    with pytest.raises(ValueError, match="label 'zeta'"):
        folder_samples(manifest, ["alpha"])


def test_splits(small_dir: Path) -> None:
    samples = folder_samples(small_dir / "manifest.csv", list(GESTURE_LABELS))
    people = sorted({s.subject for s in samples})
    train, test = split_by_subject(samples, people[:1])
    assert {s.subject for s in test} == {people[0]} and people[0] not in {s.subject for s in train}
    train, test = split_by_source(samples, [samples[-1].source])
    assert len(train) + len(test) == len(samples) and {s.source for s in test} == {samples[-1].source}


# ---------------------------------------------------------------- DVS128 Gesture layouts


def test_dvsgesture_raw_layout(tmp_path: Path) -> None:
    folder = tmp_path / "DvsGesture"
    folder.mkdir()
    events = [(t, t % 128, (t // 7) % 128, t % 2, True) for t in range(1_000, 9_000, 10)]
    aedat31_file(folder / "user01_fluorescent.aedat", [polarity_packet(events)])
    (folder / "user01_fluorescent_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n1,1000,4000\n11,4000,9000\n"
    )
    (folder / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (folder / "trials_to_test.txt").write_text("")
    samples = dvsgesture_samples(tmp_path, "train")
    assert [s.label for s in samples] == [0, 10] and samples[0].label_name == "hand_clap"
    assert [len(s.events) for s in samples] == [300, 500]
    assert samples[0].subject == "user01" and samples[1].duration_us == 5_000
    assert int(samples[1].events["t"][0]) == 0
    assert dvsgesture_samples(tmp_path, "test") == []


def test_dvsgesture_tonic_layout(tmp_path: Path) -> None:
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user02_led"
    folder.mkdir(parents=True)
    table = np.array([[1, 2, 1, 10], [3, 4, 0, 12], [127, 127, 1, 30]], dtype=np.int32)  # x, y, p, t ms
    np.save(folder / "6.npy", table)
    (sample,) = dvsgesture_samples(tmp_path)
    assert sample.label == 6 and sample.subject == "user02"
    assert sample.events["t"].tolist() == [0, 2_000, 20_000] and sample.events["x"].tolist() == [1, 3, 127]
    with pytest.raises(FileNotFoundError):
        dvsgesture_samples(tmp_path, "test")


def test_dvsgesture_absent_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        dvsgesture_samples(tmp_path / "nowhere")
    message = str(info.value)
    assert "DvsGesture.tar.gz" in message and "research.ibm.com" in message
    assert str(tmp_path / "nowhere" / "DvsGesture" / "user01_fluorescent.aedat") in message


# ---------------------------------------------------------------- real clips

REAL_CLIPS = {
    "AlexOuyang-DVS128DataAnalysis/alex_walking_for_10secs.aedat": "walking",
    "AlexOuyang-DVS128DataAnalysis/cam255_alex_standing_up.aedat": "standing_up",
    "AlexOuyang-DVS128DataAnalysis/cam255_neal_standing_up.aedat": "standing_up",
    "AlexOuyang-DVS128DataAnalysis/cam300_fix_lense_alex_standing_up.aedat": "standing_up",
    "AlexOuyang-DVS128DataAnalysis/cam255_right_clamp_test1.aedat": "mount_test",
}


def test_folder_dataset_over_real_dvs128_clips(tmp_path: Path) -> None:
    paths = {rel: real_file(rel) for rel in REAL_CLIPS}
    manifest = tmp_path / "real.csv"
    lines = [f"{os.path.relpath(p, tmp_path)},{REAL_CLIPS[rel]}\n" for rel, p in paths.items()]
    manifest.write_text("file,label\n" + "".join(lines))
    samples = folder_samples(manifest)
    assert [s.label_name for s in samples] == list(REAL_CLIPS.values())
    assert [s.label for s in samples] == [2, 1, 1, 1, 0]  # sorted names: mount_test, standing_up, walking
    for s, rel in zip(samples, REAL_CLIPS, strict=True):
        entry = source_entry(rel)
        assert len(s.events) == entry.events
        assert s.duration_us == pytest.approx(entry.duration_s * 1e6, abs=100)
    spec = InputSpec(dt_us=50_000, steps=20)
    cut = windows(samples, spec)
    assert len(cut) >= sum(int(e.duration_us // 1_000_000) for e in samples)
    assert frames(cut[0].events, spec, 0).sum() == len(cut[0].events)


def test_substeps_split_each_bin_and_lose_no_event() -> None:
    events = generate_sample(3, subjects(1, 2)[0], 300_000, seed=1)
    coarse = frames(events, SPEC, 20_000)
    fine = frames(events, InputSpec(downsample=4, dt_us=10_000, steps=5, substeps=5), 20_000)
    assert fine.shape == (25, *coarse.shape[1:])
    np.testing.assert_array_equal(fine.reshape(5, 5, *coarse.shape[1:]).sum(1), coarse)
    assert (fine.reshape(5, 5, -1).sum(2) > 0).sum() > 5  # the events spread over the substeps


@pytest.mark.parametrize("substeps", [0, 7])
def test_substeps_must_divide_the_step(substeps: int) -> None:
    with pytest.raises(ValueError, match="substeps"):
        InputSpec(dt_us=30_000, substeps=substeps)
