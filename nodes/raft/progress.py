"""The leader's view of one follower (thesis 3.5, etcd's Progress).

PROBE: one AppendEntries at a time until the follower's match point is found.
REPLICATE: entries are pipelined optimistically, at most ``max_inflight``
messages unacknowledged (flow control for slow followers).
SNAPSHOT: the follower needs entries the leader has compacted; it receives
the snapshot in chunks, one outstanding at a time, resent on loss.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from .messages import Snapshot


class ProgressState(StrEnum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    inflight: deque[int] = field(default_factory=deque)  # last index of each message in flight
    recent_active: bool = False  # heard from within the current check-quorum window
    acked_seq: int = 0  # highest AppendEntries seq acknowledged in this term (ReadIndex)
    commit_sent: int = 0  # highest leader_commit sent (to propagate commit when idle)
    match_at_heartbeat: int = 0  # match seen at the previous heartbeat (retransmit)
    snapshot: Snapshot | None = None
    snapshot_offset: int = 0

    # Invariant: match < next
    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()
        self.snapshot = None
        self.snapshot_offset = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot = snapshot
        self.snapshot_offset = 0
        self.inflight.clear()

    def update_match(self, index: int) -> bool:
        """Record that the follower holds the leader's log up to ``index``."""
        if index <= self.match:
            return False
        self.match = index
        self.next = max(self.next, index + 1)
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return True

    def paused(self, max_inflight: int) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return True
