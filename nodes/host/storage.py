"""The node host's storage shape: groups stage their writes, the host syncs once.

A node host persists every group's Ready of one loop turn with one sync (one
fsync for the whole node, Dragonboat's and TiKV's shared log). So a group's
storage has two phases: ``stage(hard_state, entries, snapshot)`` queues what a
Ready carries (same meaning and order as ``Storage.save``), and the host's one
``sync()`` makes everything staged by every group durable; only then may the
groups' votes and acknowledgements leave (``nodes.host.driver``).

``HostStorage`` is what the host needs: ``open_group(gid, initial_config)``
returning a ``GroupStorage`` (the ``Storage`` protocol plus ``stage``),
``sync()``, and ``drop_group(gid)``. The shared write-ahead log
(``nodes.storage.shared.SharedWal``) has this shape; ``MemoryWal`` here is the
in-memory one for tests, transcripts and the simulator: "durable" is what
``sync`` applied, and ``crash()`` throws away whatever was staged but not synced.
"""

from __future__ import annotations

from typing import Protocol

from nodes.raft.messages import ClusterConfig, Entry, HardState, Snapshot
from nodes.raft.storage import MemoryStorage, Storage

__all__ = ["GroupStorage", "HostStorage", "MemoryGroupStorage", "MemoryWal"]


class GroupStorage(Storage, Protocol):
    def stage(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """Queue a Ready's writes; durable after the host's next ``sync()``."""


class HostStorage(Protocol):
    def open_group(self, gid: int, initial_config: ClusterConfig) -> GroupStorage:
        """The storage of group ``gid`` (created with ``initial_config`` if new)."""

    def sync(self) -> None:
        """Make everything every group staged durable, in one sync."""

    def drop_group(self, gid: int) -> None:
        """Forget group ``gid`` (its replica left this node)."""


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
        self.groups: dict[int, MemoryGroupStorage] = {}
        self.syncs = 0

    def open_group(self, gid: int, initial_config: ClusterConfig) -> MemoryGroupStorage:
        g = self.groups.get(gid)
        if g is None:
            g = self.groups[gid] = MemoryGroupStorage(initial_config)
        return g

    def sync(self) -> None:
        for g in self.groups.values():
            if g.staged:
                g.flush()
        self.syncs += 1

    def drop_group(self, gid: int) -> None:
        self.groups.pop(gid, None)

    def crash(self) -> None:
        """A power cut: whatever was staged and not synced is gone."""
        for g in self.groups.values():
            g.staged.clear()
