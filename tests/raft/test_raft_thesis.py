"""Ongaro's thesis: pre-vote (9.6), check-quorum (6.2), ignoring votes while a
leader is known (4.2.3) and ReadIndex (6.4), one test per sentence."""

from __future__ import annotations

from random import Random

import pytest

from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.errors import NotLeader
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from nodes.raft.ready import ReadState, Ready, Role
from nodes.raft.storage import MemoryStorage
from nodes.sim.manual import ManualCluster, of_type, to

DEFAULT = RaftConfig()  # pre-vote and check-quorum on
HB = DEFAULT.heartbeat_ticks


def lone_node(nid: str = "n1", cfg: RaftConfig = DEFAULT, seed: int = 1) -> RaftNode:
    storage = MemoryStorage(ClusterConfig(frozenset({"n1", "n2", "n3"})))
    return RaftNode(nid, storage, Random(seed), cfg)


def drain(r: RaftNode) -> Ready:
    rd = r.ready()
    r.storage.save(rd.hard_state, rd.entries, rd.snapshot)
    r.advance(rd)
    return rd


def sent(c: ManualCluster, kind: type, **fields: object) -> list[Message]:
    return [
        m for m in c.queue
        if isinstance(m, kind) and all(getattr(m, k) == v for k, v in fields.items())
    ]


def run_ticks(c: ManualCluster, ticks: int) -> None:
    """Let time pass: every node ticks, every message is delivered (or dropped)."""
    for _ in range(ticks):
        c.tick()
        c.stabilize()


# --- thesis 9.6 pre-vote ---------------------------------------------------------------


def test_a_pre_candidate_does_not_increment_its_term() -> None:
    """Reference: thesis 9.6. "a candidate would first ask other servers whether its
    log was up-to-date enough to get their vote ... the candidate does not increment
    its term" until a majority says it could win; only then does it campaign."""
    r = lone_node()
    for _ in range(r.randomized_election_timeout):
        r.tick()
    assert (r.role, r.term, r.vote) == (Role.PRE_CANDIDATE, 0, None)
    rd = drain(r)
    assert rd.hard_state is None, "a pre-vote changes nothing that must be persisted"
    asks = [m for m in rd.messages if isinstance(m, RequestVote)]
    assert sorted(m.recipient for m in asks) == ["n2", "n3"]
    assert all(m.pre_vote and m.term == 1 for m in asks), "it asks about term + 1"
    r.step(RequestVoteResponse(1, "n2", "n1", True, pre_vote=True))
    assert (r.role, r.term, r.vote) == (Role.CANDIDATE, 1, "n1"), "a majority: the real campaign"
    real = [m for m in drain(r).messages if isinstance(m, RequestVote)]
    assert sorted(m.recipient for m in real) == ["n2", "n3"]
    assert all(not m.pre_vote and m.term == 1 for m in real)


def test_granting_a_pre_vote_changes_neither_the_voters_term_nor_its_vote() -> None:
    """Reference: thesis 9.6 -- a pre-vote is a question, not a vote: the voter keeps
    its term and remains free to vote for anyone in it."""
    r = lone_node("n3")
    r.step(RequestVote(1, "n1", "n3", 0, 0, pre_vote=True))
    rd = drain(r)
    assert [(m.granted, m.pre_vote, m.term) for m in rd.messages] == [(True, True, 1)]
    assert (r.term, r.vote, rd.hard_state) == (0, None, None)


@pytest.mark.parametrize("pre_vote", [True, False], ids=["pre-vote", "no-pre-vote"])
def test_a_partitioned_node_that_rejoins_does_not_make_the_healthy_leader_step_down(
    pre_vote: bool,
) -> None:
    """Reference: thesis 9.6. "a server that has been partitioned from the cluster ...
    will increment its term each time its election timer fires ... when the partition
    heals, it will cause the leader to step down" -- unless it must win a pre-vote
    first, which it cannot while the others hear from their leader. Shown both ways."""
    c = ManualCluster(3, RaftConfig(pre_vote=pre_vote, check_quorum=False), seed=5)
    c.elect("n1")
    c.isolate("n3")
    for k in range(3):
        c.propose("n1", b"w%d" % k)
    run_ticks(c, 6 * DEFAULT.election_ticks_max)  # n3 times out again and again
    term = c.node("n1").term
    if pre_vote:
        assert c.node("n3").term == term, "a pre-candidate's term does not grow"
    else:
        assert c.node("n3").term > term + 3
    c.heal()
    run_ticks(c, 4 * HB)
    leader = c.node("n1")
    if pre_vote:
        assert (leader.role, leader.term) == (Role.LEADER, term), c.story()
        assert c.node("n3").leader_id == "n1" and c.node("n3").commit == leader.commit
    else:
        assert leader.term > term, "without pre-vote the rejoining node deposes the leader"
        assert c.invariants.leader_of_term.get(term) == "n1"


