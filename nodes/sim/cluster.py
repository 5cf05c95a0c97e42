"""A whole Raft cluster in one process, on a virtual clock.

Nodes tick every ``tick_ms`` of simulated time (each with its own phase), the
network delivers messages after seeded delays, and the cluster drives each
node's Ready loop after every input. ``crash`` keeps only what a node had
saved to its storage; ``restart`` rebuilds it from there."""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from nodes.raft.core import RaftConfig
from nodes.raft.messages import ClusterConfig, Message
from nodes.raft.ready import ReadState, Ready, Role
from nodes.raft.storage import MemoryStorage, Storage

from .invariants import Invariants
from .network import Faults, Network
from .node import Hooks, SimNode


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
    ) -> None:
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
        factory = storage_factory or (lambda _id, cfg: MemoryStorage(cfg))
        self.storage_factory = factory
        self.storages: dict[str, Storage] = {nid: factory(nid, self.initial) for nid in self.ids}
        self.nodes: dict[str, SimNode] = {}
        self.next_tick: dict[str, float] = {}
        self.listeners_apply: list[Callable[[str, int, int, dict], None]] = []
        self.listeners_read: list[Callable[[str, ReadState, dict], None]] = []
        self.listeners_read_aborted: list[Callable[[str, object], None]] = []
        self.listeners_crash: list[Callable[[str], None]] = []
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
        """The process dies: everything not saved to storage is gone."""
        if nid not in self.nodes:
            return
        del self.nodes[nid]
        del self.next_tick[nid]
        self.invariants.forget_incarnation(nid)
        for cb in self.listeners_crash:
            cb(nid)

    def restart(self, nid: str) -> None:
        if nid in self.nodes:
            return
        self._start(nid)
        self.nodes[nid].handle_ready()

    def add_storage(self, nid: str) -> None:
        """A brand-new server (no configuration: it waits to hear from a leader)."""
        self.storages[nid] = self.storage_factory(nid, ClusterConfig())
        if nid not in self.ids:
            self.ids.append(nid)
        self._start(nid)

    # --- events ---------------------------------------------------------------------

    def _on_ready(self, nid: str, rd: Ready) -> None:
        self.invariants.on_ready(self.nodes[nid], rd)

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

    def stable_leader(self) -> str | None:
        """A leader whose term no live node exceeds (so it is not a deposed one)."""
        lead = self.leader()
        if lead is None:
            return None
        top = max(n.raft.term for n in self.nodes.values())
        return lead if self.nodes[lead].raft.term == top else None
