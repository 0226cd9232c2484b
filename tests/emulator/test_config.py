"""Chip config: every hardware limit refused with the layer and field named; the file format round-trips."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from emulator.config import (
    READOUT,
    ChipConfig,
    ConfigLimitError,
    CoreLayer,
    Destination,
    DvsConfig,
    NoiseFilter,
    ReadoutConfig,
)
from emulator.config_io import FORMAT_NAME, FORMAT_VERSION, ConfigError, config_from_dict, load_config, save_config
from tests.emulator.config_examples import small_config, valid_configs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "chip-config.md"


def _layer(**changes: Any) -> CoreLayer:
    base: dict[str, Any] = {
        "name": "conv",
        "input_shape": (2, 16, 16),
        "weights": np.ones((4, 2, 3, 3), np.int8),
        "threshold_high": 10,
    }
    return CoreLayer(**{**base, **changes})


def _same(name: str, *destinations: Destination) -> CoreLayer:
    """A 1×1 conv 2 → 2 channels on 4×4, so any two can feed each other."""
    return CoreLayer(name, (2, 4, 4), np.ones((2, 2, 1, 1), np.int8), 5, destinations=destinations)


# --- the data model -------------------------------------------------------------------------------


def test_small_config_is_valid_and_shapes_chain() -> None:
    chip = small_config()
    assert chip.layers[0].output_shape == (4, 16, 16)
    assert chip.layers[1].output_shape == (10, 1, 1)
    assert chip.dvs.output_shape == (2, 16, 16)


def test_arrays_are_read_only_copies_in_hardware_dtypes() -> None:
    weights, bias = np.ones((4, 2, 3, 3), np.int64), np.arange(4)
    layer = _layer(weights=weights, bias=bias, initial_state=np.zeros((4, 14, 14), np.int32))
    weights[0, 0, 0, 0] = 7
    assert layer.weights.dtype == np.int8 and layer.bias is not None and layer.bias.dtype == np.int16
    assert layer.weights[0, 0, 0, 0] == 1
    for array in (layer.weights, layer.bias, layer.initial_state):
        assert array is not None and not array.flags.writeable
    with pytest.raises(ValueError):
        layer.weights[0, 0, 0, 0] = 2


def test_equality_compares_arrays() -> None:
    assert small_config() == small_config()
    other = small_config()
    changed = replace(other.layers[0], weights=other.layers[0].weights + 1)
    assert replace(other, layers=(changed, other.layers[1])) != small_config()


W = np.ones((4, 2, 3, 3), np.int8)
LAYER_LIMITS = [
    ({"name": ""}, "layer: name"),
    ({"input_shape": (2, 16)}, "input_shape"),
    ({"input_shape": (2, 129, 16), "weights": W}, "input_shape 129 is outside 1..128"),
    ({"input_shape": (1025, 16, 16)}, "input_shape 1025 is outside 1..1024"),
    ({"weights": np.ones((4, 2, 3), np.int8)}, "weights shape (4, 2, 3) is not square"),
    ({"weights": np.ones((4, 2, 3, 2), np.int8)}, "weights shape (4, 2, 3, 2) is not square"),
    ({"weights": np.ones((4, 3, 3, 3), np.int8)}, "weights shape (4, 3, 3, 3) has 3 input channels, not 2"),
    ({"weights": np.ones((4, 2, 17, 17), np.int8), "input_shape": (2, 64, 64)}, "weights 17 is outside 1..16"),
    ({"weights": np.ones((1025, 2, 1, 1), np.int8)}, "weights 1025 is outside 1..1024"),
    ({"weights": np.ones((4, 2, 3, 3))}, "weights dtype float64 is not an integer dtype"),
    ({"weights": np.full((4, 2, 3, 3), 128)}, "weights values 128..128 do not fit int8"),
    ({"stride": 3}, "stride 3 is not one of (1, 2, 4, 8)"),
    ({"padding": 8}, "padding 8 is outside 0..7"),
    ({"padding": -1}, "padding -1 is outside 0..7"),
    ({"input_shape": (2, 128, 128), "weights": W}, "output_shape (126, 126) is outside 1..64"),
    ({"input_shape": (2, 2, 16), "weights": W}, "output_shape (0, 14) is outside 1..64"),
    ({"threshold_high": 1 << 15}, "threshold_high 32768 is outside -32768..32767"),
    ({"threshold_low": -(1 << 15) - 1}, "threshold_low -32769 is outside"),
    ({"threshold_low": 0}, "threshold_low 0 is refused: a hardware bug; use -1"),
    ({"threshold_low": 10}, "threshold_low 10 is not below threshold_high 10"),
    ({"threshold_high": 2.5}, "threshold_high 2.5 is not an integer"),
    ({"bias": np.ones(3, np.int16)}, "bias shape (3,) is not (4,)"),
    ({"bias": np.full(4, 1 << 15)}, "bias values 32768..32768 do not fit int16"),
    ({"reset": "hold"}, "reset 'hold' is not one of ('subtract', 'zero')"),
    ({"leak": 1}, "leak 1 is not a boolean"),
    ({"decimator": 3}, "decimator 3 is not one of (2, 4, 8, 16, 32, 128, 256, 512)"),
    ({"destinations": (Destination(1),) * 3}, "destinations has 3 entries, at most 2"),
    ({"destinations": (1,)}, "destinations[0] 1 is not a Destination"),
    ({"initial_state": np.zeros((4, 16, 16), np.int16)}, "initial_state shape (4, 16, 16) is not (4, 14, 14)"),
    ({"core": 9}, "core 9 is outside 0..8"),
]


@pytest.mark.parametrize(("changes", "message"), LAYER_LIMITS)
def test_layer_limits_are_refused_naming_layer_and_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigLimitError) as info:
        _layer(**changes)
    assert message in str(info.value)
    assert str(info.value).startswith("layer 'conv': " if changes.get("name") != "" else "layer: ")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer": -1}, "destination: layer -1 is outside 0..8"),
        ({"layer": "cpu"}, "destination: layer 'cpu' is not an integer"),
        ({"layer": 1, "pooling": 3}, "destination: pooling 3 is not one of (1, 2, 4)"),
        ({"layer": 1, "feature_shift": -1}, "destination: feature_shift -1 is outside 0..1023"),
    ],
)
def test_destination_limits(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Destination(**kwargs)


def _chip_error(*layers: CoreLayer, **kwargs: Any) -> ConfigLimitError:
    with pytest.raises(ConfigLimitError) as info:
        ChipConfig(layers, **kwargs)
    return info.value


def test_chip_refuses_more_than_nine_layers() -> None:
    assert "layers has 10 layers, at most 9" in str(_chip_error(*(_same(f"l{i}") for i in range(10))))


def test_chip_refuses_duplicate_names_and_pinned_cores() -> None:
    assert str(_chip_error(_same("a"), _same("a"))) == "layer 1 'a': name 'a' is already used by layer 0"
    pinned = (replace(_same("a"), core=3), replace(_same("b"), core=3))
    assert str(_chip_error(*pinned)) == "layer 1 'b': core 3 is already used by layer 0"


def test_chip_refuses_missing_and_self_destinations() -> None:
    error = _chip_error(_same("a", Destination(2)), _same("b"))
    assert str(error) == "layer 0 'a': destinations[0].layer 2 does not exist (the chip has 2 layers)"
    assert error.path == "layers[0].destinations[0].layer"
    assert "1 is the layer itself" in str(_chip_error(_same("a"), _same("b", Destination(1))))


def test_chip_refuses_loops_but_allows_merges() -> None:
    error = _chip_error(_same("a", Destination(1)), _same("b", Destination(2)), _same("c", Destination(0)))
    assert str(error) == "layer 2 'c': destinations[0].layer 0 closes a loop 0 -> 1 -> 2 -> 0 (can deadlock)"
    ChipConfig((_same("a", Destination(2)), _same("b", Destination(2)), _same("c")))


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        (Destination(1, feature_shift=1), "(3, 4, 4), larger than the input (2, 4, 4) of layer 1 'b'"),
        (Destination(1), None),
        (Destination(1, pooling=2), None),  # smaller than the target input is allowed
    ],
)
def test_chip_checks_the_shapes_chain(destination: Destination, message: str | None) -> None:
    if message is None:
        ChipConfig((_same("a", destination), _same("b")))
    else:
        assert message in str(_chip_error(_same("a", destination), _same("b")))


def test_chip_refuses_a_larger_source() -> None:
    big = CoreLayer("big", (2, 8, 8), np.ones((2, 2, 1, 1), np.int8), 5, destinations=(Destination(1),))
    assert "(2, 8, 8), larger than the input (2, 4, 4)" in str(_chip_error(big, _same("b")))
    ChipConfig((replace(big, destinations=(Destination(1, pooling=2),)), _same("b")))


@pytest.mark.parametrize(
    ("mode", "erratum", "shape", "ok"),
    [
        (3, False, (16, 1, 1), True),
        (3, False, (17, 1, 1), False),
        (3, False, (16, 2, 1), False),
        (3, True, (57, 1, 1), True),
        (3, True, (58, 1, 1), False),
        (0, False, (4, 2, 2), True),
        (0, False, (5, 2, 2), False),
        (1, False, (2, 4, 2), True),
        (1, False, (2, 2, 4), False),
        (2, False, (1, 4, 4), True),
        (2, False, (2, 4, 4), False),
    ],
)
def test_readout_destination_fits_the_address_mode(
    mode: int, erratum: bool, shape: tuple[int, int, int], ok: bool
) -> None:
    f, h, w = shape
    head = CoreLayer("head", (1, h, w), np.ones((f, 1, 1, 1), np.int8), 5, destinations=(Destination(READOUT),))
    readout = ReadoutConfig(address_mode=mode, channel_erratum=erratum)
    if ok:
        ChipConfig((head,), readout=readout)
    else:
        assert "larger than the input" in str(_chip_error(head, readout=readout))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 129}, "dvs: width 129 is outside 1..128"),
        ({"polarity": "up"}, "dvs: polarity 'up' is not one of ('on', 'off', 'merge', 'both')"),
        ({"pooling_y": 3}, "dvs: pooling_y 3 is not one of (1, 2, 4)"),
        ({"pooling_x": 2, "roi": (0, 0, 10, 64)}, "dvs: roi (0, 0, 10, 64) is not ordered"),
        ({"roi": (5, 0, 4, 3)}, "dvs: roi (5, 0, 4, 3) is not ordered"),
        ({"roi": (0, 0, 1)}, "dvs: roi (0, 0, 1) does not have 4 elements"),
        ({"mirror_x": "yes"}, "dvs: mirror_x 'yes' is not a boolean"),
        ({"destinations": (Destination(READOUT),)}, "dvs: destinations[0]"),
        ({"destinations": (Destination(0, pooling=2),)}, "pooling 1 (the DVS pools with pooling_x/y)"),
        ({"noise_filter": "none"}, "dvs: noise_filter 'none' is not a NoiseFilter"),
    ],
)
def test_dvs_limits(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigLimitError, match=re.escape(message)):
        DvsConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "median"}, "dvs noise_filter: mode 'median' is not one of"),
        ({"window": 4}, "dvs noise_filter: window 4 is not odd"),
        ({"window": 17}, "dvs noise_filter: window 17 is outside 1..15"),
        ({"threshold": 0}, "dvs noise_filter: threshold 0 is outside 1..65535"),
        ({"threshold": 65536}, "dvs noise_filter: threshold 65536 is outside 1..65535"),
    ],
)
def test_noise_filter_limits(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigLimitError, match=re.escape(message)):
        NoiseFilter(**kwargs)


def test_dvs_output_shape_follows_pooling_roi_and_swap() -> None:
    dvs = DvsConfig(width=128, height=100, pooling_x=4, pooling_y=2, roi=(10, 0, 19, 4), swap_xy=True, polarity="on")
    assert dvs.pooled_shape == (50, 32)
    assert dvs.output_shape == (2, 5, 10)
    assert DvsConfig(width=5, pooling_x=2, polarity="merge").output_shape == (1, 128, 3)


def test_dvs_destination_must_exist_and_match() -> None:
    to_first = DvsConfig(width=4, height=4, destinations=(Destination(0),))
    ChipConfig((_same("a"),), dvs=to_first)
    assert "dvs: destinations[0].layer 1 does not exist" in str(
        _chip_error(_same("a"), dvs=replace(to_first, destinations=(Destination(1),)))
    )
    error = _chip_error(_same("a"), dvs=replace(to_first, width=8))
    assert "dvs: destinations[0] sends (c + feature_shift, h, w) = (2, 4, 8)" in str(error)
    assert error.path == "dvs.destinations[0]"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address_mode": 4}, "readout: address_mode 4 is not one of (0, 1, 2, 3)"),
        ({"average": 8}, "readout: average 8 is not one of (1, 16, 32)"),
        ({"threshold": 65536}, "readout: threshold 65536 is outside 0..65535"),
        ({"threshold": -1}, "readout: threshold -1 is outside 0..65535"),
        ({"labels": ("x",) * 16}, "readout: labels"),
        ({"labels": (1,)}, "readout: labels (1,) is not at most 15 strings"),
        ({"channel_erratum": None}, "readout: channel_erratum None is not a boolean"),
    ],
)
def test_readout_limits(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigLimitError, match=re.escape(message)):
        ReadoutConfig(**kwargs)


@pytest.mark.parametrize("hz", [0.0, 0.5, 1000.5, 100_001.0, float("nan"), float("inf"), "fast", True])
def test_slow_clock_range(hz: Any) -> None:
    assert "chip: slow_clock_hz" in str(_chip_error(_same("a"), slow_clock_hz=hz))


# --- the file format ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid_configs())
def test_random_configs_round_trip(tmp_path: Path, config: ChipConfig) -> None:
    save_config(config, tmp_path / "net.json")
    assert load_config(tmp_path / "net.json") == config


def test_saved_file_is_the_documented_format(tmp_path: Path) -> None:
    save_config(small_config(), tmp_path / "net.json")
    doc = json.loads((tmp_path / "net.json").read_text())
    assert (doc["format"], doc["version"], doc["arrays"]) == (FORMAT_NAME, FORMAT_VERSION, "net.npz")
    assert doc["layers"][0]["destinations"] == [{"layer": 1, "pooling": 2, "feature_shift": 0}]
    assert doc["layers"][1]["destinations"] == [{"layer": "readout", "pooling": 1, "feature_shift": 0}]
    assert sorted(np.load(tmp_path / "net.npz").files) == ["conv1.bias", "conv1.weights", "head.weights"]


def _saved(tmp_path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    save_config(small_config(), tmp_path / "net.json")
    doc = json.loads((tmp_path / "net.json").read_text())
    with np.load(tmp_path / "net.npz") as npz:
        return doc, {key: npz[key] for key in npz.files}


def _write(tmp_path: Path, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """Write the pair and return the load error's message."""
    (tmp_path / "net.json").write_text(json.dumps(doc))
    np.savez(tmp_path / "net.npz", **cast(dict[str, Any], arrays))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "net.json")
    return str(info.value)


