"""Paper 5.1 (terms), 5.2 (leader election) and 5.4.1 (election restriction),
one test per sentence, on a hand-driven cluster (``ManualCluster``) or a single
``RaftNode`` where that is simpler. Basic Raft as in the paper: no pre-vote and
no check-quorum unless a test says otherwise (thesis features have their own file).
"""

from __future__ import annotations

from random import Random

import pytest

from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
    EntryKind,
    HardState,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from nodes.raft.ready import Ready, Role
from nodes.raft.storage import MemoryStorage
from nodes.sim.manual import ManualCluster, both, of_type, to

PAPER = RaftConfig(pre_vote=False, check_quorum=False)
VOTERS = ("n1", "n2", "n3")


def lone_node(
    nid: str = "n1",
    terms: tuple[int, ...] = (),
    term: int | None = None,
    voters: tuple[str, ...] = VOTERS,
    cfg: RaftConfig = PAPER,
    rng: Random | None = None,
) -> RaftNode:
    """A node whose storage already holds a log with these ``terms`` (index 1, 2, ...)."""
    storage = MemoryStorage(ClusterConfig(frozenset(voters)))
    entries = [Entry(i + 1, t, b"%d@%d" % (i + 1, t)) for i, t in enumerate(terms)]
    storage.save(HardState(term=term if term is not None else max(terms, default=0)), entries)
    return RaftNode(nid, storage, rng or Random(1), cfg)


def drain(r: RaftNode) -> Ready:
    """One turn of the driver: persist, (collect messages), advance."""
    rd = r.ready()
    r.storage.save(rd.hard_state, rd.entries, rd.snapshot)
    r.advance(rd)
    return rd


def load_logs(c: ManualCluster, logs: dict[str, tuple[int, ...]], term: int) -> None:
    """Give nodes of ``c`` the logs a past history left them (crash, write, restart)."""
    for nid, terms in logs.items():
        entries = [Entry(i + 1, t, b"%d@%d" % (i + 1, t)) for i, t in enumerate(terms)]
        c.crash(nid)
        c.storages[nid].save(HardState(term=term), entries)
        c.restart(nid)


def sent(c: ManualCluster, kind: type, **fields: object) -> list[Message]:
    """Queued messages of ``kind`` whose fields equal ``fields``."""
    return [
        m for m in c.queue
        if isinstance(m, kind) and all(getattr(m, k) == v for k, v in fields.items())
    ]


# --- 5.1 terms ------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER])
@pytest.mark.parametrize("kind", ["AppendEntries", "RequestVote", "AppendEntriesResponse"])
def test_a_node_that_sees_a_higher_term_adopts_it_and_becomes_follower(
    role: Role, kind: str
) -> None:
    """Reference: paper 5.1. "If a server's current term is smaller than the other's,
    it updates its current term to the larger value. If a candidate or leader
    discovers that its term is out of date, it immediately reverts to follower state."
    """
    c = ManualCluster(3, PAPER)
    if role is Role.LEADER:
        c.elect("n1")
    elif role is Role.CANDIDATE:
        c.campaign("n1")
        c.take()
    r = c.node("n1")
    assert r.role is role
    newer = r.term + 3
    last = r.log.last_index
    m: Message
    if kind == "AppendEntries":
        m = AppendEntries(newer, "n2", "n1", 0, 0, (), 0)
    elif kind == "RequestVote":
        m = RequestVote(newer, "n2", "n1", last, r.log.last_term)
    else:
        m = AppendEntriesResponse(newer, "n2", "n1", False)
    c.deliver_one(m)
    assert (r.role, r.term) == (Role.FOLLOWER, newer), c.story()
    assert c.storages["n1"].load().hard_state.term == newer
    if kind == "AppendEntries":
        assert r.leader_id == "n2"


