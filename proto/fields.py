"""Field checks shared by the message classes (:mod:`proto.messages`).

Each ``check_*(msg, name, ...)`` reads field ``name`` of a frozen dataclass, returns
at once when it is already valid (one ``type`` test and a compare: the hot path of
every decode), and otherwise normalises it (numpy scalars to ``int``/``float``) or
raises :class:`~proto.errors.InvalidMessage` naming the field. Array checks are
vectorised: a handful of numpy reductions per batch, no per-record Python.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from proto.errors import InvalidMessage
from proto.events import Events

U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
MAX_NAME_LEN = 64
"""Longest stream id, label or telemetry name, in characters: they end up as metric labels."""

Number = int | float

_MAX = np.maximum.reduce  # skips ndarray.max's Python-level wrapper: ~1 µs a call on small batches
_OR = np.bitwise_or.reduce
_WORD = np.dtype("<u8")


def set_field(obj: object, name: str, value: object) -> None:
    """Set a field of a frozen dataclass (normalisation inside ``__post_init__`` only)."""
    object.__setattr__(obj, name, value)


def check_int(msg: object, name: str, lo: int, hi: int) -> None:
    """Check (and normalise numpy ints to ``int``) the int field ``name``; fast when already fine."""
    value = getattr(msg, name)
    if type(value) is not int or not lo <= value <= hi:
        set_field(msg, name, _int(name, value, lo, hi))


def check_float(msg: object, name: str) -> None:
    """Check the number field ``name`` and store it as a finite ``float``."""
    value = getattr(msg, name)
    if type(value) is not float or not math.isfinite(value):
        set_field(msg, name, _float(name, value))


def check_name(msg: object, name: str) -> None:
    """Check the str field ``name``: 1–64 characters, encodable as UTF-8."""
    value = getattr(msg, name)
    if type(value) is not str or not 0 < len(value) <= MAX_NAME_LEN or not value.isascii():
        valid_name(name, value)


def _int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidMessage(name, "bad_field_type", f"expected int, got {type(value).__name__}")
    v = int(value)
    if not lo <= v <= hi:
        raise InvalidMessage(name, "bad_field_value", f"{v} is outside [{lo}, {hi}]")
    return v


def _float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidMessage(name, "bad_field_type", f"expected a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidMessage(name, "bad_field_value", f"{v} is not finite")
    return v


def _number(name: str, value: object) -> Number:
    if isinstance(value, (float, np.floating)):
        return _float(name, value)
    return _int(name, value, I64_MIN, U64_MAX)


def valid_name(name: str, value: object) -> str:
    """``value`` if it is a str of 1–64 characters encodable as UTF-8."""
    if not isinstance(value, str):
        raise InvalidMessage(name, "bad_field_type", f"expected str, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_NAME_LEN:
        raise InvalidMessage(name, "bad_field_value", f"length {len(value)} is outside [1, {MAX_NAME_LEN}]")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(name, "bad_field_value", "not encodable as UTF-8 (a lone surrogate)") from None
    return value


def mapping(name: str, value: object) -> Mapping[Any, Any]:
    """``value`` if it is a mapping (its keys and values are checked by the caller)."""
    if not isinstance(value, Mapping):
        raise InvalidMessage(name, "bad_field_type", f"expected a mapping, got {type(value).__name__}")
    return value


def numbers(name: str, value: object) -> dict[str, Number]:
    """A plain-dict copy of a str → number mapping, every key and value checked."""
    return {valid_name(f"{name} key", k): _number(f"{name}.{k}", v) for k, v in mapping(name, value).items()}


def frozen_array(name: str, value: object, dtype: np.dtype[Any]) -> np.ndarray:
    """A read-only, C-contiguous view of a 1-D array of ``dtype``.

    An array with the same fields and formats but another layout is copied into
    ``dtype`` (zeroed padding): numpy 2's ``np.concatenate``/``hstack``/``append``
    of padded structured arrays return packed ones (13 bytes an event, not 16).
    """
    if not isinstance(value, np.ndarray) or value.ndim != 1 or not _same_fields(value.dtype, dtype):
        got = f"{value.dtype} ndim={value.ndim}" if isinstance(value, np.ndarray) else type(value).__name__
        raise InvalidMessage(name, "bad_field_type", f"expected a 1-D array of {dtype}, got {got}")
    if value.dtype != dtype:
        relaid = np.zeros(len(value), dtype)
        relaid[...] = value  # structured assignment goes field by field
        value = relaid
    if value.flags.c_contiguous and not value.flags.writeable:
        return value  # already a frozen view (e.g. fresh from decode)
    view = np.ascontiguousarray(value).view()
    view.flags.writeable = False
    return view


def _same_fields(got: np.dtype[Any], want: np.dtype[Any]) -> bool:
    if got == want:
        return True
    if want.names is None or got.names != want.names or got.fields is None or want.fields is None:
        return False
    return all(got.fields[n][0] == want.fields[n][0] for n in want.names)


def check_events(events: Events, width: int, height: int) -> None:
    """Vectorised checks of coordinates, polarity and time order: no per-event Python."""
    if len(events) == 0:
        return
    # One pass proves the common case: the OR of values bounds their maximum from above.
    bits = int(_OR(events.view(_WORD)[1::2]))  # the second word of each event: x | y << 16 | p << 32 | padding << 40
    if (bits & 0xFFFF) >= width or (bits >> 16 & 0xFFFF) >= height or (bits >> 32 & 0xFF) > 1:
        _check_ranges(events, width, height)  # exact maxima: raise naming the field, or pass
    check_time_order("events.t", events)


def _check_ranges(events: Events, width: int, height: int) -> None:
    for name, limit in (("x", width), ("y", height)):
        top = int(_MAX(events[name]))
        if top >= limit:
            side = "width" if name == "x" else "height"
            raise InvalidMessage(f"events.{name}", "coord_out_of_range", f"{name} = {top} >= {side} {limit}")
    if int(_MAX(events["p"])) > 1:
        raise InvalidMessage("events.p", "bad_polarity", f"polarity {int(_MAX(events['p']))} is not 0 or 1")


def check_time_order(name: str, records: np.ndarray) -> None:
    """Raise unless ``records["t"]`` never decreases (equal timestamps are fine)."""
    t = records["t"]
    if len(t) > 1 and not bool((t[1:] >= t[:-1]).all()):
        i = int(np.argmax(t[1:] < t[:-1]))
        raise InvalidMessage(name, "time_not_monotonic", f"t[{i + 1}] = {int(t[i + 1])} < t[{i}] = {int(t[i])}")
