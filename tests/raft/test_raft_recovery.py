"""Protocol-aware recovery (Alagappan et al., FAST'18; issue 11): a node that cannot
prove its storage intact (``HardState.recovering``) neither votes nor campaigns
until it has learned the cluster's term from a quorum of its peers and a leader has
repaired it. The rule is in ``nodes.raft.core``'s docstring; each test checks one
sentence of it, on a hand-driven cluster."""

from __future__ import annotations

from random import Random

from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
    HardState,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from nodes.raft.ready import Role
from nodes.raft.storage import MemoryStorage
from nodes.sim.manual import ManualCluster, of_type

CFG = RaftConfig()  # pre-vote and check-quorum on, as the node server runs
VOTERS = ClusterConfig(frozenset({"n1", "n2", "n3"}))


def recovering_node(entries: list[Entry] | None = None, term: int = 0) -> RaftNode:
    storage = MemoryStorage(VOTERS)
    storage.save(HardState(term, None, 0, 0, recovering=True), entries or [])
    return RaftNode("n2", storage, Random(1), CFG)


def outbox(r: RaftNode) -> list:
    rd = r.ready()
    r.storage.save(rd.hard_state, rd.entries, rd.snapshot)
    r.advance(rd)
    return rd.early_messages + rd.messages


def confirm_term(r: RaftNode, answers: dict[str, int]) -> None:
    """Run the probe's wait out and feed the peers' answers."""
    for _ in range(CFG.election_ticks_max):
        r.tick()
    probes = [m for m in outbox(r) if isinstance(m, RequestVote)]
    assert {(m.recipient, m.term, m.pre_vote) for m in probes} == {("n1", 0, True), ("n3", 0, True)}
    for peer, term in answers.items():
        r.step(RequestVoteResponse(term, peer, "n2", False, pre_vote=True))
        outbox(r)


def write(c: ManualCluster, leader: str, count: int, tag: str) -> None:
    for k in range(count):
        c.propose(leader, f"{tag}{k}".encode())
    c.stabilize()


def test_the_issue_11_reproduction_loses_no_acknowledged_write() -> None:
    """Leader n1, followers n2 and n3; 20 writes; n3 stopped; 100 writes acknowledged
    by n1 and n2; all crash; n2's directory is wiped and it restarts with n3 while n1
    stays down. Before: n2 voted, n3 won term 2 and the 100 writes were overwritten
    when n1 returned. Now nobody is elected until n1 is back, and every write stays."""
    c = ManualCluster(["n1", "n2", "n3"], CFG, seed=11)
    c.elect("n1")
    write(c, "n1", 20, "a")
    c.isolate("n3")
    write(c, "n1", 100, "b")
    acked = c.applied_data("n1")
    assert len(acked) == 120
    for nid in ("n1", "n2", "n3"):
        c.crash(nid)
    c.heal()
    c.wipe("n2")
    c.restart("n2")
    c.restart("n3")
    for _ in range(20):  # many election timeouts with n1 down
        c.tick(times=CFG.election_ticks_max)
        c.stabilize()
    assert c.leader() is None, c.story()
    assert c.node("n2").recovering and c.node("n2").vote is None
    c.restart("n1")
    for _ in range(20):
        if c.leader() is not None and not c.node("n2").recovering:
            break
        c.tick(times=CFG.heartbeat_ticks)
        c.stabilize()
    assert c.leader() == "n1", c.story()
    write(c, "n1", 1, "c")
    assert not c.node("n2").recovering
    for nid in ("n1", "n2", "n3"):
        assert c.applied_data(nid)[:120] == acked, nid


def test_a_recovering_node_grants_no_vote_and_no_pre_vote() -> None:
    r = recovering_node([Entry(1, 1, b"x")], term=1)
    r.step(RequestVote(2, "n1", "n2", 5, 2))
    r.step(RequestVote(3, "n3", "n2", 5, 2, pre_vote=True))
    answers = [m for m in outbox(r) if isinstance(m, RequestVoteResponse)]
    assert len(answers) == 2 and not any(m.granted for m in answers)
    assert r.vote is None


def test_a_recovering_node_never_campaigns_nor_on_timeout_now() -> None:
    r = recovering_node([Entry(1, 1, b"x")], term=1)
    r.step(TimeoutNow(1, "n1", "n2"))
    for _ in range(10 * CFG.election_ticks_max):
        r.tick()
    sent = outbox(r)
    assert r.role is Role.FOLLOWER and r.term == 1
    assert all(isinstance(m, RequestVote) and m.term == 0 for m in sent)  # probes only