# --- thesis 6.2 check-quorum ------------------------------------------------------------


def test_a_leader_that_has_not_heard_from_a_majority_within_an_election_timeout_steps_down() -> None:
    """Reference: thesis 6.2. "a leader ... steps down if an election timeout elapses
    without a successful round of heartbeats to a majority of its cluster." """
    c = ManualCluster(5)
    c.elect("n1")
    c.cut("n1", "n3")
    c.cut("n1", "n4")
    c.cut("n1", "n5")  # n1 still hears n2: 2 of 5
    r = c.node("n1")
    term = r.term
    for _ in range(2 * DEFAULT.election_ticks_min):
        c.tick("n1")
        c.stabilize()
        if r.role is not Role.LEADER:
            break
    assert (r.role, r.term, r.leader_id) == (Role.FOLLOWER, term, None), c.story()


def test_a_leader_that_hears_from_a_majority_stays_leader() -> None:
    """Reference: thesis 6.2 (the converse): heartbeats answered by a majority keep
    the leader in office, however long it runs, even with one follower cut off."""
    c = ManualCluster(3)
    c.elect("n1")
    c.cut("n1", "n3")
    term = c.node("n1").term
    run_ticks(c, 10 * DEFAULT.election_ticks_max)
    assert (c.node("n1").role, c.node("n1").term) == (Role.LEADER, term), c.story()
    assert c.node("n2").leader_id == "n1"


# --- thesis 4.2.3 disruptive servers ---------------------------------------------------------


def test_a_follower_that_heard_from_a_leader_within_the_minimum_election_timeout_ignores_request_vote() -> None:
    """Reference: thesis 4.2.3. "if a server receives a RequestVote request within the
    minimum election timeout of hearing from a current leader, it does not update its
    term or grant its vote" -- unless the campaign is a leadership transfer (3.10)."""
    cfg = RaftConfig(election_ticks_min=10, election_ticks_max=30)
    r = lone_node("n2", cfg, seed=4)
    r.step(AppendEntries(1, "n1", "n2", 0, 0, (), 0))
    drain(r)
    assert r.randomized_election_timeout > cfg.election_ticks_min  # it will not campaign first
    r.step(RequestVote(2, "n3", "n2", 5, 1))
    rd = drain(r)
    assert rd.messages == [] and (r.term, r.vote, r.leader_id) == (1, None, "n1")
    r.step(RequestVote(2, "n3", "n2", 5, 1, transfer=True))
    (answer,) = drain(r).messages
    assert isinstance(answer, RequestVoteResponse) and answer.granted
    assert (r.term, r.vote) == (2, "n3")


def test_once_the_minimum_election_timeout_has_passed_request_vote_is_considered() -> None:
    """Reference: thesis 4.2.3 (the converse): after the minimum election timeout
    without a leader's word, a higher-term RequestVote is handled normally."""
    cfg = RaftConfig(election_ticks_min=10, election_ticks_max=30)
    r = lone_node("n2", cfg, seed=4)
    r.step(AppendEntries(1, "n1", "n2", 0, 0, (), 0))
    drain(r)
    for _ in range(cfg.election_ticks_min):
        r.tick()
    assert r.role is Role.FOLLOWER
    r.step(RequestVote(2, "n3", "n2", 5, 1))
    (answer,) = drain(r).messages
    assert isinstance(answer, RequestVoteResponse) and answer.granted and r.term == 2


# --- thesis 6.4 ReadIndex --------------------------------------------------------------------


def leader_with_committed_noop() -> ManualCluster:
    c = ManualCluster(3)
    c.elect("n1")
    run_ticks(c, HB)
    return c


