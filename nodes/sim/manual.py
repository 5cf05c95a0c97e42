"""A hand-driven cluster for scripted scenarios and paper-section tests.

Nothing moves unless the test says so: ``tick``, ``campaign``, ``deliver``
(optionally only some messages), ``stabilize``, ``crash``, ``restart``. Every
delivered message is appended to ``transcript`` (etcd's datadriven style), so a
failing test can print the story. The safety invariants of ``nodes.sim`` are
checked after every step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from random import Random

from nodes.host.driver import ReadyDriver
from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.messages import ClusterConfig, Entry, EntryKind, HardState, Message, Snapshot
from nodes.raft.ready import ReadState, Ready, Role
from nodes.raft.storage import MemoryStorage

from .invariants import Invariants

MessageFilter = Callable[[Message], bool]


@dataclass(slots=True)
class _Node:
    """What the invariant checker needs to see of a node."""

    id: str
    raft: RaftNode
    last_applied: int = 0
    applied: list[Entry] = field(default_factory=list)
    reads: list[ReadState] = field(default_factory=list)
    aborted_reads: list[object] = field(default_factory=list)


def describe(m: Message) -> str:
    """One line per message, for transcripts."""
    parts = []
    for f in fields(m):  # type: ignore[arg-type]
        if f.name in ("sender", "recipient"):
            continue
        v = getattr(m, f.name)
        if f.name == "entries":
            v = "[" + " ".join(f"{e.index}@{e.term}" for e in v) + "]"
        elif isinstance(v, bytes):
            v = f"<{len(v)} bytes>"
        parts.append(f"{f.name}={v}")
    return f"{m.sender}->{m.recipient} {type(m).__name__} " + " ".join(parts)


class ManualCluster:
    def __init__(
        self,
        ids: list[str] | int,
        config: RaftConfig | None = None,
        seed: int = 0,
        snapshot_interval: int = 0,
    ) -> None:
        if isinstance(ids, int):
            ids = [f"n{i + 1}" for i in range(ids)]
        self.ids = list(ids)
        self.config = config or RaftConfig()
        self.rng = Random(seed)
        self.snapshot_interval = snapshot_interval
        initial = ClusterConfig(frozenset(self.ids))
        self.storages = {nid: MemoryStorage(initial) for nid in self.ids}
        self.nodes: dict[str, _Node] = {}
        self.queue: list[Message] = []
        self.blocked: set[tuple[str, str]] = set()
        self.transcript: list[str] = []
        self.invariants = Invariants()
        self.delivered = 0
        self._drivers: dict[str, ReadyDriver] = {}
        for nid in self.ids:
            self._start(nid)

    # --- lifecycle -------------------------------------------------------------

    def _start(self, nid: str) -> None:
        raft = RaftNode(nid, self.storages[nid], Random(self.rng.random()), self.config)
        self.nodes[nid] = _Node(nid, raft, last_applied=raft.applied)

    def add_node(self, nid: str) -> None:
        """A new, empty server that knows no configuration yet."""
        self.storages[nid] = MemoryStorage(ClusterConfig())
        self.ids.append(nid)
        self._start(nid)

    def crash(self, nid: str) -> None:
        del self.nodes[nid]
        self.queue = [m for m in self.queue if m.recipient != nid]
        self.invariants.forget_incarnation(nid)
        self.transcript.append(f"crash {nid}")

    def restart(self, nid: str) -> None:
        self._start(nid)
        self.transcript.append(f"restart {nid}")
        self.process(nid)

    def wipe(self, nid: str, keep: int = 0) -> None:
        """``nid`` (down) lost its storage but the first ``keep`` entries: it restarts
        recovering, as ``DiskStorage`` reports a founder's wiped directory
        (``keep=0``) or a damaged log (``nodes.raft.core``, protocol-aware recovery)."""
        assert nid not in self.nodes, f"crash {nid} first"
        old = self.storages[nid].load()
        assert old.snapshot is None, "wipe() keeps a log prefix, not a snapshot"
        storage = MemoryStorage(old.initial_config)
        hs = old.hard_state if keep else HardState()
        kept = [e for e in old.entries if e.index <= keep]
        storage.save(HardState(hs.term, hs.vote, min(hs.commit, keep), min(hs.promised, keep),
                               recovering=True), kept)
        self.storages[nid] = storage
        self.transcript.append(f"wipe {nid} (keep {keep})")

    def node(self, nid: str) -> RaftNode:
        return self.nodes[nid].raft

    # --- the Ready loop ---------------------------------------------------------

    def process(self, nid: str) -> None:
        n = self.nodes[nid]
        driver = self._drivers.get(nid)
        if driver is None or driver.raft is not n.raft:
            driver = self._drivers[nid] = self._driver(n)
        driver.drain()
        self.invariants.check_step(self.nodes)  # type: ignore[arg-type]

    def _driver(self, n: _Node) -> ReadyDriver:
        nid, storage = n.id, self.storages[n.id]

        def persist(rd: Ready) -> None:
            storage.save(rd.hard_state, rd.entries, rd.snapshot)

        def apply(rd: Ready) -> None:
            if rd.snapshot is not None:
                n.last_applied = rd.snapshot.meta.index
            for e in rd.committed_entries:
                assert e.index == n.last_applied + 1
                n.last_applied = e.index
                n.applied.append(e)
                self.invariants.on_apply(nid, e)
            n.reads.extend(rd.read_states)
            n.aborted_reads.extend(rd.aborted_reads)

        def after(rd: Ready) -> None:
            if self.snapshot_interval and (
                n.raft.applied - n.raft.log.offset_index >= self.snapshot_interval
            ):
                meta = n.raft.snapshot_meta(n.raft.applied)
                storage.compact(Snapshot(meta, b"state@%d" % meta.index))
                n.raft.compact(meta.index)

        return ReadyDriver(
            n.raft, persist, lambda m: self.queue.append(m), apply, after,
            on_ready=lambda rd: self.invariants.on_ready(n, rd),  # type: ignore[arg-type]
        )

    # --- inputs -------------------------------------------------------------------

    def tick(self, nid: str | None = None, times: int = 1) -> None:
        for _ in range(times):
            for x in [nid] if nid else list(self.nodes):
                if x in self.nodes:
                    self.nodes[x].raft.tick()
                    self.process(x)

    def campaign(self, nid: str) -> None:
        """Let ``nid``'s election timer run out (it campaigns; pre-vote first if on)."""
        r = self.node(nid)
        r.election_elapsed = r.randomized_election_timeout - 1
        self.tick(nid)

    def propose(self, nid: str, data: bytes = b"x") -> int:
        index = self.node(nid).propose(data)
        self.process(nid)
        return index

    def elect(self, nid: str) -> None:
        """Campaign and deliver until ``nid`` leads and its no-op is committed."""
        self.campaign(nid)
        self.stabilize()
        assert self.node(nid).role is Role.LEADER, self.story()

    # --- network ------------------------------------------------------------------

    def isolate(self, nid: str) -> None:
        for other in self.ids:
            if other != nid:
                self.blocked.add((nid, other))
                self.blocked.add((other, nid))

    def cut(self, a: str, b: str) -> None:
        self.blocked.add((a, b))
        self.blocked.add((b, a))

    def heal(self) -> None:
        self.blocked.clear()

    def take(self, match: MessageFilter | None = None) -> list[Message]:
        """Remove and return queued messages matching ``match`` (without delivering)."""
        taken = [m for m in self.queue if match is None or match(m)]
        self.queue = [m for m in self.queue if not (match is None or match(m))]
        return taken

    def deliver(self, match: MessageFilter | None = None) -> int:
        """Deliver the queued messages that match (in order); others stay queued."""
        count = 0
        for m in self.take(match):
            count += self.deliver_one(m)
        return count

    def deliver_one(self, m: Message) -> int:
        if (m.sender, m.recipient) in self.blocked or m.recipient not in self.nodes:
            self.transcript.append(f"drop {describe(m)}")
            return 0
        self.transcript.append(describe(m))
        self.node(m.recipient).step(m)
        self.delivered += 1
        self.process(m.recipient)
        return 1

    def stabilize(self, limit: int = 100_000) -> int:
        """Deliver until no message is left; returns how many were delivered."""
        total = 0
        while self.queue:
            total += self.deliver()
            assert total < limit, "messages never settle"
        return total

    # --- queries -------------------------------------------------------------------

    def leader(self) -> str | None:
        leads = [nid for nid, n in self.nodes.items() if n.raft.role is Role.LEADER]
        return max(leads, key=lambda x: self.node(x).term) if leads else None

    def applied_data(self, nid: str) -> list[bytes]:
        return [e.data for e in self.nodes[nid].applied if e.kind is EntryKind.NORMAL and e.data]

    def story(self) -> str:
        return "\n".join(self.transcript[-80:])


def to(nid: str) -> MessageFilter:
    return lambda m: m.recipient == nid


def of_type(*types: type) -> MessageFilter:
    return lambda m: isinstance(m, types)


def both(*filters: MessageFilter) -> MessageFilter:
    return lambda m: all(f(m) for f in filters)
