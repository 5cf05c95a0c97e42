"""The node host's storage shape: groups stage their writes, the host syncs once.

A node host persists every group's Ready of one loop turn with one sync (one
fsync for the whole node, Dragonboat's and TiKV's shared log). So a group's
storage has two phases: ``stage(hard_state, entries, snapshot)`` queues what a
Ready carries (same meaning and order as ``Storage.save``), and the host's one
``sync()`` makes everything staged by every group durable; only then may the
groups' votes and acknowledgements leave (``nodes.host.driver``).

``HostStorage`` is what the host needs: ``open_group(gid, initial_config)``
returning a ``StagedStorage`` (the ``Storage`` protocol plus ``stage``),
``sync()``, ``remove_group(gid)`` and ``groups()`` (what a restarted host
reopens). The shared write-ahead log (``nodes.storage.shared.SharedWal``, branch
wip/wal) has this shape; ``MemoryWal`` here is the
in-memory one for tests, transcripts and the simulator: "durable" is what
``sync`` applied, and ``crash()`` throws away whatever was staged but not synced.
"""

from __future__ import annotations

from typing import Protocol

from nodes.raft.messages import ClusterConfig, Entry, HardState, Snapshot
from nodes.raft.storage import MemoryStorage, Storage

__all__ = ["StagedStorage", "HostStorage", "MemoryGroupStorage", "MemoryWal"]


class StagedStorage(Storage, Protocol):
    def stage(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """Queue a Ready's writes; durable after the host's next ``sync()``."""


class HostStorage(Protocol):
    def open_group(self, gid: int, initial_config: ClusterConfig) -> StagedStorage:
        """The storage of group ``gid`` (created with ``initial_config`` if new)."""

    def sync(self) -> None:
        """Make everything every group staged durable, in one sync."""

    def remove_group(self, gid: int) -> None:
        """Forget group ``gid`` durably (its replica left this node)."""

    def groups(self) -> list[int]:
        """The groups this node holds."""


class MemoryGroupStorage(MemoryStorage):
    """A group's storage in memory with the two-phase shape."""

    def __init__(self, initial_config: ClusterConfig) -> None:
        super().__init__(initial_config)
        self.staged: list[tuple[HardState | None, list[Entry], Snapshot | None]] = []

    def stage(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        self.staged.append((hard_state, list(entries), snapshot))

    def flush(self) -> None:
        for hs, entries, snap in self.staged:
            self.save(hs, entries, snap)
        self.staged.clear()


class MemoryWal:
    """Every group's storage in memory, synced together; counts the syncs."""

    def __init__(self) -> None:
        self.by_id: dict[int, MemoryGroupStorage] = {}
        self.syncs = 0

    def open_group(self, gid: int, initial_config: ClusterConfig) -> MemoryGroupStorage:
        g = self.by_id.get(gid)
        if g is None:
            g = self.by_id[gid] = MemoryGroupStorage(initial_config)
        return g

    def sync(self) -> None:
        for g in self.by_id.values():
            if g.staged:
                g.flush()
        self.syncs += 1

    def remove_group(self, gid: int) -> None:
        del self.by_id[gid]

    def groups(self) -> list[int]:
        return list(self.by_id)

    def crash(self) -> None:
        """A power cut: whatever was staged and not synced is gone."""
        for g in self.by_id.values():
            g.staged.clear()
