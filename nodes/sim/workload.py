"""Simulated clients: they write, compare-and-swap and read a few keys through
whichever node they believe leads, and record a history (invoke, ok, fail,
unknown) for the linearizability checker. A client that meets a follower, a
leader handing over (TransferInProgress), a crashed or a removed server gives
up on it (the op is unknown if it may still commit) and tries another."""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from nodes.lincheck import Op
from nodes.raft.errors import NotLeader, TransferInProgress
from nodes.raft.ready import ReadState

from .cluster import Cluster
from .node import encode_op


@dataclass(slots=True)
class _Pending:
    client: str
    op: dict
    invoke: float
    node: str
    index: int = 0  # for proposals
    term: int = 0
    read_ctx: object = None


class Workload:
    def __init__(
        self,
        cluster: Cluster,
        rng: Random,
        clients: int = 4,
        keys: int = 3,
        timeout_ms: float = 1000.0,
        think_ms: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.clients = [f"c{i + 1}" for i in range(clients)]
        self.keys = [f"k{i}" for i in range(keys)]
        self.timeout_ms = timeout_ms
        self.think_ms = think_ms
        self.history: list[Op] = []
        self.pending: dict[str, _Pending] = {}
        self.next_action: dict[str, float] = {c: 0.0 for c in self.clients}
        self.guess: dict[str, str] = {c: rng.choice(cluster.ids) for c in self.clients}
        self.last_seen: dict[str, object] = {}
        self.counter = 0
        self.active = True
        self.acked_writes: list[tuple[str, object]] = []
        cluster.listeners_read.append(self._on_read)
        cluster.listeners_read_aborted.append(self._on_read_aborted)
        cluster.listeners_crash.append(self._on_crash)

    # --- driving ----------------------------------------------------------------

    def step(self) -> None:
        """Called after every simulated event."""
        now = self.cluster.now
        self._collect_results()
        for c in self.clients:
            p = self.pending.get(c)
            if p is not None:
                if now - p.invoke > self.timeout_ms:
                    self._finish(c, "unknown")
                continue
            if self.active and now >= self.next_action[c]:
                self._invoke(c)

    def idle(self) -> bool:
        return not self.pending

    def _invoke(self, client: str) -> None:
        now = self.cluster.now
        key = self.rng.choice(self.keys)
        r = self.rng.random()
        if r < 0.35:
            op = {"kind": "read", "key": key}
        elif r < 0.7:
            self.counter += 1
            op = {"kind": "write", "key": key, "value": self.counter}
        else:
            self.counter += 1
            op = {"kind": "cas", "key": key, "expected": self.last_seen.get(key),
                  "value": self.counter}
        target = self.guess[client]
        node = self.cluster.nodes.get(target)
        if node is None:
            self._redirect(client, None)
            self.next_action[client] = now + self.rng.uniform(*self.think_ms)
            return
        p = _Pending(client, op, now, target)
        try:
            if op["kind"] == "read":
                p.read_ctx = (client, self.counter, now)
                self.counter += 1
                node.raft.read_index(p.read_ctx)
            else:
                p.index = node.raft.propose(encode_op(op))
                p.term = node.raft.term
        except (NotLeader, TransferInProgress) as e:
            self._redirect(client, getattr(e, "leader_id", None))
            self.next_action[client] = now + self.rng.uniform(*self.think_ms)
            return
        self.pending[client] = p
        node.handle_ready()

    def _redirect(self, client: str, leader: str | None) -> None:
        self.guess[client] = leader if leader else self.rng.choice(self.cluster.ids)

    def _collect_results(self) -> None:
        for c, p in list(self.pending.items()):
            if p.read_ctx is not None:
                continue
            node = self.cluster.nodes.get(p.node)
            if node is not None and node.raft.removed:
                # its leader was removed from the cluster and stepped down: whether
                # the entry commits is for the others to say; ask elsewhere
                self._finish(c, "unknown")
                continue
            if node is None or node.last_applied < p.index:
                continue
            got = node.result_of.get(p.index)
            if got is None:
                # applied from a snapshot: we cannot tell what happened to it
                continue
            term, result = got
            if term != p.term:
                self._finish(c, "fail")  # another entry took that index: ours never committed
            else:
                self._finish(c, "ok", result)

    def _on_read(self, nid: str, rs: ReadState, data: dict) -> None:
        for c, p in self.pending.items():
            if p.read_ctx == rs.context:
                self._finish(c, "ok", {"value": data.get(p.op["key"])})
                return

    def _on_read_aborted(self, nid: str, ctx: object) -> None:
        for c, p in self.pending.items():
            if p.read_ctx == ctx:
                self._finish(c, "fail")
                return

    def _on_crash(self, nid: str) -> None:
        for c, p in list(self.pending.items()):
            if p.node == nid:
                self._finish(c, "unknown")

    def _finish(self, client: str, status: str, result: dict | None = None) -> None:
        p = self.pending.pop(client)
        now = self.cluster.now
        op = p.op
        kind = op["kind"]
        value = op.get("value")
        succeeded = True
        if status == "ok" and result is not None:
            if kind == "read":
                value = result["value"]
                self.last_seen[op["key"]] = value
            elif kind == "cas":
                succeeded = bool(result.get("succeeded"))
            if kind == "write" or (kind == "cas" and succeeded):
                self.acked_writes.append((op["key"], value))
                self.last_seen[op["key"]] = value
        self.history.append(
            Op(
                client=client, key=op["key"], kind=kind, value=value,
                expected=op.get("expected"), invoke=p.invoke,
                complete=now if status != "unknown" else None,
                status=status, succeeded=succeeded,
            )
        )
        if status != "ok":
            self._redirect(client, None)
        self.next_action[client] = now + self.rng.uniform(*self.think_ms)
