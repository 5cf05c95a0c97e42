"""Membership changes (thesis chapter 4, one server at a time) on the seeded
simulator, under client load: growing and shrinking keeps every acknowledged
write, a removed leader steps down once its removal commits, a partition during
a change never yields two leaders or a change committed by a minority, and a
second change waits for the first. Every assertion names its seed."""

from __future__ import annotations

from collections.abc import Callable
from random import Random

import pytest

from nodes.lincheck import check
from nodes.raft.errors import (
    ConfigChangeInProgress,
    InvalidConfigChange,
    NotLeader,
    TransferInProgress,
)
from nodes.raft.messages import ChangeKind, ConfigChange, RequestVote, RequestVoteResponse
from nodes.raft.ready import Role
from nodes.sim.cluster import Cluster
from nodes.sim.manual import ManualCluster, of_type
from nodes.sim.network import Faults
from nodes.sim.node import encode_op
from nodes.sim.storage_hosts import DiskHost
from nodes.sim.workload import Workload


class Ledger:
    """A client writing unique keys through whoever leads; remembers what was acked."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.pending: list[tuple[str, int, int, str]] = []  # (node, index, term, key)
        self.acked: set[str] = set()
        self.count = 0
        self.next_at = 0.0

    def step(self) -> None:
        c = self.c
        for item in list(self.pending):
            nid, index, term, key = item
            node = c.nodes.get(nid)
            if node is None:
                self.pending.remove(item)  # crashed: outcome unknown
                continue
            if node.last_applied >= index:
                self.pending.remove(item)
                got = node.result_of.get(index)
                if got is not None and got[0] == term:
                    self.acked.add(key)
        if c.now < self.next_at:
            return
        self.next_at = c.now + 3.0
        lead = c.leader()
        if lead is None:
            return
        node = c.nodes[lead]
        self.count += 1
        key = f"ledger{self.count}"
        try:
            index = node.raft.propose(encode_op({"kind": "write", "key": key, "value": 1}))
        except (NotLeader, TransferInProgress):
            return
        self.pending.append((lead, index, node.raft.term, key))
        node.handle_ready()


def change(c: Cluster, ch: ConfigChange, seed: int, during: Callable[[], None],
           within_ms: float = 5000) -> None:
    """Propose ``ch`` through whoever leads until the leader's committed
    configuration shows it (a proposal refused, or lost with its leader, is
    proposed again)."""
    def done() -> bool:
        lead = c.stable_leader()
        if lead is None:
            return False
        r = c.nodes[lead].raft
        members = r.config_at(r.commit).members()
        return (ch.node_id in members) == (ch.kind is ChangeKind.ADD_LEARNER)

    deadline = c.now + within_ms
    while not done():
        assert c.now < deadline, f"seed={seed}: {ch} did not commit within {within_ms} ms"
        lead = c.stable_leader()
        if lead is not None:
            node = c.nodes[lead]
            try:
                node.raft.propose_config_change(ch)
                node.handle_ready()
            except (ConfigChangeInProgress, InvalidConfigChange, NotLeader, TransferInProgress):
                pass
        c.run_until(min(c.now + 300, deadline), during, stop=done)


def settle(c: Cluster, seed: int, members: set[str] | None = None,
           within_ms: float = 5000) -> None:
    """A marker through the leader, applied by ``members`` (default: the leader's
    configuration)."""
    lead = c.wait_for_leader(within_ms)
    assert lead is not None, f"seed={seed}: no leader"
    node = c.nodes[lead]
    members = set(node.raft.config.members()) if members is None else members
    index = node.raft.propose(encode_op({"kind": "write", "key": "_marker", "value": seed}))
    node.handle_ready()
    ok = c.run_until(c.now + within_ms,
                     stop=lambda: all(c.nodes[n].last_applied >= index for n in members))
    assert ok, f"seed={seed}: the marker was not applied by every member of {sorted(members)}"


@pytest.mark.parametrize("storage", ["memory", "disk"])
@pytest.mark.parametrize("seed", range(2))
def test_growing_three_to_five_and_shrinking_five_to_three_under_load_keeps_every_acknowledged_write(
    seed: int, storage: str, closing: list[Cluster],
) -> None:
    """Reference: thesis 4.1 and 4.2.1. Two new servers join (each as a learner that
    the leader promotes once caught up), then two of the original ones leave, the
    leader among them, one change at a time, while clients read and write: the
    client history stays linearizable and every acknowledged write is in every
    remaining member's state."""
    rng = Random(seed)
    host = DiskHost(Random(seed), segment_bytes=2048) if storage == "disk" else None
    c = Cluster(3, seed, faults=Faults(drop=0.01, slow=0.02), snapshot_interval=30,
                storage_host=host)
    closing.append(c)
    workload = Workload(c, Random(seed), clients=4, timeout_ms=400.0)
    ledger = Ledger(c)

    def load() -> None:
        workload.step()
        ledger.step()

    lead = c.wait_for_leader(3000)
    assert lead is not None
    c.run_for(200, load)
    for new in ("n4", "n5"):
        c.add_storage(new)
        change(c, ConfigChange(ChangeKind.ADD_LEARNER, new), seed, load)
        promoted = c.run_until(c.now + 3000, load, stop=lambda new=new: any(
            new in c.nodes[x].raft.config_at(c.nodes[x].raft.commit).voters
            for x in c.leaders()))
        assert promoted, f"seed={seed}: learner {new} was never promoted"
        c.run_for(rng.uniform(200, 500), load)
    lead = c.leader()
    assert lead is not None
    assert c.nodes[lead].raft.config.voters == {"n1", "n2", "n3", "n4", "n5"}, f"seed={seed}"
    leaving = [lead, *(n for n in ("n1", "n2", "n3") if n != lead)][:2]
    for gone in leaving:
        change(c, ConfigChange(ChangeKind.REMOVE, gone), seed, load)
        c.run_for(rng.uniform(200, 500), load)
        c.crash(gone)
    members = set(c.ids) - set(leaving)
    lead = c.wait_for_leader(3000)
    assert lead in members and c.nodes[lead].raft.config.voters == members, f"seed={seed}"
    workload.active = False
    c.run_until(c.now + 1000, load, stop=lambda: workload.idle() and not ledger.pending)
    settle(c, seed, members)
    verdict = check(workload.history)
    assert verdict.ok, f"seed={seed}: not linearizable: {verdict.explanation}"
    assert len(ledger.acked) > 100, f"seed={seed}: only {len(ledger.acked)} writes acknowledged"
    for nid in members:
        lost = sorted(k for k in ledger.acked if c.nodes[nid].sm.data.get(k) != 1)
        assert not lost, f"seed={seed}: {nid} lost acknowledged writes {lost[:5]}"


