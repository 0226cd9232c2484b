"""The bundled defaults: names that resolve wherever a chip config or recording is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.config_io import load_config
from emulator.io import read_recording
from emulator.mapping import map_layers
from services import defaults
from services.cli import main
from services.config import Settings
from services.launch import build_stage

BUNDLE_MAX_BYTES = 2 * 1024 * 1024
"""The issue's budget for the models and the recording together."""

needs_bundle = pytest.mark.skipif(
    not (defaults.BUNDLED / "default-dynamic.json").exists(), reason="no bundle yet (speck-edge make-defaults)"
)


@needs_bundle
def test_bundle_is_small_and_complete() -> None:
    files = sorted(p.name for p in defaults.BUNDLED.iterdir())
    for name in ("default-dynamic", "default-vanilla"):
        assert {f"{name}.json", f"{name}.npz", f"{name}.meta.json"} <= set(files)
    assert "default-dynamic.scorer.npz" in files and "default-vanilla.scorer.npz" not in files
    assert "default-recording.npz" in files
    assert sum(p.stat().st_size for p in defaults.BUNDLED.iterdir()) <= BUNDLE_MAX_BYTES


@needs_bundle
@pytest.mark.parametrize("name", ["default-dynamic", "default-vanilla"])
def test_model_names_resolve_to_configs_that_fit(name: str) -> None:
    config = defaults.resolve_chip_config(name)
    assert config == load_config(defaults.BUNDLED / f"{name}.json")
    assert len(map_layers(config).cores) == len(config.layers)
    meta = defaults.model_meta(name)
    assert meta["variant"] == name.removeprefix("default-") and 0.0 < meta["float_test_accuracy"] <= 1.0


@needs_bundle
def test_default_is_the_dynamic_model_and_its_scorer_runs_in_the_chip_service() -> None:
    assert defaults.resolve_chip_config("default") == defaults.resolve_chip_config("default-dynamic")
    scorer = defaults.load_input_scorer("default-dynamic")
    assert scorer is not None and defaults.load_input_scorer("default-vanilla") is None
    stage = build_stage("chip", Settings())
    assert stage.scorer is scorer or type(stage.scorer) is type(scorer)  # type: ignore[attr-defined]
    assert stage.mask_params.window_us == defaults.model_meta("default")["mask_window_us"]  # type: ignore[attr-defined]


@needs_bundle
def test_default_recording_is_the_bundled_labelled_one(capsys: pytest.CaptureFixture[str]) -> None:
    path = defaults.default_recording()
    assert path.parent == defaults.BUNDLED
    events, rec = read_recording(path)
    assert len(events) > 0 and rec.info.width == rec.info.height == 128
    assert main(["inspect", "default-recording"]) == 0
    assert str(len(events)) in capsys.readouterr().out


def test_unknown_bundled_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(defaults, "BUNDLED", tmp_path)
    with pytest.raises(FileNotFoundError, match="make-defaults"):
        defaults.resolve_chip_config("default-vanilla")
    assert defaults.model_path("default") is None  # no bundle: the random-weight net
    assert defaults.resolve_chip_config("default").layers  # still a usable net