def test_before_its_term_is_confirmed_it_answers_no_leader() -> None:
    """A stale leader (an old term) must not repair it: it could lack entries that
    the node's lost self helped commit in a later term."""
    r = recovering_node()
    r.step(AppendEntries(3, "n1", "n2", 0, 0, (Entry(1, 3, b"x"),), 1))
    assert outbox(r) == [] and r.log.last_index == 0 and r.term == 3


def test_after_the_probe_a_lower_term_leader_is_refused() -> None:
    r = recovering_node()
    confirm_term(r, {"n1": 2, "n3": 5})
    assert r.term == 5 and r.recovering and r.term_confirmed
    r.step(AppendEntries(2, "n1", "n2", 0, 0, (Entry(1, 2, b"x"),), 1))
    (reply,) = outbox(r)
    assert isinstance(reply, AppendEntriesResponse) and not reply.success and reply.term == 5
    assert r.log.last_index == 0


def test_one_answer_of_three_voters_is_not_a_quorum_of_the_others() -> None:
    r = recovering_node()
    confirm_term(r, {"n1": 0})
    assert not r.term_confirmed and r.recovering


def test_a_fresh_cluster_is_recognised_when_a_quorum_of_the_others_never_had_a_term() -> None:
    r = recovering_node()
    confirm_term(r, {"n1": 0, "n3": 0})
    assert not r.recovering
    assert not r.storage.load().hard_state.recovering  # made durable


def test_a_node_that_had_a_term_is_not_fresh_even_if_its_peers_say_term_0() -> None:
    r = recovering_node(term=1)
    confirm_term(r, {"n1": 0, "n3": 0})
    assert r.term_confirmed and r.recovering


def test_it_is_repaired_only_by_a_commit_index_of_the_leaders_own_term() -> None:
    r = recovering_node()
    confirm_term(r, {"n1": 4, "n3": 4})
    old = (Entry(1, 1, b"a"), Entry(2, 2, b"b"))
    r.step(AppendEntries(4, "n1", "n2", 0, 0, old, 2))  # commit 2 is of term 2: not yet
    (ack,) = outbox(r)
    assert ack.success and r.recovering
    r.step(AppendEntries(4, "n1", "n2", 2, 2, (Entry(3, 4, b""),), 3))  # the no-op of term 4
    (ack,) = outbox(r)
    assert ack.success and not r.recovering and r.vote == "n1"
    hs = r.storage.load().hard_state  # durable before the ack left
    assert (hs.recovering, hs.vote, hs.term) == (False, "n1", 4)


def test_a_fresh_cluster_of_recovering_founders_elects_a_leader() -> None:
    c = ManualCluster(["n1", "n2", "n3"], CFG, seed=3)
    for nid in c.ids:
        c.crash(nid)
        c.wipe(nid)
        c.restart(nid)
    for _ in range(10 * CFG.election_ticks_max):
        c.tick()
        c.stabilize()
        if c.leader():
            break
    assert c.leader() is not None, c.story()
    assert not any(c.node(n).recovering for n in c.ids)


def test_the_promise_rises_with_each_ack_and_falls_with_a_replaced_suffix() -> None:
    storage = MemoryStorage(VOTERS)
    r = RaftNode("n2", storage, Random(1), CFG)
    r.step(AppendEntries(1, "n1", "n2", 0, 0, tuple(Entry(i, 1, b"x") for i in (1, 2, 3)), 0))
    outbox(r)
    assert storage.load().hard_state.promised == 3
    # a new leader of term 2 replaces index 3 (never committed) with its own
    r.step(AppendEntries(2, "n3", "n2", 2, 1, (Entry(3, 2, b"y"),), 0))
    outbox(r)
    assert r.promised == 3 and storage.load().hard_state.promised == 3
    r.step(AppendEntries(2, "n3", "n2", 1, 1, (Entry(2, 2, b"z"),), 0))
    outbox(r)
    assert r.promised == 2 and storage.load().hard_state.promised == 2


def test_a_leader_promises_what_it_counts_toward_a_commit() -> None:
    c = ManualCluster(["n1", "n2", "n3"], CFG, seed=5)
    c.elect("n1")
    c.propose("n1", b"v")
    assert c.storages["n1"].load().hard_state.promised == c.node("n1").log.last_index
    c.deliver(of_type(AppendEntries))
    assert c.storages["n2"].load().hard_state.promised == c.node("n2").log.last_index
    acks = c.take(of_type(AppendEntriesResponse))
    assert acks and all(m.recipient == "n1" for m in acks)