@pytest.mark.parametrize("seed", range(3))
def test_a_removed_leader_steps_down_once_its_removal_commits_and_the_rest_elect_a_leader(
    seed: int, closing: list[Cluster],
) -> None:
    """Reference: thesis 4.2.2. "the leader ... steps down ... once the Cnew entry is
    committed" and not before: until then it goes on leading (replicating an entry
    it no longer counts itself in); afterwards a new leader comes from the rest."""
    c = Cluster(3 + 2 * (seed % 2), seed)
    closing.append(c)
    workload = Workload(c, Random(seed), clients=3)
    old = c.wait_for_leader(3000)
    assert old is not None
    c.run_for(100, workload.step)
    node = c.nodes[old]
    term = node.raft.term
    index = node.raft.propose_config_change(ConfigChange(ChangeKind.REMOVE, old))
    node.handle_ready()
    seen: list[tuple[bool, bool]] = []  # (leads, removal committed)

    def watch() -> None:
        workload.step()
        r = node.raft
        seen.append((r.role is Role.LEADER and r.term == term, r.commit >= index))

    c.run_until(c.now + 3000, watch, stop=lambda: c.stable_leader() not in (None, old))
    assert (True, True) not in seen, f"seed={seed}: it led on with its removal committed"
    led_until = max((k for k, (leads, _) in enumerate(seen) if leads), default=-1)
    committed_at = next((k for k, (_, done) in enumerate(seen) if done), None)
    assert committed_at is not None, f"seed={seed}: the removal never committed"
    assert led_until == committed_at - 1, f"seed={seed}: stepped down before the commit"
    assert node.raft.removed and node.raft.role is Role.FOLLOWER, f"seed={seed}"
    new = c.stable_leader()
    assert new is not None and new != old, f"seed={seed}: no new leader among the rest"
    assert old not in c.nodes[new].raft.config.members(), f"seed={seed}"
    c.crash(old)
    settle(c, seed, set(c.ids) - {old})


@pytest.mark.parametrize("leader_side", ["majority", "minority"])
@pytest.mark.parametrize("kind", [ChangeKind.REMOVE, ChangeKind.ADD_LEARNER],
                         ids=["remove", "add"])
