"""Gap and restart counting from sequence numbers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proto.sequence import SequenceTracker


@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_lost_counts_exactly_the_missing_messages(delivered: list[bool]) -> None:
    tracker = SequenceTracker()
    received = [seq for seq, ok in enumerate(delivered) if ok]
    for seq in received:
        tracker.track("cam0", "events.raw", seq)
    if received:
        assert tracker.lost == received[-1] - received[0] + 1 - len(received)
    assert tracker.restarts == 0


def test_streams_and_topics_are_counted_apart_and_restarts_are_not_loss() -> None:
    tracker = SequenceTracker()
    assert [tracker.track("a", "t", s) for s in (0, 1, 5)] == [0, 0, 3]
    assert tracker.track("b", "t", 7) == 0  # first message of another stream: no history, no loss
    assert tracker.track("a", "telemetry", 2) == 0
    assert tracker.track("a", "t", 0) == 0  # the sender restarted
    assert (tracker.lost, tracker.restarts) == (3, 1)