def test_a_read_is_answered_only_after_a_quorum_acknowledges_a_heartbeat_sent_after_it() -> None:
    """Reference: thesis 6.4. The leader records its commit index as the read index,
    then "sends a new round of heartbeats and waits for their acknowledgments from a
    majority of the cluster"; acknowledgments of heartbeats sent before the read
    arrived prove nothing about leadership at the time of the read."""
    c = leader_with_committed_noop()
    r = c.node("n1")
    c.tick("n1", times=HB)
    earlier = c.take(of_type(AppendEntries))  # a heartbeat round from before the read
    assert len(earlier) == 2
    commit = r.commit
    r.read_index("ctx")
    c.process("n1")
    after = c.take(of_type(AppendEntries))
    assert sorted(m.recipient for m in after) == ["n2", "n3"]
    assert all(m.seq > e.seq for m in after for e in earlier)
    for m in earlier:
        c.deliver_one(m)
    c.deliver(to("n1"))
    assert c.nodes["n1"].reads == [], "acks of an older heartbeat answered the read"
    c.propose("n1", b"later")  # the read index is fixed when the read arrives
    c.take()
    c.deliver_one(next(m for m in after if m.recipient == "n2"))
    assert c.nodes["n1"].reads == []
    c.deliver(to("n1"))  # n2's ack: with the leader itself, 2 of 3
    assert c.nodes["n1"].reads == [ReadState("ctx", commit)], c.story()


def test_a_leader_cut_off_from_the_majority_never_answers_a_read() -> None:
    """Reference: thesis 6.4 (and 6.2): a deposed leader cannot gather a quorum of
    acknowledgments, so its read is never answered; it is aborted when it steps
    down, so the client can retry elsewhere -- meanwhile the majority moved on."""
    c = leader_with_committed_noop()
    c.isolate("n1")
    c.node("n1").read_index("stale-read")
    c.process("n1")
    while c.leader() in (None, "n1"):  # the majority's lease on n1 runs out; they elect
        c.tick("n2")
        c.tick("n3")
        c.stabilize()
    c.propose(c.leader(), b"newer")
    c.stabilize()
    for _ in range(2 * DEFAULT.election_ticks_min):
        c.tick("n1")
        c.stabilize()
    assert c.node("n1").role is Role.FOLLOWER
    assert c.nodes["n1"].reads == []
    assert c.nodes["n1"].aborted_reads == ["stale-read"]


def test_a_new_leader_defers_reads_until_it_has_committed_an_entry_of_its_term() -> None:
    """Reference: thesis 6.4. "If the leader has not yet marked an entry from its
    current term committed, it waits until it has done so": before that, its commit
    index may lag entries the previous leader already committed (and answered)."""
    c = ManualCluster(3, RaftConfig(pre_vote=False, check_quorum=False))
    c.elect("n1")
    c.propose("n1", b"a")
    c.deliver(of_type(AppendEntries))
    c.deliver(of_type(AppendEntriesResponse))  # n1 commits and applies index 2...
    assert c.node("n1").commit == 2 and c.applied_data("n1") == [b"a"]
    c.take()  # ...but no follower learns it
    c.crash("n1")
    c.campaign("n2")
    while c.deliver(of_type(RequestVote, RequestVoteResponse)):
        pass
    r = c.node("n2")
    assert r.role is Role.LEADER and r.commit == 1, c.story()
    r.read_index("read")
    c.process("n2")
    while c.queue and r.commit < 3:
        c.deliver_one(c.queue.pop(0))
        if r.commit < 3:
            assert c.nodes["n2"].reads == [], "answered before the leader's no-op committed"
    c.stabilize()
    (rs,) = c.nodes["n2"].reads
    assert rs.context == "read" and rs.index >= 2, "the read must see the committed write"


def test_followers_raise_not_leader_with_the_leaders_id() -> None:
    """Reference: thesis 6.4 / 6.2 (clients are redirected): a read or a proposal at
    a follower is refused with the id of the leader it knows."""
    c = leader_with_committed_noop()
    for op in (lambda r: r.read_index("x"), lambda r: r.propose(b"x")):
        with pytest.raises(NotLeader) as err:
            op(c.node("n2"))
        assert err.value.leader_id == "n1" and err.value.node_id == "n2"
        assert "n1" in str(err.value)
    fresh = lone_node("n3")
    with pytest.raises(NotLeader) as err:
        fresh.read_index("x")
    assert err.value.leader_id is None
