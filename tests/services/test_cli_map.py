"""speck-edge map: the per-core table, JSON, and a net that cannot fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emulator.config import ChipConfig, CoreLayer, Destination
from emulator.config_io import save_config
from emulator.mapping import layer_memory
from services.cli import main
from tests.emulator.config_examples import small_config


def test_map_prints_one_row_per_core(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = small_config()
    save_config(cfg, tmp_path / "net.json")
    assert main(["map", str(tmp_path / "net.json")]) == 0
    out = capsys.readouterr().out
    for layer in cfg.layers:
        assert layer.name in out
        assert str(layer_memory(layer).kernel) in out
    assert main(["map", str(tmp_path / "net.json"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True


def test_map_names_the_layer_that_fits_no_core(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 1024 x 96 x 1 x 1 weights: kernel words 96 * 2^10 = 98304 > 65536, the largest kernel memory
    huge = CoreLayer("huge", (96, 1, 1), np.zeros((1024, 96, 1, 1), np.int8), threshold_high=10)
    first = CoreLayer(
        "first", (2, 4, 4), np.zeros((96, 2, 4, 4), np.int8), threshold_high=10, destinations=(Destination(1),)
    )
    save_config(ChipConfig(layers=(first, huge)), tmp_path / "big.json")
    assert main(["map", str(tmp_path / "big.json")]) == 2
    out = capsys.readouterr().out
    assert "'huge'" in out and "fits no core" in out and "98304" in out


def test_map_json_reports_an_invalid_config_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_config(small_config(), tmp_path / "net.json")
    doc = json.loads((tmp_path / "net.json").read_text())
    doc["layers"][0]["stride"] = 3  # Speck strides are 1, 2, 4, 8
    (tmp_path / "net.json").write_text(json.dumps(doc))
    assert main(["map", str(tmp_path / "net.json"), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["error"]["file"].endswith("net.json")
    assert "stride" in report["error"]["path"] + report["error"]["problem"]
