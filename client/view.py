"""A client's copy of replicated state, kept from a snapshot plus ordered updates.

This is the Clone pattern of the ZeroMQ guide with the Raft index as the
sequence number: subscribe first, then ask for a snapshot (state plus the index
it reflects), drop published updates whose index is not above it, and apply
the rest in order. Each update carries the command and the replicated clock, so
the view applies it to its own instance of the same deterministic state machine
and reaches the same state as every node. An index that skips ahead is a gap
(a slow subscriber lost updates): the view asks for a new snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nodes.codec import Update
from nodes.statemachine import BATCH_MACHINE, ApplyContext, StateMachine


@dataclass(slots=True)
class ViewStats:
    applied: int = 0
    dropped_old: int = 0
    gaps: int = 0
    snapshots: int = 0


class ReplicatedView:
    """``loaded``: there is state to show. ``synced``: the update stream lines up
    with it, so updates apply directly; otherwise they wait in a buffer for the
    snapshot that a (re)subscription asked for."""

    def __init__(self, machines: dict[str, Callable[[], StateMachine]]) -> None:
        self._factories = machines
        self.machines: dict[str, StateMachine] = {n: f() for n, f in machines.items()}
        self.index = 0
        self.term = 0  # term of the last update applied (a newer one means a new leader)
        self.loaded = False
        self.synced = False
        self._buffer: list[Update] = []
        self.stats = ViewStats()

    @property
    def needs_snapshot(self) -> bool:
        return not self.synced

    def load_snapshot(self, index: int, machines: dict[str, object]) -> None:
        """Install a snapshot unless the view is already past it (after a failover
        the new node may be behind what we show: keep ours, never go back)."""
        self.stats.snapshots += 1
        if not self.loaded or index >= self.index:
            for name, data in machines.items():
                if name in self._factories:
                    m = self._factories[name]()
                    m.restore(data)
                    self.machines[name] = m
            self.index = index
            self.loaded = True
        self.synced = True
        buffered, self._buffer = self._buffer, []
        for u in sorted(buffered, key=lambda u: u.index):
            self.apply(u)

    def apply(self, u: Update) -> bool:
        """Apply one published update; False when it was buffered, dropped or showed a gap."""
        if not self.synced:
            self._buffer.append(u)
            del self._buffer[:-100_000]
            return False
        if u.index <= self.index:
            self.stats.dropped_old += 1
            return False
        if u.index != self.index + 1:
            self.stats.gaps += 1
            self.resubscribed()
            self._buffer.append(u)
            return False
        self.index = u.index
        self.term = max(self.term, u.term)
        self.stats.applied += 1
        ctx = ApplyContext(u.index, u.term, u.clock_ms, u.client_id)
        if u.machine == BATCH_MACHINE and u.command is not None:
            for item in u.command.get("batch", []):
                m = self.machines.get(item.get("m"))
                if m is not None:
                    m.apply(item["cmd"], ctx)
            return True
        m = self.machines.get(u.machine)
        if m is not None and u.command is not None:
            m.apply(u.command, ctx)
        return True

    def resubscribed(self) -> None:
        """A new stream (another node, or a gap): buffer until its snapshot answers;
        the state shown stays as it is meanwhile."""
        self.synced = False
        self._buffer = []

    def state(self, name: str) -> object:
        return self.machines[name].snapshot()
