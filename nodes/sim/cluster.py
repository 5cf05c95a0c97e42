"""A whole Raft cluster in one process, on a virtual clock.

Nodes tick every ``tick_ms`` of simulated time (each with its own phase), the
network delivers messages after seeded delays, and the cluster drives each
node's Ready loop after every input. ``crash`` keeps only what a node had
saved to its storage; ``restart`` rebuilds it from there. Where storage lives
is the ``StorageHost``'s business (``storage_hosts.py``): in memory, or on
``DiskStorage`` in a temporary directory, where a node can also die inside a
storage step (``arm_crash``)."""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from nodes.raft.core import RaftConfig
from nodes.raft.messages import ClusterConfig, Message
from nodes.raft.ready import ReadState, Ready, Role
from nodes.raft.storage import Storage

from .invariants import Invariants
from .network import Faults, Network
from .node import Hooks, SimNode, encode_op
from .storage_hosts import MemoryHost, SimulatedCrash, StorageHost


class Cluster:
    def __init__(
        self,
        size: int,
        seed: int,
        raft_config: RaftConfig | None = None,
        faults: Faults | None = None,
        tick_ms: float = 10.0,
        snapshot_interval: int = 0,
        storage_factory: Callable[[str, ClusterConfig], Storage] | None = None,
        ids: list[str] | None = None,
        storage_host: StorageHost | None = None,
    ) -> None:
        """``storage_factory`` makes in-memory-like storage that survives a crash as
        an object; ``storage_host`` (e.g. ``DiskHost``) takes precedence over it."""
        self.seed = seed
        self.rng = Random(seed)
        self.ids = ids or [f"n{i + 1}" for i in range(size)]
        self.raft_config = raft_config or RaftConfig()
        self.tick_ms = tick_ms
        self.snapshot_interval = snapshot_interval
        self.network = Network(Random(self.rng.random()), faults)
        self.invariants = Invariants()
        self.now = 0.0
        self.initial = ClusterConfig(frozenset(self.ids))
        self.host: StorageHost = storage_host or MemoryHost(storage_factory)
        self.storages: dict[str, Storage] = {
            nid: self.host.create(nid, self.initial) for nid in self.ids
        }
        self.nodes: dict[str, SimNode] = {}
        self.next_tick: dict[str, float] = {}
        self.listeners_apply: list[Callable[[str, int, int, dict], None]] = []
        self.listeners_read: list[Callable[[str, ReadState, dict], None]] = []
        self.listeners_read_aborted: list[Callable[[str, object], None]] = []
        self.listeners_crash: list[Callable[[str], None]] = []
        self.listeners_storage_crash: list[Callable[[str, str], None]] = []
        for nid in self.ids:
            self._start(nid)

    # --- lifecycle -------------------------------------------------------------

    def _hooks(self) -> Hooks:
        return Hooks(
            on_persist=lambda nid, rd: None,
            on_apply=self.invariants.on_apply,
            on_read=self._on_read,
            on_aborted_read=self._on_read_aborted,
            on_ready=self._on_ready,
            on_storage_crash=self._on_storage_crash,
        )

    def _start(self, nid: str) -> None:
        node = SimNode(
            nid,
            self.storages[nid],
            Random(self.rng.random()),
            self.raft_config,
            self._hooks(),
            lambda m: self.network.send(self.now, m),
            self.snapshot_interval,
        )
        self.nodes[nid] = node
        self.next_tick[nid] = self.now + self.rng.uniform(0, self.tick_ms)

    def crash(self, nid: str) -> None:
        """The process dies: everything not saved to storage is gone (also called by
        a node that died inside a storage step)."""
        node = self.nodes.pop(nid, None)
        if node is None:
            return
        node.dead = True
        del self.next_tick[nid]
        self.invariants.on_crash(node)
        self.host.disarm(nid)
        self.host.abandon(nid, self.storages[nid])
        for cb in self.listeners_crash:
            cb(nid)

    def restart(self, nid: str) -> bool:
        """Reopen ``nid``'s storage and start it; False if it is down afterwards (it
        crashed again while starting)."""
        if nid in self.nodes:
            return True
        try:
            self.storages[nid] = self.host.reopen(nid, self.storages.get(nid))
        except SimulatedCrash as crash:
            for cb in self.listeners_storage_crash:
                cb(nid, str(crash))
            return False  # e.g. while still creating its directory: it stays down
        self._start(nid)
        node = self.nodes[nid]
        self.invariants.on_restart(node)
        node.handle_ready()
        return nid in self.nodes

    def add_storage(self, nid: str) -> None:
        """A brand-new server (no configuration: it waits to hear from a leader). A
        server that ran under this id before loses all its data (wiped)."""
        self.crash(nid)
        self.invariants.forget_node(nid)
        if nid not in self.ids:
            self.ids.append(nid)
        try:
            self.storages[nid] = self.host.create(nid, ClusterConfig())
        except SimulatedCrash as crash:
            for cb in self.listeners_storage_crash:
                cb(nid, str(crash))
            return  # died creating its directory: ``restart`` opens what is there
        self._start(nid)

    def arm_crash(self, nid: str, point: str, skip: int = 0) -> None:
        """Crash ``nid`` when its storage next reaches ``point`` (after ``skip``
        more passes); the host's ``crash_points`` lists the choices."""
        self.host.arm(nid, point, skip)

    def close(self) -> None:
        """Let every storage go (and remove a temporary directory)."""
        for nid in list(self.nodes):
            node = self.nodes.pop(nid)
            node.dead = True
            self.host.abandon(nid, self.storages[nid])
        self.next_tick.clear()
        self.host.close()

    # --- events ---------------------------------------------------------------------

    def _on_ready(self, nid: str, rd: Ready) -> None:
        self.invariants.on_ready(self.nodes[nid], rd)

    def _on_storage_crash(self, nid: str, what: str) -> None:
        self.crash(nid)
        for cb in self.listeners_storage_crash:
            cb(nid, what)

    def _on_read(self, nid: str, rs: ReadState, data: dict) -> None:
        for cb in self.listeners_read:
            cb(nid, rs, data)

    def _on_read_aborted(self, nid: str, ctx: object) -> None:
        for cb in self.listeners_read_aborted:
            cb(nid, ctx)

    # --- time ------------------------------------------------------------------------

    def run_for(self, ms: float, between: Callable[[], None] | None = None) -> None:
        self.run_until(self.now + ms, between)

    def run_until(
        self, t_end: float, between: Callable[[], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Advance time to ``t_end``; ``between`` runs after each event; returns True
        as soon as ``stop()`` holds (checked after each event)."""
        while True:
            if stop is not None and stop():
                return True
            t_tick = min(self.next_tick.values()) if self.next_tick else float("inf")
            t_net = self.network.next_time()
            t = min(t_tick, t_net if t_net is not None else float("inf"))
            if t > t_end:
                self.now = t_end
                return stop() if stop is not None else False
            self.now = t
            if t_net is not None and t_net <= t:
                for m in self.network.pop_due(t):
                    self._deliver(m)
            else:
                for nid, at in list(self.next_tick.items()):
                    if at <= t and nid in self.nodes:
                        self.next_tick[nid] = at + self.tick_ms
                        node = self.nodes[nid]
                        node.raft.tick()
                        node.handle_ready()
            self.invariants.check_step(self.nodes)
            if between is not None:
                between()

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.recipient)
        if node is None:
            return  # the recipient is down
        node.raft.step(m)
        node.handle_ready()

    # --- queries -----------------------------------------------------------------------

    def leaders(self) -> list[str]:
        return [nid for nid, n in self.nodes.items() if n.raft.role is Role.LEADER]

    def leader(self) -> str | None:
        """The live leader with the highest term, if any."""
        best = None
        for nid, n in self.nodes.items():
            if n.raft.role is Role.LEADER and (best is None or n.raft.term > self.nodes[best].raft.term):
                best = nid
        return best

    def wait_for_leader(self, within_ms: float) -> str | None:
        self.run_until(self.now + within_ms, stop=lambda: self.stable_leader() is not None)
        return self.stable_leader()

    def write(self, key: str, value: object, via: str | None = None) -> int:
        """Propose a register write through ``via`` (default: the leader); its index."""
        lead = via or self.leader()
        assert lead is not None, "no leader to write through"
        node = self.nodes[lead]
        index = node.raft.propose(encode_op({"kind": "write", "key": key, "value": value}))
        node.handle_ready()
        return index

    def settle(self, within_ms: float = 5000, marker: object = 0) -> int | None:
        """Commit a marker through a stable leader and wait until every live node has
        applied it: its index, or None if there was no leader or it did not get there."""
        lead = self.wait_for_leader(within_ms)
        if lead is None:
            return None
        index = self.write("_marker", marker, via=lead)
        ok = self.run_until(self.now + within_ms,
                            stop=lambda: all(n.last_applied >= index for n in self.nodes.values()))
        return index if ok else None

    def stable_leader(self) -> str | None:
        """A leader whose term no live member of its configuration exceeds (so it is
        not a deposed one). A removed server may sit in a higher term for good: it
        campaigns with pre-votes that nobody grants, and nobody tells it otherwise."""
        lead = self.leader()
        if lead is None:
            return None
        r = self.nodes[lead].raft
        members = r.config.members() | {lead}
        top = max(n.raft.term for nid, n in self.nodes.items() if nid in members)
        return lead if r.term == top else None