def test_a_message_with_a_stale_term_is_rejected_and_the_reply_carries_the_newer_term() -> None:
    """Reference: paper 5.1. "If a server receives a request with a stale term number,
    it rejects the request" -- and the reply carries the current term, so the stale
    leader learns it is out of date and steps down."""
    c = ManualCluster(3, PAPER)
    c.elect("n1")
    c.isolate("n1")
    c.elect("n2")  # n2 and n3 move on to term 2 without n1
    assert c.node("n2").term == 2 and c.node("n1").role is Role.LEADER
    c.heal()
    log_before = list(c.node("n3").log.entries)
    # n1 still believes it leads term 1 and sends a heartbeat carrying an entry
    c.node("n1").propose(b"stale")
    c.process("n1")
    stale = sent(c, AppendEntries, recipient="n3", term=1)
    assert stale and stale[-1].entries, c.story()
    c.deliver(both(to("n3"), of_type(AppendEntries)))
    (reply,) = sent(c, AppendEntriesResponse, sender="n3", recipient="n1")
    assert (reply.success, reply.term) == (False, 2)
    assert c.node("n3").log.entries == log_before, "a stale leader's entries were accepted"
    assert (c.node("n3").term, c.node("n3").leader_id) == (2, "n2")
    c.deliver(to("n1"))
    assert (c.node("n1").role, c.node("n1").term) == (Role.FOLLOWER, 2), c.story()


def test_a_request_vote_with_a_stale_term_is_not_granted() -> None:
    """Reference: paper 5.1 (stale requests are rejected) and Figure 2 RequestVote
    rule 1 ("Reply false if term < currentTerm")."""
    r = lone_node("n3", term=4)
    r.step(RequestVote(3, "n1", "n3", 10, 3))
    rd = drain(r)
    assert r.vote is None and r.term == 4
    assert not any(isinstance(m, RequestVoteResponse) and m.granted for m in rd.messages)


# --- 5.2 leader election -----------------------------------------------------------------


def test_a_follower_that_hears_nothing_for_its_election_timeout_campaigns() -> None:
    """Reference: paper 5.2. "If a follower receives no communication over a period of
    time called the election timeout ... To begin an election, a follower increments
    its current term and transitions to candidate state. It then votes for itself and
    issues RequestVote RPCs in parallel to each of the other servers." """
    voters = ("n1", "n2", "n3", "n4", "n5")
    r = lone_node("n1", terms=(1, 1, 2), term=2, voters=voters)
    for _ in range(r.randomized_election_timeout - 1):
        r.tick()
        assert not r.has_ready() or not drain(r).messages
    assert r.role is Role.FOLLOWER and r.term == 2
    r.tick()
    assert (r.role, r.term, r.vote) == (Role.CANDIDATE, 3, "n1")
    rd = drain(r)
    assert rd.hard_state == HardState(3, "n1", 0), "term and self-vote are persisted"
    votes = [m for m in rd.messages if isinstance(m, RequestVote)]
    assert sorted(m.recipient for m in votes) == ["n2", "n3", "n4", "n5"]
    assert all(
        (m.term, m.last_log_index, m.last_log_term, m.pre_vote) == (3, 3, 2, False)
        for m in votes
    )


