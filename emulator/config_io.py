"""The chip-config file format: a JSON file for structure plus a sibling ``.npz`` for the arrays.

The JSON (``docs/chip-config.md``) holds ``format`` (:data:`FORMAT_NAME`), ``version``
(:data:`FORMAT_VERSION`), ``arrays`` (the ``.npz`` file name, relative to the JSON file),
``slow_clock_hz``, ``layers``, ``dvs`` and ``readout``; every scalar field of
:mod:`emulator.config` under its own name. The ``.npz`` holds, per layer, ``<name>.weights``
(``[f, c, ky, kx]``) and optionally ``<name>.bias`` and ``<name>.initial_state``.

Loading refuses unknown keys (a typo must not pass silently), missing or unused arrays and newer
format versions, and re-raises every hardware-limit error as a :class:`ConfigError` naming the
file and the JSON path of the field (``net.json: layers[2].stride: 3 is not one of (1, 2, 4, 8)``).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, cast

import numpy as np

from emulator.config import (
    ChipConfig,
    ConfigLimitError,
    CoreLayer,
    Destination,
    DvsConfig,
    NoiseFilter,
    ReadoutConfig,
)

FORMAT_NAME = "speck-edge-chip-config"
FORMAT_VERSION = 1
"""Version 1: the first format. A reader refuses files with a larger version."""
ARRAY_FIELDS = ("weights", "bias", "initial_state")
"""CoreLayer fields stored in the ``.npz`` as ``<layer name>.<field>``."""
_TOP_KEYS = {"format", "version", "arrays", "slow_clock_hz", "layers", "dvs", "readout"}


class ConfigError(ValueError):
    """A config file that cannot be loaded: ``file``, ``path`` (JSON path, may be empty), ``problem``."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        super().__init__(f"{file}: {path}: {problem}" if path else f"{file}: {problem}")
        self.file, self.path, self.problem = file, path, problem


class _Bad(Exception):
    """Internal: a problem at a JSON path, turned into a :class:`ConfigError` naming the file."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path, self.problem = path, problem


# --- writing ------------------------------------------------------------------------------------


def save_config(config: ChipConfig, path_json: str | Path) -> None:
    """Write ``config`` as ``path_json`` plus ``path_json`` with suffix ``.npz`` beside it."""
    path_json = Path(path_json)
    path_npz = path_json.with_suffix(".npz")
    doc, arrays = config_to_dict(config, path_npz.name)
    path_json.write_text(json.dumps(doc, indent=2) + "\n")
    with path_npz.open("wb") as f:
        np.savez(f, **cast(dict[str, Any], arrays))  # cast: the stubs mistype **kwds


def config_to_dict(config: ChipConfig, arrays_name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document and the named arrays for ``config`` (pure; :func:`save_config` writes them)."""
    doc: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "arrays": arrays_name}
    doc["slow_clock_hz"] = config.slow_clock_hz
    doc["layers"] = [_scalars(layer) for layer in config.layers]
    doc["dvs"] = _scalars(config.dvs)
    doc["readout"] = _scalars(config.readout)
    arrays: dict[str, np.ndarray] = {}
    for layer in config.layers:
        for name in ARRAY_FIELDS:
            if getattr(layer, name) is not None:
                arrays[f"{layer.name}.{name}"] = getattr(layer, name)
    return doc, arrays