def _set_path(doc: Any, path: str, value: Any) -> None:
    """Set (or with ``...`` delete) ``doc`` at a JSON path like ``layers[0].destinations[1].pooling``."""
    keys: list[Any] = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    for key in keys[:-1]:
        doc = doc[key]
    if value is ...:
        del doc[keys[-1]]
    else:
        doc[keys[-1]] = value


FILE_LIMITS = [
    ("layers[1].stride", 3, "layers[1].stride: 3 is not one of (1, 2, 4, 8)"),
    ("layers[0].padding", 8, "layers[0].padding: 8 is outside 0..7"),
    ("layers[0].threshold_low", 0, "layers[0].threshold_low: 0 is refused"),
    ("layers[0].threshold_low", 64, "layers[0].threshold_low: 64 is not below threshold_high 64"),
    ("layers[0].threshold_high", 40000, "layers[0].threshold_high: 40000 is outside"),
    ("layers[0].reset", "hold", "layers[0].reset: 'hold' is not one of"),
    ("layers[0].leak", 1, "layers[0].leak: 1 is not a boolean"),
    ("layers[0].decimator", 3, "layers[0].decimator: 3 is not one of"),
    ("layers[0].core", 9, "layers[0].core: 9 is outside 0..8"),
    ("layers[0].name", "", "layers[0].name: '' is not a non-empty string"),
    ("layers[1].name", "conv1", "layers[1].name: 'conv1' is already used by layers[0]"),
    ("layers[0].input_shape", [2, 200, 16], "layers[0].input_shape: 200 is outside 1..128"),
    ("layers[0].input_shape", [3, 16, 16], "layers[0].weights: shape (4, 2, 3, 3) has 2 input channels, not 3"),
    ("layers[0].destinations[0].pooling", 3, "layers[0].destinations[0].pooling: 3 is not one of (1, 2, 4)"),
    ("layers[0].destinations[0].feature_shift", -1, "layers[0].destinations[0].feature_shift: -1 is outside"),
    ("layers[0].destinations[0].layer", 5, "layers[0].destinations[0].layer: 5 does not exist"),
    ("layers[0].destinations[0].layer", 0, "layers[0].destinations[0].layer: 0 is the layer itself"),
    ("layers[0].destinations[0].pooling", 1, "layers[0].destinations[0]: sends (c + feature_shift, h // pooling"),
    ("layers[0].destinations[0].feature_shift", 1, "layers[0].destinations[0]: sends"),
    ("layers[0].destinations", [{"layer": 1}] * 3, "layers[0].destinations: has 3 entries, at most 2"),
    ("layers[1].destinations", {"layer": 1}, "layers[1].destinations: {'layer': 1} is not a JSON list"),
    ("readout.address_mode", 0, "layers[1].destinations[0]: sends (c + feature_shift, h // pooling"),
    ("readout.address_mode", 4, "readout.address_mode: 4 is not one of (0, 1, 2, 3)"),
    ("readout.average", 8, "readout.average: 8 is not one of (1, 16, 32)"),
    ("readout.threshold", 70000, "readout.threshold: 70000 is outside 0..65535"),
    ("readout.labels", ["x"] * 16, "readout.labels:"),
    ("dvs.width", 129, "dvs.width: 129 is outside 1..128"),
    ("dvs.polarity", "up", "dvs.polarity: 'up' is not one of"),
    ("dvs.pooling_x", 3, "dvs.pooling_x: 3 is not one of (1, 2, 4)"),
    ("dvs.pooling_x", 2, "dvs.destinations[0]: sends (c + feature_shift, h, w) = (2, 16, 8)"),
    ("dvs.roi", [0, 0, 16, 15], "dvs.roi: (0, 0, 16, 15) is not ordered"),
    ("dvs.noise_filter.window", 4, "dvs.noise_filter.window: 4 is not odd"),
    ("dvs.noise_filter.threshold", 0, "dvs.noise_filter.threshold: 0 is outside 1..65535"),
    ("dvs.destinations[0].layer", 4, "dvs.destinations[0].layer: 4 does not exist"),
    ("dvs.destinations[0].pooling", 2, "dvs.destinations[0]:"),
    ("slow_clock_hz", 0, "slow_clock_hz: 0.0 is outside 1.0..100000.0"),
    ("slow_clock_hz", "1kHz", "slow_clock_hz: '1kHz' is not a number"),
    ("layers[0].strid", 2, "layers[0].strid: unknown key"),
    ("layerz", [], "layerz: unknown key"),
    ("dvs.noise_filter.windw", 3, "dvs.noise_filter.windw: unknown key"),
    ("readout.mode", 3, "readout.mode: unknown key"),
    ("layers[0].destinations[0].shift", 1, "layers[0].destinations[0].shift: unknown key"),
    ("layers[0].threshold_high", ..., "layers[0].threshold_high: is missing"),
    ("layers", ..., "layers: is missing"),
    ("layers[0]", [], "layers[0]: [] is not a JSON object"),
    ("version", FORMAT_VERSION + 1, f"version: {FORMAT_VERSION + 1} is newer than this speck-edge reads"),
    ("version", "1", "version: '1' is not a format version"),
    ("format", "sinabs", "format: 'sinabs' is not 'speck-edge-chip-config'"),
    ("arrays", "/tmp/net.npz", "arrays: '/tmp/net.npz' is not a file name relative to the JSON file"),
    ("arrays", "other.npz", "arrays: 'other.npz' not found beside net.json"),
]


