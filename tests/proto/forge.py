"""Valid sample messages and helpers that forge malformed frames from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from proto.codec import encode
from proto.events import empty_spikes, make_events
from proto.messages import EventBatch, Message, Prediction, SpikeBatch, Telemetry

ENVELOPE: dict[str, Any] = {"stream": "cam0", "seq": 41, "sent_ns": 1_700_000_000_000_000_000, "origin_ns": 1}


def event_batch() -> EventBatch:
    events = make_events([100, 100, 130, 400], [0, 5, 127, 3], [1, 127, 0, 64], [1, 0, 1, 1])
    return EventBatch(events=events, width=128, height=128, **ENVELOPE)


def spike_batch() -> SpikeBatch:
    spikes = empty_spikes(3)
    spikes["t"], spikes["layer"], spikes["channel"] = [7, 9, 9], [0, 3, 8], [1, 2, 3]
    return SpikeBatch(spikes=spikes, **ENVELOPE)


def prediction() -> Prediction:
    return Prediction(
        class_id=3, label="clap", score=0.9, t_start_us=0, t_end_us=100_000, latency_us=950.0,
        extras={"score.wave": 0.05}, **ENVELOPE,
    )  # fmt: skip


def telemetry() -> Telemetry:
    groups: dict[str, dict[str, int | float]] = {
        "rail_joules": {"io": 1.5e-6, "logic": 2.5e-6}, "layer_spikes": {"0": 120, "1": 33},
    }  # fmt: skip
    return Telemetry(values={"events_in_total": 1000, "drop_ratio": 0.01}, groups=groups, **ENVELOPE)


SAMPLES: dict[str, Callable[[], Message]] = {
    "events": event_batch, "spikes": spike_batch, "prediction": prediction, "telemetry": telemetry,
}  # fmt: skip


def frames_of(msg: Message) -> list[bytes]:
    """The frames of ``msg`` as independent bytes, as a socket delivers them."""
    return [bytes(f) for f in encode(msg)]


def header_of(frames: list[bytes]) -> dict[str, Any]:
    head: dict[str, Any] = msgpack.unpackb(frames[1])
    return head


def with_header(frames: list[bytes], edit: Callable[[dict[Any, Any]], object]) -> list[bytes]:
    """``frames`` with the header map changed in place by ``edit``."""
    head = header_of(frames)
    edit(head)
    return [frames[0], msgpack.packb(head), *frames[2:]]


def set_keys(**changes: Any) -> Callable[[dict[Any, Any]], object]:
    return lambda head: head.update(changes)


def set_body(**changes: Any) -> Callable[[dict[Any, Any]], object]:
    return lambda head: head["b"].update(changes)


def drop_key(key: str, body: bool = False) -> Callable[[dict[Any, Any]], object]:
    return lambda head: (head["b"] if body else head).pop(key)


def with_records(frames: list[bytes], records: np.ndarray, consistent: bool = True) -> list[bytes]:
    """``frames`` carrying ``records`` as payload; with ``consistent`` the header's count and
    span are made to describe them, so only the records themselves can be at fault."""
    out = [frames[0], frames[1], records.tobytes()]
    if not consistent or len(records) == 0:
        return out
    t = records["t"]
    return with_header(out, set_keys(c=len(records), t0=int(t[0]), t1=int(t[-1])))