@pytest.mark.parametrize("seed", range(2))
def test_a_change_cut_off_by_a_partition_commits_on_the_majority_side_or_not_at_all(
    seed: int, kind: ChangeKind, leader_side: str, closing: list[Cluster],
) -> None:
    """Reference: thesis 4.1 (one server at a time: any two majorities of the old
    and new configurations overlap). A change proposed just before a partition
    commits only where a majority is; the minority side never commits it; no two
    leaders share a term (checked after every event); after healing everyone
    agrees on the configuration and the log."""
    rng = Random(seed)
    c = Cluster(5, seed)
    closing.append(c)
    lead = c.wait_for_leader(3000)
    assert lead is not None
    c.run_for(100)  # its first entry commits: changes are taken from then on
    others = sorted(set(c.ids) - {lead})
    with_leader = set(rng.sample(others, 2 if leader_side == "majority" else 1)) | {lead}
    rest = set(c.ids) - with_leader
    target = rng.choice(sorted(rest - {lead})) if kind is ChangeKind.REMOVE else "n6"
    if kind is ChangeKind.ADD_LEARNER:
        c.add_storage("n6")
    node = c.nodes[lead]
    index = node.raft.propose_config_change(ConfigChange(kind, target))
    term = node.raft.term
    node.handle_ready()
    # the entry may or may not reach the other side first (a one-way trip takes at
    # least 0.2 ms), but no acknowledgement can come back before the cut
    c.run_for(rng.uniform(0, 0.35))
    assert node.raft.commit < index, f"seed={seed}"
    c.network.partition(with_leader, rest)
    minority = rest if leader_side == "majority" else with_leader
    commits_of_minority: list[int] = []

    def watch() -> None:
        for nid in minority:
            n = c.nodes.get(nid)
            if n is not None and n.raft.role is Role.LEADER and n.raft.commit >= index:
                commits_of_minority.append(n.raft.commit)
        assert len({c.nodes[x].raft.term for x in c.leaders()}) == len(c.leaders()), (
            f"seed={seed}: two leaders in one term"
        )

    c.run_for(1500, watch)
    if leader_side == "minority":
        assert node.raft.commit < index, f"seed={seed}: the minority leader committed the change"
    assert not commits_of_minority, f"seed={seed}: a minority leader advanced its commit"
    c.network.heal()
    settle(c, seed)
    final = c.stable_leader()
    assert final is not None
    r = c.nodes[final].raft
    changed = r.log.term(index) == term if index > r.log.offset_index else None
    configs = {c.nodes[n].raft.config for n in r.config.members()}
    assert len(configs) == 1, f"seed={seed}: configurations differ after healing: {configs}"
    (config,) = configs
    in_config = target in config.members()
    if kind is ChangeKind.REMOVE and changed is not None:
        assert in_config != changed, f"seed={seed}: {target} member={in_config}, change={changed}"
    if leader_side == "minority" and changed is False:
        assert (target in config.members()) == (kind is ChangeKind.REMOVE), f"seed={seed}"


def test_a_second_membership_change_is_refused_while_one_is_uncommitted() -> None:
    """Reference: thesis 4.1 ("the leader ... does not begin another change until the
    first has committed") and its erratum: nor before the leader's first entry of
    its term commits. The refusal is ConfigChangeInProgress, naming the index."""
    c = ManualCluster(3)
    c.campaign("n1")
    r = c.node("n1")
    while r.role is not Role.LEADER:  # votes only: its first entry stays unreplicated
        assert c.deliver(of_type(RequestVote, RequestVoteResponse)), c.story()
    assert r.role is Role.LEADER and r.commit < r.log.last_index, c.story()
    with pytest.raises(ConfigChangeInProgress) as first_entry:
        r.propose_config_change(ConfigChange(ChangeKind.REMOVE, "n3"))
    assert first_entry.value.pending_index == r.log.last_index
    c.stabilize()
    c.add_node("n4")
    index = r.propose_config_change(ConfigChange(ChangeKind.ADD_LEARNER, "n4"))
    c.process("n1")
    with pytest.raises(ConfigChangeInProgress) as second:
        r.propose_config_change(ConfigChange(ChangeKind.REMOVE, "n3"))
    assert second.value.pending_index == index and "retry" in str(second.value)
    assert r.log.last_index == index, "the refused change left no entry behind"
    c.stabilize()
    assert r.commit >= index
    again = r.propose_config_change(ConfigChange(ChangeKind.REMOVE, "n3"))
    assert again == index + 1 or again > index, "once committed, the next change is taken"
