"""Paper 5.3 (log replication) and 5.4.2 (committing entries from previous terms),
one test per sentence, on ``ManualCluster`` or a single ``RaftNode``."""

from __future__ import annotations

from random import Random

import pytest

from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
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


def data(index: int, term: int) -> bytes:
    return b"%d@%d" % (index, term)


def entries_of(terms: tuple[int, ...], start: int = 1) -> list[Entry]:
    return [Entry(start + k, t, data(start + k, t)) for k, t in enumerate(terms)]


def follower_with_log(terms: tuple[int, ...], term: int, commit: int = 0) -> RaftNode:
    storage = MemoryStorage(ClusterConfig(frozenset(VOTERS)))
    storage.save(HardState(term=term, commit=commit), entries_of(terms))
    return RaftNode("n2", storage, Random(1), PAPER)


def drain(r: RaftNode) -> Ready:
    rd = r.ready()
    r.storage.save(rd.hard_state, rd.entries, rd.snapshot)
    r.advance(rd)
    return rd


def load_logs(c: ManualCluster, logs: dict[str, tuple[int, ...]], term: int) -> None:
    for nid, terms in logs.items():
        c.crash(nid)
        c.storages[nid].save(HardState(term=term), entries_of(terms))
        c.restart(nid)


def log_of(c: ManualCluster, nid: str) -> list[tuple[int, int]]:
    return [(e.index, e.term) for e in c.node(nid).log.entries]


def sent(c: ManualCluster, kind: type, **fields: object) -> list[Message]:
    return [
        m for m in c.queue
        if isinstance(m, kind) and all(getattr(m, k) == v for k, v in fields.items())
    ]


# --- 5.3 log replication ------------------------------------------------------------------


def test_the_leader_appends_a_proposal_to_its_log_and_replicates_it() -> None:
    """Reference: paper 5.3. "The leader appends the command to its log as a new
    entry, then issues AppendEntries RPCs in parallel to each of the other servers
    to replicate the entry." """
    c = ManualCluster(3, PAPER)
    c.elect("n1")
    r = c.node("n1")
    last = r.log.last_index
    r.propose(b"cmd")
    assert r.log.entry(last + 1) == Entry(last + 1, r.term, b"cmd")
    rd = r.ready()
    assert rd.entries == [Entry(last + 1, r.term, b"cmd")], "the entry is persisted..."
    appends = [m for m in [*rd.early_messages, *rd.messages] if isinstance(m, AppendEntries)]
    assert sorted(m.recipient for m in appends) == ["n2", "n3"], "...and sent to each follower"
    assert all(
        m.entries == (Entry(last + 1, r.term, b"cmd"),) and m.prev_log_index == last
        for m in appends
    )
    r.advance(rd)


def test_an_entry_is_committed_once_a_majority_stores_it_and_followers_learn_it() -> None:
    """Reference: paper 5.3. "A log entry is committed once the leader that created
    the entry has replicated it on a majority of the servers ... The leader keeps
    track of the highest index it knows to be committed, and it includes that index
    in future AppendEntries RPCs ... Once a follower learns that a log entry is
    committed, it applies the entry to its local state machine." """
    c = ManualCluster(5, PAPER)
    c.elect("n1")
    c.tick(times=PAPER.heartbeat_ticks)
    c.stabilize()
    index = c.propose("n1", b"cmd")
    c.deliver(to("n2"))
    c.deliver(to("n1"))
    assert c.node("n1").commit < index, "2 of 5 is no majority"
    c.deliver(to("n3"))
    c.deliver(both(to("n1"), of_type(AppendEntriesResponse)))
    assert c.node("n1").commit == index, "3 of 5 stored it: committed"
    assert c.applied_data("n1") == [b"cmd"]
    assert all(c.node(n).commit < index for n in ("n2", "n3", "n4", "n5"))
    carrying = [m for m in c.queue if isinstance(m, AppendEntries) and m.leader_commit == index]
    assert {m.recipient for m in carrying} >= {"n2", "n3"}, c.queue
    c.stabilize()
    c.tick("n1", times=PAPER.heartbeat_ticks)  # n4 and n5 learn it on the next heartbeat
    c.stabilize()
    for n in c.ids:
        assert c.node(n).commit == index and c.applied_data(n) == [b"cmd"], (n, c.story())


def test_the_consistency_check_rejects_append_entries_whose_prev_entry_does_not_match() -> None:
    """Reference: paper 5.3. "If the follower does not find an entry in its log with
    the same index and term, then it refuses the new entries." """
    r = follower_with_log((1, 1, 2), term=3)
    before = list(r.log.entries)
    r.step(AppendEntries(3, "n1", "n2", 3, 3, tuple(entries_of((3,), start=4)), 0))
    r.step(AppendEntries(3, "n1", "n2", 5, 3, tuple(entries_of((3,), start=6)), 0))
    rd = drain(r)
    assert [(m.success, m.match_index) for m in rd.messages] == [(False, 3), (False, 5)]
    assert r.log.entries == before
    assert rd.entries == []