@pytest.mark.parametrize(("path", "value", "message"), FILE_LIMITS)
def test_invalid_files_are_refused_naming_file_and_field(tmp_path: Path, path: str, value: Any, message: str) -> None:
    doc, arrays = _saved(tmp_path)
    _set_path(doc, path, value)
    error = _write(tmp_path, doc, arrays)
    assert error.startswith("net.json: "), error
    assert message in error, error


@pytest.mark.parametrize(
    ("key", "array", "message"),
    [
        ("conv1.weights", None, "layers[0].weights: array 'conv1.weights' is missing from the arrays file"),
        ("conv1.weights", np.ones((4, 2, 3, 3)), "layers[0].weights: dtype float64 is not an integer dtype"),
        ("conv1.weights", np.ones((4, 2, 17, 17), np.int8), "layers[0].weights: 17 is outside 1..16"),
        ("conv1.bias", np.ones(3, np.int16), "layers[0].bias: shape (3,) is not (4,) (array conv1.bias)"),
        ("head.initial_state", np.ones((10, 2, 2), np.int16), "layers[1].initial_state: shape (10, 2, 2) is not"),
        ("conv2.bias", np.ones(4, np.int16), "arrays: ['conv2.bias'] match no layer field"),
    ],
)
def test_invalid_arrays_are_refused(tmp_path: Path, key: str, array: np.ndarray | None, message: str) -> None:
    doc, arrays = _saved(tmp_path)
    if array is None:
        del arrays[key]
    else:
        arrays[key] = array
    error = _write(tmp_path, doc, arrays)
    assert message in error, error