class RecordingRandom(Random):
    """A seeded Random that remembers the ranges the core asked it for."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.ranges: list[tuple[int, ...]] = []

    def randrange(self, *args: int, **kwargs: int) -> int:  # type: ignore[override]
        self.ranges.append(args)
        return super().randrange(*args, **kwargs)


def timeouts_over_terms(rng: Random, terms: int) -> list[int]:
    r = lone_node("n1", rng=rng)
    out = []
    while r.term < terms:
        out.append(r.randomized_election_timeout)
        for _ in range(r.randomized_election_timeout):
            r.tick()
        drain(r)
    return out


def test_election_timeouts_are_drawn_from_min_max_from_the_injected_random() -> None:
    """Reference: paper 5.2. "Raft uses randomized election timeouts ... election
    timeouts are chosen randomly from a fixed interval (e.g., 150-300ms)", here
    [election_ticks_min, election_ticks_max) drawn from the injected Random."""
    rng = RecordingRandom(7)
    seen = timeouts_over_terms(rng, 30)
    lo, hi = PAPER.election_ticks_min, PAPER.election_ticks_max
    assert all(lo <= t < hi for t in seen)
    assert set(rng.ranges) == {(lo, hi)}, "every draw comes from the injected Random"
    assert len(set(seen)) > 5, f"timeouts do not differ across terms: {seen}"
    assert timeouts_over_terms(Random(7), 30) == seen, "one seed replays the same timeouts"
    assert timeouts_over_terms(Random(8), 30) != seen


def test_election_timeouts_differ_across_nodes() -> None:
    """Reference: paper 5.2, "each server's election timeout is randomized"."""
    c = ManualCluster(5, PAPER, seed=3)
    timeouts = [c.node(n).randomized_election_timeout for n in c.ids]
    assert len(set(timeouts)) > 1, timeouts


def test_a_candidate_with_a_majority_becomes_leader_and_sends_heartbeats() -> None:
    """Reference: paper 5.2. "A candidate wins an election if it receives votes from a
    majority of the servers ... Once a candidate wins an election, it becomes leader.
    It then sends heartbeat messages to all of the other servers"; paper 8: its first
    entry is one of its term (a no-op; the first leader of a fresh log writes the
    bootstrap configuration there instead, thesis 4.4)."""
    c = ManualCluster(5, PAPER)
    c.campaign("n1")
    c.deliver(lambda m: m.recipient in ("n2", "n3"))  # two votes + its own: 3 of 5
    c.take(to("n4"))
    c.take(to("n5"))
    c.deliver(of_type(RequestVoteResponse))
    r = c.node("n1")
    assert (r.role, r.leader_id) == (Role.LEADER, "n1"), c.story()
    noop = r.log.entry(r.log.last_index)
    assert (noop.index, noop.term, noop.kind) == (1, 1, EntryKind.CONFIG)
    assert r.config.voters == {"n1", "n2", "n3", "n4", "n5"}
    appends = sent(c, AppendEntries, sender="n1")
    assert sorted(m.recipient for m in appends) == ["n2", "n3", "n4", "n5"]
    assert all(m.term == 1 and m.entries == (noop,) for m in appends)
    c.take()
    c.tick("n1", times=PAPER.heartbeat_ticks)
    beats = sent(c, AppendEntries, sender="n1")
    assert sorted(m.recipient for m in beats) == ["n2", "n3", "n4", "n5"]


def test_each_server_votes_for_at_most_one_candidate_per_term_first_come_first_served() -> None:
    """Reference: paper 5.2. "Each server will vote for at most one candidate in a
    given term, on a first-come-first-served basis." """
    r = lone_node("n3")
    r.step(RequestVote(1, "n1", "n3", 0, 0))
    r.step(RequestVote(1, "n2", "n3", 0, 0))
    r.step(RequestVote(1, "n1", "n3", 0, 0))  # a retransmission from the one we chose
    answers = [(m.recipient, m.granted) for m in drain(r).messages]
    assert answers == [("n1", True), ("n2", False), ("n1", True)]
    assert r.vote == "n1"


def test_the_vote_is_persisted_before_the_response_and_survives_a_crash() -> None:
    """Reference: paper 5.2 and Figure 2 ("votedFor ... updated on stable storage
    before responding to RPCs"): after a crash-restart a server still refuses a
    second candidate of the same term."""
    c = ManualCluster(3, PAPER)
    c.campaign("n1")
    c.deliver(both(to("n3"), of_type(RequestVote)))
    (grant,) = sent(c, RequestVoteResponse, sender="n3")
    assert grant.granted
    # the grant is queued (sent): the vote is already on n3's disk
    assert c.storages["n3"].load().hard_state == HardState(1, "n1", 0)
    c.crash("n3")
    assert c.storages["n3"].load().hard_state.vote == "n1"
    c.restart("n3")
    assert (c.node("n3").term, c.node("n3").vote) == (1, "n1")
    c.deliver_one(RequestVote(1, "n2", "n3", 5, 1))
    (refusal,) = sent(c, RequestVoteResponse, sender="n3", recipient="n2")
    assert not refusal.granted, c.story()


