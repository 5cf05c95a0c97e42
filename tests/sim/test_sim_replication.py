"""Log replication on the seeded whole-cluster simulator: agreement, catching up
(by log and by snapshot), no commit without a majority, concurrent clients,
overwriting a deposed leader's uncommitted entries, fast back-up, and crash-restart
of the whole cluster. Every assertion names its seed."""

from __future__ import annotations

from random import Random

import pytest

from nodes.raft.core import RaftConfig
from nodes.raft.errors import NotLeader
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
    Message,
)
from nodes.raft.ready import Role
from nodes.sim.cluster import Cluster
from nodes.sim.node import Hooks, decode_op, encode_op

ELECTION_MAX_MS = RaftConfig().election_ticks_max * 10.0


class RecordingCluster(Cluster):
    """A Cluster that also records every message sent and every entry applied."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.applied: dict[str, list[Entry]] = {}
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[Message] = []
        send = self.network.send

        def recording_send(now: float, m: Message) -> None:
            self.sent.append(m)
            send(now, m)

        self.network.send = recording_send  # type: ignore[method-assign]

    def _hooks(self) -> Hooks:
        hooks = super()._hooks()
        inner = hooks.on_apply

        def on_apply(nid: str, e: Entry) -> None:
            inner(nid, e)
            self.applied.setdefault(nid, []).append(e)

        hooks.on_apply = on_apply
        return hooks

    def restart(self, nid: str) -> None:
        self.applied.pop(nid, None)  # a new incarnation applies from its snapshot on
        super().restart(nid)

    def writes_applied(self, nid: str) -> list[tuple[str, object]]:
        return [
            (op["key"], op["value"])
            for e in self.applied.get(nid, [])
            if e.kind is EntryKind.NORMAL and e.data
            for op in [decode_op(e.data)]
        ]


def write(key: str, value: object) -> bytes:
    return encode_op({"kind": "write", "key": key, "value": value})


def propose_at(c: Cluster, nid: str, key: str, value: object) -> tuple[int, int]:
    node = c.nodes[nid]
    index = node.raft.propose(write(key, value))
    node.handle_ready()
    return index, node.raft.term


def leader_of(c: Cluster, seed: int, within_ms: float = 2000) -> str:
    lead = c.wait_for_leader(within_ms)
    assert lead is not None, f"seed={seed}: no leader within {within_ms} ms"
    return lead


def all_applied(c: Cluster, index: int) -> bool:
    return all(n.last_applied >= index for n in c.nodes.values())


def settle(c: Cluster, seed: int, within_ms: float = 3000) -> int:
    """Commit a marker through the leader; wait until every node applied it."""
    index = c.settle(within_ms, marker=seed)
    assert index is not None, (
        f"seed={seed}: no leader, or the marker not applied everywhere, in {within_ms} ms")
    return index


@pytest.mark.parametrize("seed", range(3))
def test_every_node_applies_the_same_entries_in_the_same_order(seed: int) -> None:
    """Reference: paper 5.3 / Figure 3 (State Machine Safety): with no faults, 40
    writes proposed over time are applied by every node, identically."""
    rng = Random(seed)
    c = RecordingCluster(5, seed)
    lead = leader_of(c, seed)
    values = []
    for k in range(40):
        propose_at(c, lead, f"k{k % 4}", k)
        values.append((f"k{k % 4}", k))
        c.run_for(rng.uniform(0, 15))
    settle(c, seed)
    reference = [(e.index, e.term, e.data) for e in c.applied[lead]]
    for nid in c.ids:
        assert [(e.index, e.term, e.data) for e in c.applied[nid]] == reference, f"seed={seed} {nid}"
        assert c.writes_applied(nid)[:40] == values, f"seed={seed} {nid}"
        assert c.nodes[nid].sm.data == c.nodes[lead].sm.data, f"seed={seed} {nid}"


@pytest.mark.parametrize("snapshot_interval", [0, 5], ids=["by-log", "by-snapshot"])
@pytest.mark.parametrize("seed", range(2))
def test_a_follower_that_was_down_rejoins_and_catches_up(seed: int, snapshot_interval: int) -> None:
    """Reference: paper 5.3 ("the leader retries AppendEntries RPCs indefinitely ...
    until all followers eventually store all log entries") and paper 7 (InstallSnapshot
    when the leader has already discarded the entries the follower needs)."""
    c = RecordingCluster(3, seed, snapshot_interval=snapshot_interval)
    lead = leader_of(c, seed)
    follower = next(n for n in c.ids if n != lead)
    c.crash(follower)
    for k in range(40):
        propose_at(c, lead, f"k{k % 5}", k)
        c.run_for(3)
    c.run_for(200)
    assert c.nodes[lead].raft.commit >= 41, f"seed={seed}: two of three commit without it"
    c.restart(follower)
    index = settle(c, seed)
    f = c.nodes[follower]
    assert f.last_applied >= index and f.sm.data == c.nodes[lead].sm.data, f"seed={seed}"
    snapshots = [m for m in c.sent if isinstance(m, InstallSnapshot) and m.recipient == follower]
    if snapshot_interval:
        assert snapshots, f"seed={seed}: the follower caught up without a snapshot?"
        assert f.raft.log.offset_index > 0, f"seed={seed}"
    else:
        assert not snapshots, f"seed={seed}"
        assert c.writes_applied(follower)[:40] == [(f"k{k % 5}", k) for k in range(40)]


@pytest.mark.parametrize("seed", range(3))
def test_no_entry_commits_without_a_majority(seed: int) -> None:
    """Reference: paper 5.3 ("committed once ... replicated it on a majority"): a
    leader left with 2 of 5 nodes accepts proposals but they never apply anywhere;
    the majority side elects its own leader and carries on; after healing, the
    minority's entries are gone."""
    c = RecordingCluster(5, seed)
    old = leader_of(c, seed)
    minority = {old, next(n for n in c.ids if n != old)}
    majority = set(c.ids) - minority
    c.network.partition(minority, majority)
    doomed = [("lost", k) for k in range(5)]
    for key, value in doomed:
        propose_at(c, old, key, value)
    c.run_until(c.now + 4 * ELECTION_MAX_MS,
                stop=lambda: any(c.nodes[n].raft.role is Role.LEADER for n in majority))
    new = c.leader()
    assert new in majority, f"seed={seed}: the majority elected nobody"
    propose_at(c, new, "kept", 1)
    c.run_for(500)
    for nid in c.ids:
        assert not set(doomed) & set(c.writes_applied(nid)), f"seed={seed}: {nid} applied it"
    c.network.heal()
    settle(c, seed)
    for nid in c.ids:
        applied = c.writes_applied(nid)
        assert ("kept", 1) in applied and not set(doomed) & set(applied), f"seed={seed} {nid}"


