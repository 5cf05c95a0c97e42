"""Who can we hear? Reachability of peers and partition detection, sans-I/O.

A peer is reachable when anything (a Raft message, an application message, a
ping) arrived from it within ``failure_timeout``. Pings every ``ping_interval``
keep followers, which otherwise only hear from the leader, informed about each
other. ``now`` is passed in (seconds, any monotonic origin), so the rules here
are tested without a clock.

Partition: a node that reaches fewer than a majority of the voters (itself
counted, if it is one) is "partitioned": in a minority it cannot make progress,
and a leader in that state has lost its quorum.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _Peer:
    last_heard: float
    reachable: bool = True
    role: str | None = None  # what its last ping said


@dataclass(slots=True)
class Liveness:
    node_id: str
    failure_timeout: float
    peers: dict[str, _Peer] = field(default_factory=dict)
    partitioned: bool = False

    def track(self, peer: str, now: float) -> None:
        """Start expecting ``peer``: it is assumed reachable until it stays silent
        for a whole failure timeout (so a node that boots first does not call
        everybody unreachable at once)."""
        if peer != self.node_id and peer not in self.peers:
            self.peers[peer] = _Peer(last_heard=now)

    def forget(self, peer: str) -> None:
        self.peers.pop(peer, None)

    def heard(self, peer: str, now: float, role: str | None = None) -> list[tuple[str, str]]:
        """Something arrived from ``peer``; returns ``node:reconnected`` if it was
        unreachable."""
        p = self.peers.get(peer)
        if p is None:
            return []
        p.last_heard = now
        if role is not None:
            p.role = role
        if not p.reachable:
            p.reachable = True
            return [("node:reconnected", peer)]
        return []

    def check(self, now: float) -> list[tuple[str, str]]:
        """Peers that just went silent: ``node:unreachable`` each."""
        events = []
        for peer, p in sorted(self.peers.items()):
            if p.reachable and now - p.last_heard > self.failure_timeout:
                p.reachable = False
                events.append(("node:unreachable", peer))
        return events

    def is_reachable(self, peer: str) -> bool:
        if peer == self.node_id:
            return True
        p = self.peers.get(peer)
        return p is not None and p.reachable

    def role_of(self, peer: str) -> str | None:
        p = self.peers.get(peer)
        return p.role if p is not None else None

    def check_partition(self, voters: frozenset[str]) -> tuple[str, list[str], list[str]] | None:
        """``("partition:detected" | "partition:healed", reachable, unreachable)``
        when the majority status among ``voters`` flipped, else None."""
        if not voters:
            return None
        reachable = sorted(v for v in voters if self.is_reachable(v))
        unreachable = sorted(v for v in voters if not self.is_reachable(v))
        cut_off = len(reachable) < len(voters) // 2 + 1
        if cut_off == self.partitioned:
            return None
        self.partitioned = cut_off
        return ("partition:detected" if cut_off else "partition:healed", reachable, unreachable)
