"""Reader for the es format (not written yet)."""

from __future__ import annotations

from pathlib import Path

from emulator.io.base import Recording

FORMAT = "es"


def probe(head: bytes, path: Path) -> bool:
    return False


def open_(path: Path, chunk_events: int, lenient: bool) -> Recording:
    raise NotImplementedError(FORMAT)