@pytest.mark.parametrize("seed", range(3))
def test_concurrent_proposals_from_several_clients_all_commit(seed: int) -> None:
    """Reference: paper 5.3 / 8: proposals from many clients arriving at random times
    (redirected on NotLeader) are all committed, each exactly once, and every
    client's writes apply in the order it issued them."""
    rng = Random(seed)
    c = RecordingCluster(3, seed, raft_config=RaftConfig(max_batch_bytes=200, max_inflight=4))
    leader_of(c, seed)
    clients = {f"c{i}": 0 for i in range(6)}  # next value each client writes
    guess = {name: rng.choice(c.ids) for name in clients}
    per_client = 25

    def clients_act() -> None:
        for name, nxt in clients.items():
            if nxt >= per_client or rng.random() > 0.05:
                continue
            node = c.nodes[guess[name]]
            try:
                node.raft.propose(write(name, nxt))
            except NotLeader as e:
                guess[name] = e.leader_id or rng.choice(c.ids)
                continue
            node.handle_ready()
            clients[name] = nxt + 1

    done = c.run_until(c.now + 10_000, clients_act,
                       stop=lambda: all(v == per_client for v in clients.values()))
    assert done, f"seed={seed}: clients stuck at {clients}"
    settle(c, seed)
    for nid in c.ids:
        applied = c.writes_applied(nid)
        for name in clients:
            mine = [v for k, v in applied if k == name]
            assert mine == list(range(per_client)), f"seed={seed} {nid} {name}: {mine}"


