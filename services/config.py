"""The services' configuration: one TOML file, overridden by environment variables.

Every key and its default is a field below; ``deploy/config/default.toml`` lists them all, with
comments (a test keeps the two equal). A file only needs the keys it changes. An environment
variable ``SPECK_EDGE__<SECTION>__<KEY>`` (upper case, double underscores) overrides one key,
its value read as a TOML value (``0.3``, ``true``, ``"tcp://…"``) or, failing that, as a string.
Unknown sections or keys and wrong types are errors that name the file (or variable) and the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from proto.topics import ENDPOINTS
from services.realtime import check_priority

ENV_PREFIX = "SPECK_EDGE__"
LIVE_SCHEME = "dv://"
"""A sensor source that starts with this is a live camera (dv-processing's NetworkWriter), not a file."""

LOSSLESS_ENDPOINTS: Mapping[str, str] = {
    "sensor": "tcp://127.0.0.1:7721",
    "filter": "tcp://127.0.0.1:7722",
    "chip": "tcp://127.0.0.1:7723",
}
"""PUSH endpoints of the data path in lossless mode (telemetry and predictions stay on PUB)."""


class SettingsError(ValueError):
    """A bad config file or override: ``source`` (file or variable), ``key`` (``section.key``), ``problem``."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
        self.source, self.key, self.problem = source, key, problem


@dataclass(frozen=True)
class PipelineSettings:
    stream: str = "cam0"
    """Stream id in every data message."""
    lossless: bool = False
    """PUSH/PULL with back-pressure between stages (offline evaluation) instead of real-time PUB/SUB."""
    telemetry_interval_s: float = 1.0
    hwm: int = 100_000
    """ZeroMQ high-water mark (messages) of every data socket."""
    bind_host: str = ""
    """Bind every socket on this host instead of the endpoint's (e.g. ``*`` in containers, where the
    endpoints name other containers: ``tcp://sensor:7711``); empty = bind the endpoint as written."""
    realtime_priority: int = 0
    """``SCHED_FIFO`` priority (1–99) of the data path (sensor, filter, chip, readout) in real-time
    mode; 0 = the normal scheduler (:mod:`services.realtime`)."""


@dataclass(frozen=True)
class EndpointSettings:
    sensor: str = ENDPOINTS["sensor"]
    filter: str = ENDPOINTS["filter"]
    chip: str = ENDPOINTS["chip"]
    readout: str = ENDPOINTS["readout"]
    sensor_lossless: str = LOSSLESS_ENDPOINTS["sensor"]
    filter_lossless: str = LOSSLESS_ENDPOINTS["filter"]
    chip_lossless: str = LOSSLESS_ENDPOINTS["chip"]

    def publisher(self, service: str) -> str:
        return str(getattr(self, service))

    def lossless_data(self, service: str) -> str:
        return str(getattr(self, f"{service}_lossless"))


@dataclass(frozen=True)
class SensorSettings:
    source: str = "default-recording"
    """A recording path, ``dv://HOST:PORT``, or ``default-recording`` (bundled)."""
    speed: float = 1.0
    """Replay speed; 0 = as fast as possible."""
    loop: bool = True
    window_us: int = 1000

    @property
    def live(self) -> bool:
        """A live camera: it paces itself, whatever ``speed`` says."""
        return self.source.startswith(LIVE_SCHEME)


@dataclass(frozen=True)
class ChipSettings:
    config: str = "default"
    """A chip config JSON (docs/chip-config.md), or ``default`` (the bundled net)."""
    mask_ratio: float = 0.5
    """Share of input windows the attention mask drops (0 = off)."""
    mask_window_us: int = 15_000
    """Event-time length of one input window judged by the mask."""
    mask_history: int = 32
    """Completed windows the mask's running threshold looks back on."""


@dataclass(frozen=True)
class ExporterSettings:
    host: str = "127.0.0.1"
    port: int = 8790
    """Outside 9100–9999 (the range of public Prometheus exporters)."""


@dataclass(frozen=True)
class Settings:
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    endpoints: EndpointSettings = field(default_factory=EndpointSettings)
    sensor: SensorSettings = field(default_factory=SensorSettings)
    chip: ChipSettings = field(default_factory=ChipSettings)
    exporter: ExporterSettings = field(default_factory=ExporterSettings)


def _typed(source: str, key: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of ``default`` (an int is welcome where a float is)."""
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not expected:
        raise SettingsError(source, key, f"expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


RANGE_CHECKS: Mapping[str, Callable[[Any], Any]] = {"pipeline.realtime_priority": check_priority}
"""Keys whose values have a range: ``section.key`` → a check that raises ``ValueError``."""


def _checked(source: str, key: str, value: Any) -> Any:
    check = RANGE_CHECKS.get(key)
    if check is not None:
        try:
            check(value)
        except ValueError as e:
            raise SettingsError(source, key, str(e)) from None
    return value


def _apply(settings: Settings, source: str, doc: Mapping[str, Any]) -> Settings:
    for section, body in doc.items():
        if section not in {f.name for f in fields(Settings)}:
            raise SettingsError(
                source, section, f"unknown section; sections: {', '.join(f.name for f in fields(Settings))}"
            )
        if not isinstance(body, dict):
            raise SettingsError(source, section, "expected a table")
        current = getattr(settings, section)
        names = {f.name for f in fields(current)}
        changes = {}
        for key, value in body.items():
            if key not in names:
                raise SettingsError(source, f"{section}.{key}", f"unknown key; keys: {', '.join(sorted(names))}")
            changes[key] = _checked(
                source, f"{section}.{key}", _typed(source, f"{section}.{key}", value, getattr(current, key))
            )
        settings = replace(settings, **{section: replace(current, **changes)})
    return settings


def _env_value(text: str, default: Any) -> Any:
    """A variable's text as the setting's type: strings as written (a quoted TOML string unquoted:
    ``STREAM=1`` is the stream "1"), anything else read as a TOML value."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    if isinstance(default, str) and not isinstance(value, str):
        return text
    return value


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str, str, str]]:
    """``(variable, section, key, text)`` of every ``SPECK_EDGE__SECTION__KEY`` variable."""
    found = []
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise SettingsError(name, "", f"expected {ENV_PREFIX}<SECTION>__<KEY>")
        found.append((name, parts[0], parts[1], text))
    return found


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file at ``path`` (if any), then ``SPECK_EDGE__…`` variables."""
    settings = Settings()
    if path is not None:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(str(path), "", f"not valid TOML: {e}") from None
        settings = _apply(settings, str(path), doc)
    env = os.environ if environ is None else environ
    for variable, section, key, text in _env_overrides(env):
        default = getattr(getattr(settings, section, None), key, None)
        settings = _apply(settings, variable, {section: {key: _env_value(text, default)}})
    return settings


def as_dict(settings: Settings) -> dict[str, dict[str, Any]]:
    """``settings`` as the nested mapping a TOML file holds."""
    return {f.name: {g.name: getattr(getattr(settings, f.name), g.name) for g in fields(getattr(settings, f.name))}
            for f in fields(settings)}  # fmt: skip


def bind_endpoint(endpoint: str, bind_host: str) -> str:
    """``endpoint`` with its host replaced by ``bind_host`` (``tcp://sensor:7711`` → ``tcp://*:7711``);
    unchanged when ``bind_host`` is empty or the endpoint is not TCP."""
    if not bind_host or not endpoint.startswith("tcp://"):
        return endpoint
    port = endpoint.rsplit(":", 1)[1]
    return f"tcp://{bind_host}:{port}"
