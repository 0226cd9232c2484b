"""The training CLI end to end on a tiny synthetic set: generate → train → export → evaluate."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from emulator.config_io import load_config
from services.cli import main
from services.cli_train import CHECKPOINT, load_split
from training.spec import InputSpec


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    assert (
        main(["generate", "--out", str(out), "--subjects", "4", "--samples-per-class", "1", "--duration-ms", "600"])
        == 0
    )
    return out


def test_split_holds_out_whole_subjects(tiny_set: Path) -> None:
    split = load_split(f"synthetic:{tiny_set}", InputSpec())
    parts = [{s.subject for s in part} for part in (split.train, split.val, split.test)]
    assert len(parts[2]) == 2 and len(parts[1]) == 1 and len(parts[0]) == 1
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(split.labels) == 11


def test_train_export_evaluate(tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = f"synthetic:{tiny_set}"
    run = tmp_path / "run"
    assert main(["train", "--data", data, "--model", "dynamic", "--arch", "small", "--epochs", "1",
                 "--out", str(run), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and 0.0 <= summary["float_test_accuracy"] <= 1.0
    assert (run / CHECKPOINT).exists() and (run / "checkpoints" / "epoch_0001.pt").exists()

    chip = tmp_path / "chip.json"
    assert main(["export", str(run / CHECKPOINT), "-o", str(chip), "--check-data", data, "--check-samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "float vs quantised" in out and chip.exists() and chip.with_suffix(".npz").exists()
    assert (tmp_path / "chip.scorer.npz").exists()  # the dynamic net's input-mask scorer
    meta = json.loads((tmp_path / "chip.meta.json").read_text())
    assert meta["meta"]["variant"] == "dynamic" and meta["meta"]["mask_window_us"] == InputSpec().dt_us

    assert main(["map", str(chip)]) == 0  # the exported net fits the cores
    capsys.readouterr()
    assert main(["evaluate", "--model", str(chip), "--data", data, "--limit", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == [str(chip)] and report[str(chip)]["samples"] == 4
    assert 0.0 < report[str(chip)]["kept_windows"] < 1.0  # the trained input mask ran on the chip


def test_resume_continues_after_the_last_epoch(
    tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = f"synthetic:{tiny_set}", tmp_path / "run"
    args = ["train", "--data", data, "--model", "vanilla", "--arch", "small", "--out", str(run), "--json"]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and (run / "checkpoints" / "epoch_0002.pt").exists()


def test_bad_data_spec_is_refused_with_the_forms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", "nonsense", "--out", "/nonexistent"]) == 2
    assert "synthetic[:DIR], dvsgesture:PATH or folder:MANIFEST.csv" in capsys.readouterr().err


def test_a_folder_set_with_its_own_classes_trains_and_exports(
    tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = (tiny_set / "manifest.csv").read_text().splitlines()
    keep = {"hand_clap", "air_drums", "other"}  # a three-class task over the same recordings
    lines = [rows[0]] + [r for r in rows[1:] if r.split(",")[1] in keep]
    manifest = tmp_path / "three.csv"
    manifest.write_text("\n".join(line.replace("subject_", str(tiny_set) + "/subject_", 1) for line in lines) + "\n")
    data, run = f"folder:{manifest}", tmp_path / "run"
    assert (
        main(["train", "--data", data, "--model", "vanilla", "--arch", "small", "--epochs", "1", "--out", str(run)])
        == 0
    )
    chip = tmp_path / "chip.json"
    assert main(["export", str(run / CHECKPOINT), "-o", str(chip)]) == 0
    meta = json.loads((tmp_path / "chip.meta.json").read_text())["meta"]
    assert sorted(meta["labels"]) == sorted(keep)
    assert load_config(chip).readout.labels == tuple(meta["labels"])


def test_a_dynamic_net_starts_from_a_vanilla_run(tiny_set: Path, tmp_path: Path) -> None:
    """make-defaults' recipe: the dynamic net takes the vanilla's layers, its input-mask scorer starts fresh."""
    import torch

    from services.cli_train import build_net, init_from

    data, vanilla = f"synthetic:{tiny_set}", tmp_path / "vanilla"
    assert main(["train", "--data", data, "--model", "vanilla", "--arch", "small", "--epochs", "1",
                 "--precision", "float32", "--out", str(vanilla)]) == 0  # fmt: skip
    trained = torch.load(vanilla / CHECKPOINT, weights_only=False)["state_dict"]
    net = build_net("small", "dynamic", 11)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    init_from(net, vanilla / CHECKPOINT)
    for key, value in net.state_dict().items():
        assert torch.equal(value, fresh[key] if key.startswith("input_mask.") else trained[key]), key
    assert any(k.startswith("input_mask.") for k in fresh)

    dynamic = tmp_path / "dynamic"
    assert main(["train", "--data", data, "--model", "dynamic", "--arch", "small", "--epochs", "1",
                 "--init", str(vanilla / CHECKPOINT), "--out", str(dynamic)]) == 0  # fmt: skip
    assert torch.load(dynamic / CHECKPOINT, weights_only=False)["init"] == str(vanilla / CHECKPOINT)
    # the second stage: a spike penalty with the mask scorer frozen leaves the scorer as it was
    sparse = tmp_path / "sparse"
    assert main(["train", "--data", data, "--model", "dynamic", "--arch", "small", "--epochs", "1", "--freeze-mask",
                 "--spike-penalty", "0.05", "--init", str(dynamic / CHECKPOINT), "--out", str(sparse)]) == 0  # fmt: skip
    before = torch.load(dynamic / CHECKPOINT, weights_only=False)["state_dict"]
    after = torch.load(sparse / CHECKPOINT, weights_only=False)["state_dict"]
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("input_mask."))
    assert not all(torch.equal(after[k], before[k]) for k in after if k.startswith("layers."))
    assert main(["train", "--data", data, "--model", "vanilla", "--arch", "small", "--epochs", "1", "--freeze-mask",
                 "--out", str(tmp_path / "nomask")]) == 2  # fmt: skip
    # another architecture does not fit: refused as bad input
    assert main(["train", "--data", data, "--model", "dynamic", "--arch", "speck", "--epochs", "1",
                 "--init", str(vanilla / CHECKPOINT), "--out", str(tmp_path / "bad")]) == 2  # fmt: skip


def test_a_run_on_substeps_keeps_them_through_export(tiny_set: Path, tmp_path: Path) -> None:
    import torch

    data, coarse, fine = f"synthetic:{tiny_set}", tmp_path / "coarse", tmp_path / "fine"
    assert main(["train", "--data", data, "--model", "dynamic", "--arch", "small",
                 "--epochs", "1", "--out", str(coarse)]) == 0  # fmt: skip
    # the polish make-defaults runs: the same weights, the neurons on 10 ms steps
    assert main(["train", "--data", data, "--model", "dynamic", "--arch", "small",
                 "--epochs", "1", "--substeps", "3", "--init", str(coarse / CHECKPOINT), "--out", str(fine)]) == 0  # fmt: skip
    state = torch.load(fine / CHECKPOINT, weights_only=False)
    assert state["input_spec"]["substeps"] == 3 and state["net_config"]["substeps"] == 3
    chip = tmp_path / "fine.json"
    assert main(["export", str(fine / CHECKPOINT), "-o", str(chip), "--check-data", data, "--check-samples", "4"]) == 0
    meta = json.loads(chip.with_suffix(".meta.json").read_text())["meta"]
    assert meta["mask_window_us"] == InputSpec().dt_us  # the chip's mask still decides per 30 ms window
    assert main(["train", "--data", data, "--substeps", "7", "--out", str(tmp_path / "bad")]) == 2


def test_make_defaults_runs_every_stage(tiny_set: Path, tmp_path: Path) -> None:
    """The recipe wired end to end at one epoch per stage: vanilla, its polish, the dynamic net's mask,
    sparse and polish stages, each from the one before; both exports and the recording."""
    import torch

    work, out = tmp_path / "work", tmp_path / "out"
    one = ["--epochs", "1", "--finetune-epochs", "1", "--sparse-epochs", "1", "--polish-epochs", "1"]
    assert main(["make-defaults", "--data", f"synthetic:{tiny_set}", "--work", str(work), "--out", str(out), *one]) == 0
    chain = ["vanilla", "vanilla-polished", "dynamic", "dynamic-sparse", "dynamic-polished"]
    states = {run: torch.load(work / run / CHECKPOINT, weights_only=False) for run in chain}
    for before, after in itertools.pairwise(chain):
        assert states[after]["init"] == str(work / before / CHECKPOINT), after
    assert [states[r]["input_spec"]["substeps"] for r in chain] == [1, 3, 1, 1, 3]
    meta = json.loads((out / "default-dynamic.meta.json").read_text())["meta"]
    assert meta["input_spec"]["substeps"] == 3 and meta["mask_window_us"] == InputSpec().dt_us
    assert (out / "default-vanilla.json").exists() and (out / "default-recording.npz").exists()
