"""Access to the real recordings in ``shared/data/real`` beside the repository.

They are never copied into the repository. Tests that need them skip with a
reason when the folder is absent — except under ``CI=true``, where a missing
corpus is a failure (CI always has it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.needs import unavailable

REAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def real_dir() -> Path:
    """The corpus folder, or skip (fail under CI=true) when it is missing."""
    if not REAL_DIR.is_dir():
        unavailable(f"real recordings not found at {REAL_DIR} (the shared/ folder beside the checkout)")
    return REAL_DIR


def real_file(relpath: str) -> Path:
    path = real_dir() / relpath
    if not path.is_file():
        pytest.fail(f"{path} is listed by the tests but missing from the corpus")
    return path


@dataclass(frozen=True)
class SourceEntry:
    """One recording's line in SOURCES.txt."""

    relpath: str
    events: int
    duration_s: float
    on_fraction: float
    monotonic: bool
    first_t_us: int
    resolution: tuple[int, int] | None  # None where SOURCES says "see sensor"
    x_range: tuple[int, int]
    y_range: tuple[int, int]


_ENTRY = re.compile(r"^== (?P<path>\S+)$", re.MULTILINE)
_RES = re.compile(r"resolution:\s+(?:(\d+)x(\d+)|see sensor)\s+\(observed x (\d+)-(\d+), y (\d+)-(\d+)\)")
_EVENTS = re.compile(
    r"events:\s+([\d,]+)\s+duration: ([\d.]+) s\s+ON fraction: ([\d.]+)\s+t monotonic: (yes|no)\s+first t: (\d+) us"
)


def source_entries() -> list[SourceEntry]:
    """Parse SOURCES.txt into one entry per recording."""
    text = (real_dir() / "SOURCES.txt").read_text()
    marks = list(_ENTRY.finditer(text))
    entries = []
    for m, nxt in zip(marks, marks[1:] + [None], strict=True):
        block = text[m.end() : nxt.start() if nxt else len(text)]
        res, ev = _RES.search(block), _EVENTS.search(block)
        if res is None or ev is None:
            raise ValueError(f"SOURCES.txt entry {m['path']} lacks a resolution or events line")
        entries.append(
            SourceEntry(
                m["path"],
                int(ev[1].replace(",", "")),
                float(ev[2]),
                float(ev[3]),
                ev[4] == "yes",
                int(ev[5]),
                (int(res[1]), int(res[2])) if res[1] else None,
                (int(res[3]), int(res[4])),
                (int(res[5]), int(res[6])),
            )
        )
    return entries


def source_entry(relpath: str) -> SourceEntry:
    """The SOURCES.txt entry of ``relpath`` (skip/fail like :func:`real_file` when the corpus is absent)."""
    real_file(relpath)
    return next(e for e in source_entries() if e.relpath == relpath)