def test_bad_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "net.json").write_text("{")
    with pytest.raises(ConfigError, match=r"^net.json: not valid JSON"):
        load_config(tmp_path / "net.json")


def test_config_error_is_a_value_error_with_fields() -> None:
    with pytest.raises(ValueError) as info:
        config_from_dict({"format": FORMAT_NAME, "version": 1, "arrays": "x.npz", "layers": 1}, {}, "mem")
    assert isinstance(info.value, ConfigError)
    assert (info.value.file, info.value.path) == ("mem", "layers")


def test_documented_example_loads(tmp_path: Path) -> None:
    """The complete example in docs/chip-config.md, with arrays shaped as it says, is a valid config."""
    text = DOCS.read_text()
    doc = json.loads(re.findall(r"```json\n(.*?)```", text, re.DOTALL)[0])
    arrays = {
        "conv1.weights": np.ones((8, 2, 3, 3), np.int8),
        "conv1.bias": np.zeros(8, np.int16),
        "head.weights": np.ones((10, 8, 8, 8), np.int8),
    }
    (tmp_path / "net.json").write_text(json.dumps(doc))
    np.savez(tmp_path / "net.npz", **cast(dict[str, Any], arrays))
    config = load_config(tmp_path / "net.json")
    assert [layer.output_shape for layer in config.layers] == [(8, 32, 32), (10, 1, 1)]