def test_a_candidate_that_receives_append_entries_from_a_leader_of_its_term_steps_down() -> None:
    """Reference: paper 5.2. "If the leader's term ... is at least as large as the
    candidate's current term, then the candidate recognizes the leader as legitimate
    and returns to follower state." """
    c = ManualCluster(3, PAPER)
    c.campaign("n1")
    c.campaign("n2")  # two candidates of term 1
    c.deliver(both(to("n3"), of_type(RequestVote), lambda m: m.sender == "n1"))
    c.take(lambda m: m.recipient != "n1")  # n2 hears no vote request; n3 saw only n1's
    c.deliver(of_type(RequestVoteResponse))  # n1 wins term 1 with n3's vote...
    assert c.node("n1").role is Role.LEADER and c.node("n1").term == 1, c.story()
    assert c.node("n2").role is Role.CANDIDATE and c.node("n2").term == 1
    c.deliver(both(to("n2"), of_type(AppendEntries)))  # ...and n2 hears from it
    r = c.node("n2")
    assert (r.role, r.term, r.leader_id) == (Role.FOLLOWER, 1, "n1"), c.story()


def test_a_candidate_with_a_majority_of_rejections_returns_to_follower() -> None:
    """Reference: paper 5.2 (the third outcome: the candidate does not win) --
    a candidate that a majority refuses gives up its candidacy and waits."""
    c = ManualCluster(3, PAPER)
    load_logs(c, {"n1": (1,), "n2": (1, 2), "n3": (1, 2)}, term=2)
    c.campaign("n1")
    assert c.node("n1").role is Role.CANDIDATE
    c.stabilize()
    r = c.node("n1")
    assert (r.role, r.term, r.vote) == (Role.FOLLOWER, 3, "n1"), c.story()


def test_split_votes_are_resolved_in_a_later_term() -> None:
    """Reference: paper 5.2. "If many followers become candidates at the same time,
    votes could be split so that no candidate obtains a majority ... each candidate
    will time out and start a new election"; randomized timeouts make it converge."""
    c = ManualCluster(3, PAPER, seed=11)
    for n in c.ids:
        c.campaign(n)
    c.stabilize()
    assert c.leader() is None, "everyone voted for itself: no majority in term 1"
    assert all(c.node(n).term == 1 for n in c.ids)
    for _ in range(10 * PAPER.election_ticks_max):
        c.tick()
        c.stabilize()
        if c.leader():
            break
    lead = c.leader()
    assert lead is not None and c.node(lead).term >= 2, c.story()
    assert all(c.node(n).leader_id == lead for n in c.ids)


# --- 5.4.1 election restriction --------------------------------------------------------


@pytest.mark.parametrize(
    ("voter_log", "candidate_last", "granted"),
    [
        # last term decides first: a longer log of an older term loses
        ((1, 1, 2), (10, 1), False),
        ((1, 1, 2), (1, 3), True),
        # same last term: the longer log wins
        ((1, 1, 2, 2), (3, 2), False),
        ((1, 1, 2, 2), (4, 2), True),
        ((1, 1, 2, 2), (9, 2), True),
    ],
    ids=["older-last-term-longer-log", "newer-last-term-shorter-log", "same-term-shorter",
         "same-term-same-length", "same-term-longer"],
)
def test_votes_are_refused_to_a_candidate_whose_log_is_less_up_to_date(
    voter_log: tuple[int, ...], candidate_last: tuple[int, int], granted: bool
) -> None:
    """Reference: paper 5.4.1. "If the logs have last entries with different terms,
    then the log with the later term is more up-to-date. If the logs end with the same
    term, then whichever log is longer is more up-to-date." A voter refuses a
    candidate whose log is less up-to-date than its own."""
    r = lone_node("n3", terms=voter_log, term=5)
    last_index, last_term = candidate_last
    r.step(RequestVote(6, "n1", "n3", last_index, last_term))
    (answer,) = drain(r).messages
    assert isinstance(answer, RequestVoteResponse)
    assert answer.granted is granted
    assert r.vote == ("n1" if granted else None)
    assert r.term == 6, "the higher term is adopted either way (paper 5.1)"
