"""Hosts wired by a hand-driven in-memory network, for transcripts and tests.

Nothing moves unless told: ``tick`` (every live host, or one), ``deliver``
(the queued batches, once), ``stabilize`` (turns and deliveries until nothing
is left), ``kill`` (a whole node: every group on it goes at once; what it
staged and did not sync is lost), ``restart``. Each node's storage comes from
``wal_factory(nid)`` (default ``MemoryWal``; a ``SharedWal`` on a directory for
durable runs): a ``MemoryWal`` survives a kill minus its unsynced writes, any
other storage is abandoned at the kill and made again by the factory at the
restart (a ``SharedWal`` reopening its directory). Every batch delivered and every
change of a group's role, term, leader or quiescence is written to ``log``,
one line each, so a golden transcript (``tests/host/testdata``) reads like a
story.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from nodes.raft.messages import Message

from .host import Batch, GroupMessage, Host, HostOptions
from .storage import HostStorage, MemoryWal


def describe(m: Message) -> str:
    """One line per Raft message, the fields that matter in a transcript."""
    parts = []
    for f in fields(m):
        if f.name in ("sender", "recipient"):
            continue
        v = getattr(m, f.name)
        if f.name == "entries":
            v = "[" + " ".join(f"{e.index}@{e.term}" for e in v) + "]"
        elif isinstance(v, bytes):
            v = f"<{len(v)} bytes>"
        elif isinstance(v, bool):
            if not v:
                continue
            v = "1"
        elif f.name in ("seq", "hint_index", "hint_term") and v == 0:
            continue
        parts.append(f"{f.name}={v}")
    return f"{type(m).__name__} " + " ".join(parts)


def describe_batch(b: Batch) -> list[str]:
    if not b.messages:
        return [f"{b.sender}->{b.recipient} beat"]
    head = f"{b.sender}->{b.recipient} batch of {len(b.messages)}"
    return [head] + [
        f"  g{gm.group} {describe(gm.msg)}" + (" QUIESCE" if gm.quiesce else "")
        for gm in b.messages
    ]


class HostCluster:
    def __init__(
        self,
        ids: list[str],
        options: HostOptions | None = None,
        seed: int = 0,
        wal_factory: Callable[[str], HostStorage] | None = None,
    ) -> None:
        self.ids = list(ids)
        self.options = options or HostOptions()
        self.seed = seed
        self.wal_factory: Callable[[str], HostStorage] = wal_factory or (lambda nid: MemoryWal())
        self.wals = {nid: self.wal_factory(nid) for nid in ids}
        self.hosts: dict[str, Host] = {}
        self.members: dict[int, tuple[str, ...]] = {}
        self.queue: list[Batch] = []
        self.log: list[str] = []
        self.quiet_beats = False  # leave beats out of the log (they repeat every beat_ticks)
        for k, nid in enumerate(ids):
            self.hosts[nid] = Host(nid, self.wals[nid], self.options, seed=seed * 100 + k)
        self._seen = self._state()

    # --- groups --------------------------------------------------------------------------

    def create(self, gid: int, members: list[str], lead: str | None = None) -> None:
        self.members[gid] = tuple(members)
        for nid in members:
            if nid in self.hosts:
                self.hosts[nid].create_group(gid, members, campaign=(nid == lead))
        self._changes()

    # --- inputs ----------------------------------------------------------------------------

    def tick(self, nid: str | None = None, times: int = 1) -> None:
        for _ in range(times):
            for x in [nid] if nid else sorted(self.hosts):
                if x in self.hosts:
                    self.hosts[x].tick()
                    self._turns(x)
            self._changes()

    def propose(self, gid: int, data: bytes) -> str:
        leader = self.leader(gid)
        assert leader is not None, f"group {gid} has no leader"
        index = self.hosts[leader].propose(gid, data)
        self.log.append(f"propose g{gid} at {leader}: index {index}")
        self._turns(leader)
        self._changes()
        return leader

    def deliver(self) -> int:
        batches, self.queue = self.queue, []
        n = 0
        for b in batches:
            host = self.hosts.get(b.recipient)
            if host is None:
                if b.messages or not self.quiet_beats:
                    self.log.append(f"drop {b.sender}->{b.recipient} (down)")
                continue
            if b.messages or not self.quiet_beats:
                self.log.extend(describe_batch(b))
            host.receive(b)
            self._turns(b.recipient)
            n += 1
        self._changes()
        return n

    def stabilize(self, limit: int = 10_000) -> None:
        for nid in sorted(self.hosts):
            self._turns(nid)
        rounds = 0
        while self.queue:
            self.deliver()
            rounds += 1
            assert rounds < limit, "messages never settle"

    def kill(self, nid: str) -> None:
        """The node's process dies: every replica on it at once; unsynced writes go."""
        del self.hosts[nid]
        wal = self.wals[nid]
        if isinstance(wal, MemoryWal):
            wal.crash()
        else:  # a process's files: released as a crash would, reopened at the restart
            wal.abandon()  # type: ignore[attr-defined]
        self.queue = [b for b in self.queue if b.sender != nid]
        self.log.append(f"kill {nid}")
        self._changes()

    def restart(self, nid: str) -> None:
        k = self.ids.index(nid)
        if not isinstance(self.wals[nid], MemoryWal):
            self.wals[nid] = self.wal_factory(nid)
        host = Host(nid, self.wals[nid], self.options, seed=self.seed * 100 + k + 50)
        host.reopen()
        self.hosts[nid] = host
        self.log.append(f"restart {nid}")
        self._turns(nid)
        self._changes()

    # --- queries ---------------------------------------------------------------------------

    def leader(self, gid: int) -> str | None:
        best: tuple[int, str] | None = None
        for nid, h in self.hosts.items():
            g = h.groups.get(gid)
            if g is not None and g.raft.role.value == "leader":
                if best is None or g.raft.term > best[0]:
                    best = (g.raft.term, nid)
        return best[1] if best else None

    def quiesced(self, gid: int) -> list[str]:
        return sorted(
            nid for nid, h in self.hosts.items() if gid in h.groups and h.groups[gid].quiesced
        )

    # --- internals -------------------------------------------------------------------------

    def _turns(self, nid: str) -> None:
        host = self.hosts[nid]
        while host.has_work():
            turn = host.turn()
            for a in turn.applied:
                if a.result is not None:
                    self.log.append(f"{nid} g{a.group} applied {a.index}@{a.term}")
            self.queue.extend(turn.batches)

    def _state(self) -> dict[tuple[str, int], str]:
        out = {}
        for nid, h in self.hosts.items():
            for gid, g in h.groups.items():
                r = g.raft
                lead = r.leader_id or "-"
                out[(nid, gid)] = f"{r.role.value} term={r.term} leader={lead}" + (
                    " quiesced" if g.quiesced else ""
                )
        return out

    def _changes(self) -> None:
        now = self._state()
        for key in sorted(now):
            if self._seen.get(key) != now[key]:
                self.log.append(f"state {key[0]} g{key[1]}: {now[key]}")
        self._seen = now


__all__ = ["GroupMessage", "HostCluster", "describe", "describe_batch"]