@pytest.mark.parametrize("seed", range(3))
def test_a_partitioned_old_leaders_uncommitted_entries_are_overwritten_after_healing(
    seed: int,
) -> None:
    """Reference: paper 5.3 ("the leader handles inconsistencies by forcing the
    followers' logs to duplicate its own") -- the deposed leader's entries, written
    while it was cut off, are replaced by the new leader's."""
    c = RecordingCluster(3, seed)
    old = leader_of(c, seed)
    c.network.isolate(old, set(c.ids))
    first, old_term = propose_at(c, old, "orphan", 0)
    for k in range(1, 10):
        propose_at(c, old, "orphan", k)
    rest = set(c.ids) - {old}
    c.run_until(c.now + 4 * ELECTION_MAX_MS,
                stop=lambda: any(c.nodes[n].raft.role is Role.LEADER for n in rest))
    new = c.leader()
    assert new in rest, f"seed={seed}"
    for k in range(3):
        propose_at(c, new, "fresh", k)
    c.run_for(200)
    c.network.heal()
    settle(c, seed)
    old_log = c.nodes[old].raft.log
    new_log = c.nodes[new].raft.log
    assert old_log.term(first) != old_term, f"seed={seed}: {old} kept its orphan at {first}"
    assert [(e.index, e.term) for e in old_log.entries] == [
        (e.index, e.term) for e in new_log.entries], f"seed={seed}"
    for nid in c.ids:
        assert not any(k == "orphan" for k, _ in c.writes_applied(nid)), f"seed={seed} {nid}"


def leader_among(c: Cluster, group: set[str], seed: int) -> str:
    """Wait until ``group`` agrees on a leader of its own; return it."""

    def agreed() -> bool:
        leads = [n for n in group if c.nodes[n].raft.role is Role.LEADER]
        return len(leads) == 1 and all(c.nodes[n].raft.leader_id == leads[0] for n in group)

    assert c.run_until(c.now + 10 * ELECTION_MAX_MS, stop=agreed), (
        f"seed={seed}: {sorted(group)} elected nobody")
    return next(n for n in group if c.nodes[n].raft.role is Role.LEADER)


def conflicting_terms(c: Cluster, follower: str, leader: str) -> int:
    """How many distinct terms ``follower`` holds entries of that ``leader`` lacks."""
    lead_log = c.nodes[leader].raft.log
    return len({e.term for e in c.nodes[follower].raft.log.entries
                if e.index > lead_log.offset_index and lead_log.term(e.index) != e.term})


