"""Settings: the documented defaults file, environment overrides, and errors that name their source."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import ENV_PREFIX, Settings, SettingsError, as_dict, load_settings

DEFAULT_TOML = Path(__file__).resolve().parents[2] / "deploy" / "config" / "default.toml"


def test_the_defaults_file_documents_every_default() -> None:
    assert load_settings(DEFAULT_TOML, environ={}) == Settings()
    text = DEFAULT_TOML.read_text()
    for section, body in as_dict(Settings()).items():
        assert f"[{section}]" in text
        for key in body:
            assert f"\n{key} = " in text, f"{section}.{key} is not in {DEFAULT_TOML.name}"


def test_no_file_no_environment_gives_the_defaults() -> None:
    assert load_settings(None, environ={}) == Settings()


def test_environment_overrides_one_key_each_read_as_toml() -> None:
    env = {
        f"{ENV_PREFIX}CHIP__MASK_RATIO": "0.3",
        f"{ENV_PREFIX}PIPELINE__LOSSLESS": "true",
        f"{ENV_PREFIX}ENDPOINTS__CHIP": '"tcp://10.0.0.2:7713"',
        f"{ENV_PREFIX}SENSOR__SOURCE": "/data/rec.aedat",  # not TOML: taken as a string
        f"{ENV_PREFIX}EXPORTER__PORT": "8800",
        f"{ENV_PREFIX}PIPELINE__TELEMETRY_INTERVAL_S": "2",  # an int where a float is welcome
        "UNRELATED": "x",
    }
    s = load_settings(DEFAULT_TOML, environ=env)
    assert s.chip.mask_ratio == 0.3
    assert s.pipeline.lossless is True
    assert s.endpoints.chip == "tcp://10.0.0.2:7713"
    assert s.sensor.source == "/data/rec.aedat"
    assert s.exporter.port == 8800 and type(s.exporter.port) is int
    assert s.pipeline.telemetry_interval_s == 2.0 and type(s.pipeline.telemetry_interval_s) is float
    # everything else stays at its default
    assert s.chip.mask_window_us == Settings().chip.mask_window_us
    assert s.endpoints.filter == Settings().endpoints.filter


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "speck.toml"
    path.write_text("[chip]\nmask_ratio = 0.25\nmask_history = 8\n")
    s = load_settings(path, environ={f"{ENV_PREFIX}CHIP__MASK_RATIO": "0.75"})
    assert (s.chip.mask_ratio, s.chip.mask_history) == (0.75, 8)


def _error(path: Path | None, env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ=env)
    return info.value


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[chipz]\nmask_ratio = 0.1\n", "chipz", "unknown section"),
        ("[chip]\nmask_ration = 0.1\n", "chip.mask_ration", "unknown key"),
        ('[chip]\nmask_ratio = "half"\n', "chip.mask_ratio", "expected float, got str"),
        ("[pipeline]\nlossless = 1\n", "pipeline.lossless", "expected bool, got int"),
        ("[exporter]\nport = 8790.0\n", "exporter.port", "expected int, got float"),
        ("chip = 3\n", "chip", "expected a table"),
        ("[pipeline]\nrealtime_priority = 100\n", "pipeline.realtime_priority", "0 (off) or 1-99"),
    ],
)
def test_file_errors_name_the_file_and_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    e = _error(path, {})
    assert (e.source, e.key) == (str(path), key)
    assert problem in e.problem
    assert str(path) in str(e) and key in str(e)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[chip\nmask_ratio = \n")
    e = _error(path, {})
    assert e.source == str(path)
    assert "not valid TOML" in e.problem
    assert str(path) in str(e)


@pytest.mark.parametrize(
    ("name", "value", "key", "problem"),
    [
        (f"{ENV_PREFIX}CHIP__MASK_RATIO", "fast", "chip.mask_ratio", "expected float, got str"),
        (f"{ENV_PREFIX}EXPORTER__PORT", "true", "exporter.port", "expected int, got bool"),
        (f"{ENV_PREFIX}CHIP__NOPE", "1", "chip.nope", "unknown key"),
        (f"{ENV_PREFIX}NOPE__PORT", "1", "nope", "unknown section"),
        (f"{ENV_PREFIX}PIPELINE__REALTIME_PRIORITY", "-1", "pipeline.realtime_priority", "0 (off) or 1-99"),
    ],
)
def test_environment_errors_name_the_variable_and_the_key(name: str, value: str, key: str, problem: str) -> None:
    e = _error(None, {name: value})
    section = name.removeprefix(ENV_PREFIX).split("__")[0]
    assert e.source.startswith(f"{ENV_PREFIX}{section}__")
    assert e.key == key
    assert problem in e.problem


@pytest.mark.parametrize(
    "name", [f"{ENV_PREFIX}CHIP", f"{ENV_PREFIX}CHIP__MASK__RATIO", f"{ENV_PREFIX}__PORT", f"{ENV_PREFIX}CHIP__"]
)
def test_a_malformed_variable_name_is_named(name: str) -> None:
    e = _error(None, {name: "1"})
    assert e.source == name
    assert e.key == ""
    assert name in str(e) and "<SECTION>__<KEY>" in str(e)


def test_bind_host_replaces_the_endpoint_host_only_for_tcp() -> None:
    from services.config import bind_endpoint

    assert bind_endpoint("tcp://sensor:7711", "*") == "tcp://*:7711"
    assert bind_endpoint("tcp://127.0.0.1:7711", "") == "tcp://127.0.0.1:7711"
    assert bind_endpoint("ipc:///run/speck/sensor", "*") == "ipc:///run/speck/sensor"


def test_string_settings_take_the_variable_as_written() -> None:
    env = {"SPECK_EDGE__PIPELINE__STREAM": "1", "SPECK_EDGE__SENSOR__SOURCE": "inf", "SPECK_EDGE__CHIP__CONFIG": "true"}
    s = load_settings(None, env)
    assert (s.pipeline.stream, s.sensor.source, s.chip.config) == ("1", "inf", "true")
    assert load_settings(None, {"SPECK_EDGE__PIPELINE__STREAM": '"cam 1"'}).pipeline.stream == "cam 1"
    with pytest.raises(SettingsError, match="SPECK_EDGE__CHIP__MASK_RATIO: chip.mask_ratio"):
        load_settings(None, {"SPECK_EDGE__CHIP__MASK_RATIO": "half"})