def test_a_follower_deletes_a_conflicting_suffix_and_appends_the_leaders_entries() -> None:
    """Reference: paper 5.3 and Figure 2 AppendEntries rules 3 and 4: "If an existing
    entry conflicts with a new one (same index but different terms), delete the
    existing entry and all that follow it. Append any new entries not already in
    the log." Entries already present are kept (a stale, shorter message truncates
    nothing)."""
    r = follower_with_log((1, 1, 2, 2, 2), term=3)
    leader = tuple(entries_of((1, 3, 3), start=2))
    r.step(AppendEntries(3, "n1", "n2", 1, 1, leader, 0))
    rd = drain(r)
    assert [(e.index, e.term) for e in r.log.entries] == [(1, 1), (2, 1), (3, 3), (4, 3)]
    assert rd.entries == list(leader[1:])
    assert [(m.success, m.match_index) for m in rd.messages] == [(True, 4)]
    stored = r.storage.load().entries
    assert [(e.index, e.term) for e in stored] == [(1, 1), (2, 1), (3, 3), (4, 3)]
    # a delayed copy of an earlier, shorter message must not cut index 4 off
    r.step(AppendEntries(3, "n1", "n2", 1, 1, leader[:2], 0))
    rd = drain(r)
    assert r.log.last_index == 4 and rd.entries == []
    assert [(m.success, m.match_index) for m in rd.messages] == [(True, 3)]


def test_the_leader_never_overwrites_or_deletes_its_own_entries() -> None:
    """Reference: paper 5.3 and Figure 3 ("Leader Append-Only: a leader never
    overwrites or deletes entries in its log; it only appends new entries") --
    while it repairs followers whose logs disagree with it."""
    c = ManualCluster(3, PAPER)
    load_logs(c, {"n1": (1, 1, 3), "n2": (1, 1, 2, 2, 2, 2), "n3": (1, 1, 3)}, term=3)
    c.campaign("n1")
    leader_log: list[tuple[int, int]] = []
    for _ in range(200):
        if not c.queue:
            break
        c.deliver_one(c.queue.pop(0))
        if c.node("n1").role is Role.LEADER:
            now = log_of(c, "n1")
            assert now[: len(leader_log)] == leader_log, "the leader rewrote its log"
            leader_log = now
        if len(leader_log) == 3:  # a few proposals while followers are being repaired
            c.propose("n1", b"p")
    assert c.node("n1").role is Role.LEADER
    assert log_of(c, "n2") == log_of(c, "n1") == log_of(c, "n3"), c.story()
    assert log_of(c, "n1")[:3] == [(1, 1), (2, 1), (3, 3)]


@pytest.mark.parametrize(
    ("leader_log", "follower_log", "conflicting_terms"),
    [
        ((1, 1, 1) + (4,) * 7, (1, 1, 1) + (2,) * 30 + (3,) * 20, 2),
        ((1, 1, 1) + (2,) * 5 + (4,) * 10, (1, 1, 1) + (2,) * 30 + (3,) * 20, 2),
        ((1,) * 3 + (2,) * 2 + (4,) * 3, (1,) * 3 + (2,) * 12 + (3,) * 25, 2),
    ],
    ids=["leader-never-had-those-terms", "shared-term-2-prefix", "follower-longer-in-term-2"],
)
def test_fast_backup_repairs_a_long_conflict_in_one_round_trip_per_conflicting_term(
    leader_log: tuple[int, ...], follower_log: tuple[int, ...], conflicting_terms: int
) -> None:
    """Reference: paper 5.3 ("the follower can include the term of the conflicting
    entry and the first index it stores for that term ... one AppendEntries RPC
    will be required for each term with conflicting entries, rather than one RPC
    per entry"). n2 holds 30 entries of term 2 and 20 of term 3 that the leader
    never had: it is repaired with at most one rejection per conflicting term."""
    c = ManualCluster(3, PAPER)
    load_logs(c, {"n1": leader_log, "n2": follower_log, "n3": leader_log}, term=4)
    c.campaign("n1")
    c.deliver(both(to("n3"), of_type(RequestVote)))
    c.take(both(to("n2"), of_type(RequestVote)))
    c.deliver(of_type(RequestVoteResponse))
    assert c.node("n1").role is Role.LEADER
    c.stabilize()
    rejections = [line for line in c.transcript
                  if line.startswith("n2->n1 AppendEntriesResponse") and "success=False" in line]
    assert 1 <= len(rejections) <= conflicting_terms, "\n".join(rejections)
    assert log_of(c, "n2") == log_of(c, "n1"), c.story()
    assert c.node("n2").log.last_index == len(leader_log) + 1