@pytest.mark.parametrize("seed", range(3))
def test_fast_backup_over_many_conflicting_entries_needs_few_rejections(seed: int) -> None:
    """Reference: paper 5.3, the optimisation "one AppendEntries RPC will be required
    for each term with conflicting entries, rather than one RPC per entry". MIT
    6.824's TestBackup2B on the simulator: a deposed leader and its follower hold 50
    uncommitted entries of their term; the leader elected later (whose own log holds
    50 other entries at those indices) repairs each with a number of rejections
    bounded by the conflicting terms plus a small constant, not by the entries."""
    c = RecordingCluster(5, seed)
    old = leader_of(c, seed)
    old_follower = next(n for n in c.ids if n != old)
    a, b, x = [n for n in c.ids if n not in (old, old_follower)]
    # 1. the old leader keeps one follower; 50 proposals that cannot commit
    c.network.partition({old, old_follower}, {a, b, x})
    for k in range(50):
        propose_at(c, old, "orphan", k)
    # 2. the other three elect a leader and commit 50 entries
    second = leader_among(c, {a, b, x}, seed)
    for k in range(50):
        propose_at(c, second, "second", k)
    c.run_for(300)
    # 3. one of them (``late``) goes over to the old pair; the new majority elects
    #    ``late`` (its log is the most up to date) and commits 50 more
    late = next(n for n in (a, b, x) if n != second)
    c.network.heal()
    c.network.partition({old, old_follower, late}, set(c.ids) - {old, old_follower, late})
    mark = len(c.sent)
    third = leader_among(c, {old, old_follower, late}, seed)
    assert third == late, f"seed={seed}: {third} won, not {late}"
    terms = {n: conflicting_terms(c, n, third) for n in (old, old_follower)}
    assert all(t >= 1 for t in terms.values()), f"seed={seed}: {terms}"
    assert all(c.nodes[n].raft.log.last_index > 50 for n in terms), f"seed={seed}"
    for k in range(50):
        propose_at(c, third, "third", k)
    c.run_for(300)
    for n in (old, old_follower):
        assert c.nodes[n].raft.log.last_index == c.nodes[third].raft.log.last_index, (
            f"seed={seed}: {n} was not repaired")
        rejections = [m for m in c.sent[mark:] if isinstance(m, AppendEntriesResponse)
                      and m.sender == n and not m.success]
        appends = [m for m in c.sent[mark:] if isinstance(m, AppendEntries) and m.recipient == n]
        assert len(rejections) <= terms[n] + 2, f"seed={seed} {n}: {rejections}"
        assert len(appends) < 25, f"seed={seed} {n}: {len(appends)} AppendEntries"
    # 4. everyone back together: all logs agree, no orphan was ever applied
    c.network.heal()
    settle(c, seed)
    for nid in c.ids:
        applied = c.writes_applied(nid)
        assert not any(k == "orphan" for k, _ in applied), f"seed={seed} {nid}"
        assert [v for k, v in applied if k == "third"] == list(range(50)), f"seed={seed} {nid}"


@pytest.mark.parametrize("snapshot_interval", [0, 8], ids=["log", "snapshots"])
@pytest.mark.parametrize("seed", range(3))
def test_every_acknowledged_write_survives_a_crash_restart_of_all_nodes(
    seed: int, snapshot_interval: int
) -> None:
    """Reference: paper 5 / Figure 2 (persistent state) and paper 7: a write is
    acknowledged once the leader applied it; then every node crashes (keeping only
    what it saved) and restarts: every acknowledged write is still there."""
    rng = Random(seed)
    c = RecordingCluster(3, seed, snapshot_interval=snapshot_interval)
    lead = leader_of(c, seed)
    pending: list[tuple[str, int, int, str]] = []  # (node, index, term, key)
    acked: list[str] = []

    def collect() -> None:
        for item in list(pending):
            nid, index, term, key = item
            node = c.nodes.get(nid)
            if node is not None and node.last_applied >= index:
                pending.remove(item)
                if node.result_of.get(index, (None,))[0] == term:
                    acked.append(key)

    for k in range(30):
        index, term = propose_at(c, lead, f"w{k}", k)
        pending.append((lead, index, term, f"w{k}"))
        c.run_for(rng.uniform(0, 4), collect)
    for nid in c.ids:  # the crash hits while some writes are still in flight
        c.crash(nid)
    assert acked, f"seed={seed}: nothing was acknowledged before the crash"
    for nid in c.ids:
        c.restart(nid)
    settle(c, seed)
    for nid in c.ids:
        data = c.nodes[nid].sm.data
        lost = [k for k in acked if k not in data]
        assert not lost, f"seed={seed}: {nid} lost acknowledged writes {lost}"