def _scalars(obj: CoreLayer | DvsConfig | ReadoutConfig | NoiseFilter | Destination) -> dict[str, Any]:
    """Every non-array field as a JSON value (tuples as lists, nested configs as objects)."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in ARRAY_FIELDS and isinstance(obj, CoreLayer):
            continue
        if isinstance(value, NoiseFilter):
            value = _scalars(value)
        elif f.name == "destinations":
            value = [_scalars(d) for d in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


# --- reading ------------------------------------------------------------------------------------


def load_config(path_json: str | Path) -> ChipConfig:
    """Read and validate a config; every problem is a :class:`ConfigError` naming file and field."""
    path_json = Path(path_json)
    try:
        doc = json.loads(path_json.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(path_json.name, "", f"not valid JSON: {e}") from e
    try:
        _check_header(doc)
        path_npz = path_json.parent / doc["arrays"]
        if not path_npz.is_file():
            raise _Bad("arrays", f"{doc['arrays']!r} not found beside {path_json.name}")
        with np.load(path_npz, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except _Bad as e:
        raise ConfigError(path_json.name, e.path, e.problem) from None
    return config_from_dict(doc, arrays, path_json.name)


def config_from_dict(doc: Any, arrays: dict[str, np.ndarray], source: str = "<config>") -> ChipConfig:
    """Build and validate a :class:`ChipConfig` from a parsed JSON document and its arrays."""
    try:
        _check_header(doc)
        unused = set(arrays)
        layers = _layers(_list(doc, "layers", "layers"), arrays, unused)
        if unused:
            raise _Bad("arrays", f"{sorted(unused)} match no layer field (keys are '<layer name>.<field>')")
        kwargs: dict[str, Any] = {"layers": tuple(layers)}
        if "dvs" in doc:
            kwargs["dvs"] = _dvs(doc["dvs"])
        if "readout" in doc:
            kwargs["readout"] = _build(ReadoutConfig, _object(doc["readout"], "readout", ReadoutConfig), "readout")
        if "slow_clock_hz" in doc:
            kwargs["slow_clock_hz"] = doc["slow_clock_hz"]
        return _build(ChipConfig, kwargs, "")
    except _Bad as e:
        raise ConfigError(source, e.path, e.problem) from None


def _check_header(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise _Bad("", "the top level is not a JSON object")
    _refuse_unknown(doc, _TOP_KEYS, "")
    if doc.get("format") != FORMAT_NAME:
        raise _Bad("format", f"{doc.get('format')!r} is not {FORMAT_NAME!r}")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _Bad("version", f"{version!r} is not a format version (1, 2, ...)")
    if version > FORMAT_VERSION:
        raise _Bad("version", f"{version} is newer than this speck-edge reads (up to {FORMAT_VERSION}): upgrade it")
    if not isinstance(doc.get("arrays"), str) or Path(doc["arrays"]).is_absolute():
        raise _Bad("arrays", f"{doc.get('arrays')!r} is not a file name relative to the JSON file")


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix and path else prefix or path


def _refuse_unknown(obj: dict[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _Bad(_join(path, str(unknown[0])), f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _object(obj: Any, path: str, cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """``obj`` as keyword arguments of ``cls``: a JSON object with no unknown and no missing keys."""
    if not isinstance(obj, dict):
        raise _Bad(path, f"{obj!r} is not a JSON object")
    names = {f.name for f in fields(cls)} - set(exclude)
    _refuse_unknown(obj, names, path)
    for f in fields(cls):
        if f.name in names and f.name not in obj and f.default is MISSING and f.default_factory is MISSING:
            raise _Bad(_join(path, f.name), "is missing")
    return dict(obj)


def _list(obj: dict[str, Any], key: str, path: str) -> list[Any]:
    if key not in obj:
        raise _Bad(path, "is missing")
    if not isinstance(obj[key], list):
        raise _Bad(path, f"{obj[key]!r} is not a JSON list")
    return list(obj[key])


def _build(cls: Any, kwargs: dict[str, Any], path: str) -> Any:
    """``cls(**kwargs)`` with hardware-limit errors re-raised at their JSON path."""
    try:
        return cls(**kwargs)
    except ConfigLimitError as e:
        raise _Bad(_join(path, e.path), e.problem) from None


def _destinations(obj: dict[str, Any], path: str) -> tuple[Destination, ...]:
    if "destinations" not in obj:
        return ()
    items = _list(obj, "destinations", _join(path, "destinations"))
    return tuple(
        _build(Destination, _object(d, f"{path}.destinations[{j}]", Destination), f"{path}.destinations[{j}]")
        for j, d in enumerate(items)
    )


def _layers(items: list[Any], arrays: dict[str, np.ndarray], unused: set[str]) -> list[CoreLayer]:
    """Each layer with its arrays; names checked unique first, as they key the arrays."""
    layers: list[CoreLayer] = []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        for k, other in enumerate(layers):
            if other.name == name:
                raise _Bad(f"layers[{i}].name", f"{name!r} is already used by layers[{k}]")
        layers.append(_layer(item, f"layers[{i}]", arrays, unused))
    return layers


def _layer(obj: Any, path: str, arrays: dict[str, np.ndarray], unused: set[str]) -> CoreLayer:
    kwargs = _object(obj, path, CoreLayer, exclude=ARRAY_FIELDS)
    if not isinstance(kwargs.get("name"), str) or not kwargs["name"].strip():
        raise _Bad(_join(path, "name"), f"{kwargs.get('name')!r} is not a non-empty string")
    for name in ARRAY_FIELDS:
        key = f"{kwargs['name']}.{name}"
        if key in arrays:
            kwargs[name] = arrays[key]
            unused.discard(key)
        elif name == "weights":
            raise _Bad(_join(path, name), f"array {key!r} is missing from the arrays file")
    kwargs["destinations"] = _destinations(kwargs, path)
    try:
        return _build(CoreLayer, kwargs, path)  # type: ignore[no-any-return]
    except _Bad as e:
        name = e.path.rpartition(".")[2]
        if name in ARRAY_FIELDS:
            raise _Bad(e.path, f"{e.problem} (array {kwargs['name']}.{name!s})") from None
        raise


def _dvs(obj: Any) -> DvsConfig:
    kwargs = _object(obj, "dvs", DvsConfig)
    if "noise_filter" in kwargs:
        noise = _object(kwargs["noise_filter"], "dvs.noise_filter", NoiseFilter)
        kwargs["noise_filter"] = _build(NoiseFilter, noise, "dvs.noise_filter")
    kwargs["destinations"] = _destinations(kwargs, "dvs")
    return _build(DvsConfig, kwargs, "dvs")  # type: ignore[no-any-return]
