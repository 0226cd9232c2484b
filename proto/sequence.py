"""Counting lost messages from sequence numbers (PUB drops silently; receivers count).

Every message carries ``seq``, the sender's counter for its (stream, topic). A
receiver feeds each message's ``(stream, topic, seq)`` to :func:`track`: a jump
forward by more than one is a gap of that many lost messages; a number that is not
larger than the last one means the sender restarted (its counter began again) and
is counted as a restart, not as loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SequenceTracker:
    """Last sequence number per (stream, topic), and what was lost between them."""

    last: dict[tuple[str, str], int] = field(default_factory=dict)
    lost: int = 0
    restarts: int = 0

    def track(self, stream: str, topic: str, seq: int) -> int:
        """Record one received message; returns how many messages were lost just before it."""
        key = (stream, topic)
        prev = self.last.get(key)
        self.last[key] = seq
        if prev is None:
            return 0
        if seq <= prev:
            self.restarts += 1
            return 0
        gap = seq - prev - 1
        self.lost += gap
        return gap