def test_without_matching_terms_the_leader_backs_up_to_a_follower_with_a_short_log() -> None:
    """Reference: paper 5.3 -- a follower whose log is simply shorter tells the leader
    where it ends, so the leader does not walk back one entry at a time."""
    c = ManualCluster(3, PAPER)
    load_logs(c, {"n1": (1,) * 40, "n2": (1,) * 3, "n3": (1,) * 40}, term=1)
    c.campaign("n1")
    c.stabilize()
    c.tick("n1", times=PAPER.heartbeat_ticks)
    c.stabilize()
    rejections = [line for line in c.transcript
                  if line.startswith("n2->n1 AppendEntriesResponse") and "success=False" in line]
    assert len(rejections) <= 1, "\n".join(rejections)
    assert log_of(c, "n2") == log_of(c, "n1")


# --- 5.4.2 committing entries from previous terms ------------------------------------------


def test_the_leaders_noop_of_its_term_commits_earlier_entries_indirectly() -> None:
    """Reference: paper 5.4.2. "Raft never commits log entries from previous terms by
    counting replicas. Only log entries from the leader's current term are committed
    by counting replicas; once an entry from the current term has been committed in
    this way, then all prior entries are committed indirectly" -- the no-op the
    leader appends at the start of its term (paper 8) is that entry."""
    one_per_message = RaftConfig(pre_vote=False, check_quorum=False, max_batch_bytes=1)
    c = ManualCluster(3, one_per_message)
    c.elect("n1")
    c.propose("n1", b"old")  # index 2, term 1: stored on n1 and n2 only, never committed
    c.deliver(both(to("n2"), of_type(AppendEntries)))
    c.take()
    assert c.node("n2").log.last_index == 2 and c.node("n1").commit == 1
    c.crash("n1")
    c.campaign("n2")
    while c.deliver(of_type(RequestVote, RequestVoteResponse)):
        pass
    r = c.node("n2")
    assert r.role is Role.LEADER and r.term == 2, c.story()
    assert r.log.term(3) == 2 and r.log.entry(3).data == b"", "the no-op of term 2"
    # n3 first catches up to index 2 (term 1): a majority now stores it...
    while r.commit < 3 and c.queue:
        m = c.queue.pop(0)
        c.deliver_one(m)
        if c.node("n3").log.last_index == 2:
            assert r.commit == 1, "an old-term entry was committed by counting replicas"
    # ...but only the no-op's replication commits it, together with index 2
    assert r.commit == 3, c.story()
    assert c.applied_data("n2") == [b"old"]


# --- lazy commit notification (the node server's setting) ---------------------------------

LAZY = RaftConfig(pre_vote=False, check_quorum=False, lazy_commit_notify=True)


def test_lazy_commit_notify_sends_nothing_at_commit_and_tells_followers_on_the_next_tick() -> None:
    """With ``lazy_commit_notify`` a commit alone sends no message (the eager mode
    sends an empty AppendEntries at once); the leader's next tick carries the new
    commit index to every follower, which then applies."""
    for cfg, eager in ((PAPER, True), (LAZY, False)):
        c = ManualCluster(3, cfg)
        c.elect("n1")
        c.stabilize()
        index = c.propose("n1", b"cmd")
        c.deliver(to("n2"))
        c.deliver(to("n3"))
        c.deliver(both(to("n1"), of_type(AppendEntriesResponse)))
        assert c.node("n1").commit == index and c.applied_data("n1") == [b"cmd"]
        notes = [m for m in c.queue if isinstance(m, AppendEntries) and m.leader_commit == index]
        assert bool(notes) == eager, (cfg, c.queue)
    c.stabilize()
    assert all(c.node(n).commit < index for n in ("n2", "n3")), "nobody told them yet"
    c.tick("n1")
    c.stabilize()
    assert all(c.node(n).commit == index and c.applied_data(n) == [b"cmd"]
               for n in ("n2", "n3")), c.story()


def test_lazy_commit_notify_lets_the_next_entry_carry_the_commit_index() -> None:
    """A lone writer's next proposal tells the followers about the previous commit,
    with no tick and no extra message."""
    c = ManualCluster(3, LAZY)
    c.elect("n1")
    c.stabilize()
    first = c.propose("n1", b"one")
    c.stabilize()
    assert c.node("n1").commit == first
    assert all(c.node(n).commit < first for n in ("n2", "n3"))
    c.propose("n1", b"two")
    carrying = [m for m in c.queue if isinstance(m, AppendEntries)]
    assert sorted(m.recipient for m in carrying) == ["n2", "n3"]
    assert all(m.leader_commit == first and len(m.entries) == 1 for m in carrying)
    c.deliver(to("n2"))
    assert c.applied_data("n2") == [b"one"]
