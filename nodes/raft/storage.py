"""The storage interface the core is built on, and the in-memory implementation.

The core keeps the log since the last snapshot in memory (its size is bounded by
``snapshot_interval``) and never writes: the driver persists what a ``Ready``
carries through ``Storage.save`` (one durable group commit per Ready), and a
node that restarts is rebuilt from ``Storage.load()`` alone. So a crash keeps
exactly what was saved, which is what the simulator relies on to model
crash-restart truthfully. ``nodes.storage`` holds the durable implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .messages import ClusterConfig, Entry, HardState, Snapshot, SnapshotMeta


@dataclass(slots=True)
class PersistedState:
    """Everything a node kept: its hard state, its latest snapshot (if any), and
    the log entries after that snapshot, in index order without gaps."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    initial_config: ClusterConfig = field(default_factory=ClusterConfig)


class Storage(Protocol):
    def load(self) -> PersistedState:
        """Everything saved so far (empty on a new node)."""

    def save(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """Make durable, in one group commit, in this order: ``snapshot`` (received
        from the leader: the saved entries up to its index go; the entries after it
        are kept only if the saved log holds an entry with the snapshot's index and
        term, else every saved entry goes, paper section 7), then ``entries`` (``entries[0].index`` may be at or
        below the last saved index: the saved suffix from there on is replaced),
        then ``hard_state``. Returns only once all of it survives a crash."""

    def compact(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` (taken by the state machine at ``snapshot.meta.index``)
        durably and drop the saved entries it covers."""

    def snapshot(self) -> Snapshot | None:
        """The latest snapshot, to send to a follower that is too far behind."""


class MemoryStorage:
    """Storage in memory: 'durable' means it survives the simulator's crash of a node
    object, which keeps only what was saved here."""

    def __init__(self, initial_config: ClusterConfig | None = None) -> None:
        self._state = PersistedState(initial_config=initial_config or ClusterConfig())
        self.save_count = 0

    def load(self) -> PersistedState:
        s = self._state
        return PersistedState(s.hard_state, s.snapshot, list(s.entries), s.initial_config)

    def save(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        s = self._state
        if snapshot is not None:
            keep = retained_after_snapshot(s.entries, snapshot.meta)
            s.snapshot = snapshot
            s.entries = keep
        if entries:
            first = entries[0].index
            base = s.snapshot.meta.index if s.snapshot else 0
            cut = first - base - 1
            assert 0 <= cut <= len(s.entries), (first, base, len(s.entries))
            del s.entries[cut:]
            s.entries.extend(entries)
        if hard_state is not None:
            s.hard_state = hard_state
        self.save_count += 1

    def compact(self, snapshot: Snapshot) -> None:
        s = self._state
        if s.snapshot is not None and s.snapshot.meta.index >= snapshot.meta.index:
            return
        s.snapshot = snapshot
        s.entries = [e for e in s.entries if e.index > snapshot.meta.index]

    def snapshot(self) -> Snapshot | None:
        return self._state.snapshot


def retained_after_snapshot(entries: list[Entry], meta: SnapshotMeta) -> list[Entry]:
    """The entries that survive installing a snapshot at ``meta`` (paper section 7):
    those after it, if ``entries`` holds the snapshot's last entry; else none."""
    for k, e in enumerate(entries):
        if e.index == meta.index:
            return entries[k + 1 :] if e.term == meta.term else []
    return []

