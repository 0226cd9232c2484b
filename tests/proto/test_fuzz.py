"""Throw 100 000 random and mutated frame lists at decode: only ProtocolError or a valid message.

A seeded ``random.Random`` drives the loop (hypothesis would be far too slow for
this count); a failure names the seed and iteration, so it replays exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from proto.codec import REASONS, ProtocolError, decode, encode
from proto.events import EVENT_DTYPE
from proto.messages import EventBatch, Message
from proto.topics import TOPICS

from .forge import ENVELOPE, SAMPLES, frames_of, header_of

SEED = 20240601
ITERATIONS = 100_000
Frames = list[Any]


def corpus() -> list[list[bytes]]:
    """Valid frames of every kind, plus an empty and a larger event batch."""
    rng = np.random.default_rng(SEED)
    events = np.zeros(64, EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(0, 1 << 40, 64))
    events["x"], events["y"], events["p"] = rng.integers(0, 346, 64), rng.integers(0, 260, 64), rng.integers(0, 2, 64)
    extra = [EventBatch(events=events, width=346, height=260, **ENVELOPE),
             EventBatch(events=events[:0], width=1, height=1, topic="events.filtered", **ENVELOPE)]  # fmt: skip
    return [frames_of(make()) for make in SAMPLES.values()] + [frames_of(m) for m in extra]


def random_object(r: random.Random, depth: int = 0) -> Any:
    """Any msgpack-able value: scalars of awkward sizes, strings, bytes, nested lists and maps."""
    pick = r.randrange(11 if depth < 3 else 7)
    scalars: list[Callable[[], Any]] = [
        lambda: None, lambda: r.random() < 0.5,
        lambda: r.choice([0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**32, 2**63 - 1, -(2**63), 2**64 - 1]),
        lambda: r.choice([0.0, -0.0, 1.5, float("nan"), float("inf"), float("-inf"), 1e308]),
        lambda: r.choice(["", "v", "k", "events", "prediction", "x" * 70, "\u00e9\u4e2d", "cam0"]),
        lambda: r.randbytes(r.randrange(8)), lambda: r.randrange(-(2**63), 2**64),
    ]  # fmt: skip
    if pick < len(scalars):
        return scalars[pick]()
    size = r.randrange(5)
    if pick == 7:
        return [random_object(r, depth + 1) for _ in range(size)]
    keys = ["v", "k", "s", "n", "t0", "t1", "c", "ts", "to", "w", "h", "b", "id", "l", "p", "lat", "x", "g", "?"]
    return {r.choice(keys) if pick < 10 else str(r.random()): random_object(r, depth + 1) for _ in range(size)}


def mutate_header(r: random.Random, frames: list[bytes]) -> Frames:
    """Change, drop or add one key of the header (or of its body)."""
    head = header_of(frames)
    target = head["b"] if "b" in head and isinstance(head["b"], dict) and r.random() < 0.4 else head
    action, key = r.randrange(3), r.choice(list(target) or ["v"])
    if action == 0:
        target[key] = random_object(r)
    elif action == 1:
        target.pop(key, None)
    else:
        target[r.choice(["zz", key + "_", "w", "b", "x"])] = random_object(r)
    return [frames[0], msgpack.packb(head), *frames[2:]]


def flip_bits(r: random.Random, frames: list[bytes]) -> Frames:
    i = r.randrange(len(frames))
    data = bytearray(frames[i])
    for _ in range(r.randrange(1, 4)):
        if data:
            data[r.randrange(len(data))] ^= 1 << r.randrange(8)
    return [*frames[:i], bytes(data), *frames[i + 1 :]]


def resize_frame(r: random.Random, frames: list[bytes]) -> Frames:
    i = r.randrange(len(frames))
    data = frames[i]
    cut = r.randrange(len(data) + 1)
    data = data[:cut] if r.random() < 0.5 else data + r.randbytes(r.choice([1, 7, 8, 16, 32]))
    return [*frames[:i], data, *frames[i + 1 :]]


def reshape_frames(r: random.Random, frames: list[bytes]) -> Frames:
    out = list(frames)
    action = r.randrange(4)
    if action == 0 and out:
        out.pop(r.randrange(len(out)))
    elif action == 1:
        out.insert(r.randrange(len(out) + 1), r.choice(out))
    elif action == 2:
        r.shuffle(out)
    else:
        out[0] = r.choice(TOPICS).wire
    return out


def random_frames(r: random.Random, frames: list[bytes]) -> Frames:
    n = r.choice([0, 1, 2, 2, 3, 3, 4])
    return [r.randbytes(r.randrange(48)) for _ in range(n)]


def random_header(r: random.Random, frames: list[bytes]) -> Frames:
    return [frames[0], msgpack.packb(random_object(r)), *frames[2:]]


def random_payload(r: random.Random, frames: list[bytes]) -> Frames:
    payload = r.randbytes(16 * r.randrange(5))
    if r.random() < 0.5 and len(frames) == 3:  # keep count and span plausible so the records are reached
        head = header_of(frames)
        rec = np.frombuffer(payload, EVENT_DTYPE)
        t = rec["t"] if len(rec) else np.zeros(1, np.uint64)
        head.update(c=len(rec), t0=int(t[0]), t1=int(t[-1]))
        return [frames[0], msgpack.packb(head), payload]
    return [*frames[:2], payload]


def odd_objects(r: random.Random, frames: list[bytes]) -> Any:
    odd = r.choice([None, 3, 2.5, "text", [b"a"], np.zeros(3), np.zeros((2, 4), np.uint8)[:, ::2], object()])
    out: Frames = list(frames)
    out[r.randrange(len(out))] = odd
    return out if r.random() < 0.8 else odd


MUTATIONS = [mutate_header, mutate_header, flip_bits, flip_bits, resize_frame, reshape_frames, random_frames,
             random_header, random_payload, odd_objects]  # fmt: skip


def check_valid(msg: Message) -> None:
    assert decode(encode(msg)) == msg


def test_decode_only_raises_protocol_error() -> None:
    r = random.Random(SEED)
    valid = corpus()
    seen: Counter[str] = Counter()
    for i in range(ITERATIONS):
        mutation = r.choice(MUTATIONS)
        frames = mutation(r, r.choice(valid))
        try:
            msg = decode(frames)
        except ProtocolError as e:
            assert e.reason in REASONS
            seen[e.reason] += 1
        except Exception as e:  # noqa: BLE001 - the point of the test: report the escapee and how to replay it
            pytest.fail(f"seed {SEED} iteration {i} ({mutation.__name__}): {type(e).__name__}: {e}")
        else:
            check_valid(msg)
            seen["valid"] += 1
    assert sum(seen.values()) == ITERATIONS
    assert len(seen) > len(REASONS) // 2, seen  # the mutations reach deep into the decoder
