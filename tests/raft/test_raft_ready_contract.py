"""The Ready contract (``nodes.raft.ready``): a message leaves only together with
the durable state it speaks about, and the driver feeds the core nothing between
``ready()`` and ``advance()``. Plus batching and pipelining of AppendEntries
(thesis 10.2.1 / etcd's Progress flow control)."""

from __future__ import annotations

from random import Random

import pytest

from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.errors import RaftError
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from nodes.raft.ready import Ready, Role
from nodes.raft.storage import MemoryStorage, PersistedState
from nodes.sim.manual import ManualCluster, both, describe, of_type, to

VOTERS = frozenset({"n1", "n2", "n3"})


def lone_node(nid: str = "n2", cfg: RaftConfig | None = None) -> RaftNode:
    return RaftNode(nid, MemoryStorage(ClusterConfig(VOTERS)), Random(1), cfg)


def drain(r: RaftNode) -> Ready:
    rd = r.ready()
    r.storage.save(rd.hard_state, rd.entries, rd.snapshot)
    r.advance(rd)
    return rd


# --- messages travel with the state they depend on -------------------------------------


def test_a_vote_response_comes_in_the_same_ready_as_the_hard_state_recording_the_vote() -> None:
    """Reference: paper Figure 2 ("Persistent state ... updated on stable storage before
    responding to RPCs") and the Ready contract: persist, then send."""
    r = lone_node()
    r.step(RequestVote(1, "n1", "n2", 0, 0))
    rd = r.ready()
    assert [(type(m), m.granted) for m in rd.messages] == [(RequestVoteResponse, True)]
    assert rd.hard_state == HardState(1, "n1", 0)
    assert rd.must_sync()
    r.advance(rd)


def test_an_append_entries_success_comes_in_the_same_ready_as_the_entries_it_acknowledges() -> None:
    """Reference: paper Figure 2 and the Ready contract: an acknowledgement may only
    leave once the entries it acknowledges are durable (else a crash could lose an
    entry the leader counted towards a commit)."""
    r = lone_node()
    entries = (Entry(1, 1, b"a"), Entry(2, 1, b"b"))
    r.step(AppendEntries(1, "n1", "n2", 0, 0, entries, 1))
    rd = r.ready()
    (ack,) = rd.messages
    assert isinstance(ack, AppendEntriesResponse) and (ack.success, ack.match_index) == (True, 2)
    assert rd.entries == list(entries)
    assert rd.hard_state == HardState(1, None, 1, promised=2)  # the promise rides with the ack
    assert rd.committed_entries == [entries[0]], "applied only after the persist step"
    r.advance(rd)


def durable_after(state: PersistedState, rd: Ready) -> PersistedState:
    """What storage will hold once ``rd`` is saved (without touching the real one)."""
    scratch = MemoryStorage(state.initial_config)
    scratch._state = state  # a private copy from load()
    scratch.save(rd.hard_state, rd.entries, rd.snapshot)
    return scratch.load()


def durable_term_at(state: PersistedState, index: int) -> int | None:
    snap = state.snapshot
    if snap is not None and index == snap.meta.index:
        return snap.meta.term
    if index == 0:
        return 0
    for e in state.entries:
        if e.index == index:
            return e.term
    return None


def check_covered(nid: str, m: Message, durable: PersistedState) -> None:
    """Every claim ``m`` makes about ``nid``'s state holds in what is durable."""
    hs = durable.hard_state
    why = f"{nid} sent {m} before persisting what it depends on: {hs}"
    speaks_of_own_term = not (
        (isinstance(m, RequestVote) and m.pre_vote)
        or (isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted)
    )
    if speaks_of_own_term:
        assert hs.term >= m.term, why
        if hs.term > m.term:
            # the node moved to a later term within the same Ready (a driver may step
            # several messages before calling ready()): that term is durable, so the
            # node can never act in m.term again, as after a crash in plain Raft
            return
    if isinstance(m, RequestVoteResponse) and m.granted and not m.pre_vote:
        assert hs.vote == m.recipient, why
    if isinstance(m, RequestVote) and not m.pre_vote:
        assert hs.vote == nid, why
    if isinstance(m, AppendEntriesResponse) and m.success:
        snap_index = durable.snapshot.meta.index if durable.snapshot else 0
        assert m.match_index <= snap_index or durable_term_at(durable, m.match_index), why
    if isinstance(m, AppendEntries):
        for e in m.entries:
            assert durable_term_at(durable, e.index) == e.term, why
    if isinstance(m, InstallSnapshotResponse) and m.done:
        # installed, or already committed (and so durable) up to the snapshot's index
        snap_index = durable.snapshot.meta.index if durable.snapshot else 0
        assert max(snap_index, hs.commit) >= m.snapshot_index, why


def deliver_batch(c: ManualCluster, rng: Random) -> int:
    """Step several queued messages for one node, then handle one Ready -- as the
    node server does with everything its transport received in one poll."""
    recipient = rng.choice([m.recipient for m in c.queue])
    mine = [m for m in c.queue if m.recipient == recipient]
    batch = rng.sample(mine, rng.randint(1, min(6, len(mine))))
    for m in batch:
        c.queue.remove(m)
    if recipient not in c.nodes:
        return 0
    stepped = 0
    for m in batch:
        if rng.random() < 0.1 or (m.sender, m.recipient) in c.blocked:
            continue  # lost
        c.transcript.append(f"batch {describe(m)}")
        c.node(recipient).step(m)
        stepped += 1
    c.process(recipient)
    return stepped


@pytest.mark.parametrize("batched", [False, True], ids=["one-message-per-ready", "batched"])
@pytest.mark.parametrize("seed", range(6))
def test_no_message_ever_leaves_before_the_state_it_depends_on_is_durable(
    seed: int, batched: bool
) -> None:
    """Reference: paper Figure 2 and the Ready contract, as a property: a seeded
    random schedule of ticks, proposals, deliveries (one message per Ready, or
    several stepped before one Ready), drops, reordering, crashes and restarts;
    every message of every Ready is checked against what that Ready makes durable,
    and the cluster invariants are checked after every Ready."""
    rng = Random(seed)
    c = ManualCluster(3, RaftConfig(max_batch_bytes=60, max_inflight=3), seed=seed,
                      snapshot_interval=7)
    inner = c.invariants.on_ready

    def on_ready(node: object, rd: Ready) -> None:
        inner(node, rd)  # type: ignore[arg-type]
        nid = node.id  # type: ignore[attr-defined]
        before = c.storages[nid].load().hard_state
        durable = durable_after(c.storages[nid].load(), rd)
        for m in rd.messages:
            check_covered(nid, m, durable)
        for m in rd.early_messages:
            # thesis 10.2.1: only a leader's replication may leave before the write,
            # and only in a term that is already durable
            assert isinstance(m, AppendEntries | InstallSnapshot), (nid, m)
            assert m.term == before.term, (nid, m, before)

    c.invariants.on_ready = on_ready  # type: ignore[method-assign]
    checked = 0
    for step in range(1500):
        roll = rng.random()
        if roll < 0.45 and c.queue:
            if batched:
                checked += deliver_batch(c, rng)
                continue
            m = c.queue.pop(rng.randrange(len(c.queue)))  # reordered
            if rng.random() > 0.1:
                checked += c.deliver_one(m)
        elif roll < 0.8:
            c.tick(rng.choice(c.ids)) if rng.random() < 0.5 else c.tick()
        elif roll < 0.93:
            lead = c.leader()
            if lead is not None and c.node(lead).lead_transferee is None:
                c.propose(lead, b"op%d" % step)
        elif roll < 0.97 and len(c.nodes) == 3:
            c.crash(rng.choice(sorted(c.nodes)))
        else:
            for nid in c.ids:
                if nid not in c.nodes:
                    c.restart(nid)
    assert checked > 200 and len(c.invariants.leader_of_term) >= 1, (seed, checked)


# --- the driver contract ------------------------------------------------------------------


def leader_node() -> RaftNode:
    r = RaftNode("n1", MemoryStorage(ClusterConfig(frozenset({"n1"}))), Random(1))
    for _ in range(RaftConfig().election_ticks_max):
        r.tick()
        while r.has_ready():
            drain(r)
    assert r.role is Role.LEADER
    return r


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.tick(),
        lambda r: r.step(AppendEntriesResponse(r.term, "n2", "n1", True, 1)),
        lambda r: r.propose(b"x"),
        lambda r: r.read_index("ctx"),
        lambda r: r.ready(),
        lambda r: r.compact(1),
    ],
    ids=["tick", "step", "propose", "read_index", "ready", "compact"],
)
def test_any_input_between_ready_and_advance_raises_assertion_error(call: object) -> None:
    """Reference: the Ready contract (``nodes.raft.ready``): "only then calls
    advance(ready); it feeds the core nothing else in between"."""
    r = leader_node()
    r.propose(b"before")
    rd = r.ready()
    log_before = list(r.log.entries)
    with pytest.raises(AssertionError, match="advance"):
        call(r)  # type: ignore[operator]
    assert r.log.entries == log_before, "the refused input changed the log"
    r.storage.save(rd.hard_state, rd.entries, rd.snapshot)
    r.advance(rd)
    r.propose(b"after")  # and the node works normally afterwards
    drain(r)
    assert [e.data for e in r.log.entries][-2:] == [b"before", b"after"]


def test_advance_without_ready_raises_assertion_error() -> None:
    """Reference: the Ready contract: advance() answers exactly one ready()."""
    r = leader_node()
    with pytest.raises(AssertionError):
        r.advance(Ready())


def test_not_leader_is_an_error_of_the_core_not_an_assertion() -> None:
    """Reference: the Ready contract and STYLE.md habit 13: misuse by the driver is an
    AssertionError (a bug), while a refused proposal is an ordinary ``RaftError`` the
    caller handles (retry at the leader)."""
    with pytest.raises(RaftError):
        lone_node().propose(b"x")


# --- batching and pipelining ----------------------------------------------------------------


def replicating_cluster(cfg: RaftConfig) -> ManualCluster:
    """A leader whose followers are in the pipelined (replicate) state."""
    c = ManualCluster(3, cfg)
    c.elect("n1")
    c.tick(times=cfg.heartbeat_ticks)
    c.stabilize()
    return c


def appends_to(c: ManualCluster, nid: str) -> list[AppendEntries]:
    return [m for m in c.queue if isinstance(m, AppendEntries) and m.recipient == nid and m.entries]


def test_many_proposals_before_one_ready_go_out_in_a_single_append_entries_per_follower() -> None:
    """Reference: thesis 10.2.1 (batching): proposals that arrive together share one
    Ready, one fsync and one AppendEntries per follower."""
    c = replicating_cluster(RaftConfig())
    r = c.node("n1")
    first = r.log.last_index + 1
    for k in range(50):
        r.propose(b"op%d" % k)
    c.process("n1")
    for f in ("n2", "n3"):
        (m,) = appends_to(c, f)
        assert [e.index for e in m.entries] == list(range(first, first + 50))
    c.stabilize()
    assert c.node("n3").log.last_index == first + 49


def test_with_a_small_batch_bound_the_proposals_are_split_across_messages() -> None:
    """Reference: thesis 10.2.1 -- each AppendEntries is bounded by max_batch_bytes
    (entries of 26 bytes, bound 100: 3 per message); the backlog is pipelined in
    several messages at once, not one batch per round trip."""
    cfg = RaftConfig(max_batch_bytes=100, max_inflight=64)
    c = replicating_cluster(cfg)
    r = c.node("n1")
    first = r.log.last_index + 1
    for k in range(30):
        r.propose(b"op-%07d" % k)  # 10 bytes of data
    c.process("n1")
    for f in ("n2", "n3"):
        msgs = appends_to(c, f)
        assert all(sum(e.size() for e in m.entries) <= cfg.max_batch_bytes for m in msgs)
        assert [len(m.entries) for m in msgs] == [3] * 10
        assert [e.index for m in msgs for e in m.entries] == list(range(first, first + 30))
    c.stabilize()
    assert all(c.node(n).log.last_index == first + 29 for n in c.ids)


@pytest.mark.parametrize("max_inflight", [1, 3])
def test_with_max_inflight_n_at_most_n_append_entries_are_unacknowledged_per_follower(
    max_inflight: int,
) -> None:
    """Reference: thesis 10.2.1 / etcd Progress: the leader pipelines AppendEntries
    but keeps at most max_inflight unacknowledged per follower (flow control)."""
    cfg = RaftConfig(max_inflight=max_inflight)
    c = replicating_cluster(cfg)
    r = c.node("n1")
    for k in range(10):
        r.propose(b"op%d" % k)
        c.process("n1")  # one Ready (one message per follower) per proposal
    for f in ("n2", "n3"):
        assert len(appends_to(c, f)) == max_inflight, c.queue
    # one acknowledgement frees one slot
    oldest = appends_to(c, "n2")[0]
    c.queue.remove(oldest)
    c.deliver_one(oldest)
    c.deliver(both(to("n1"), of_type(AppendEntriesResponse)))
    assert len(appends_to(c, "n2")) == max_inflight
    assert len(appends_to(c, "n3")) == max_inflight
    # and everything arrives in the end
    c.stabilize()
    assert c.node("n2").log.last_index == c.node("n3").log.last_index == r.log.last_index


# --- the fast has_ready ---------------------------------------------------------------


def test_has_ready_agrees_with_the_dataclass_comparison_through_whole_simulated_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``has_ready`` compares the hard and soft states field by field (it runs on every
    turn of the driver); at every call of two simulated runs (elections, crashes,
    membership changes) it must say what comparing the dataclasses says."""
    from nodes.raft.ready import SoftState
    from nodes.sim.run import SimParams, run_seed

    fast = RaftNode.has_ready
    calls = []

    def checked(self: RaftNode) -> bool:
        got = fast(self)
        hs = HardState(self.term, self.vote, self.commit, self.promised, self.recovering)
        soft = SoftState(self.role, self.leader_id, self.term)
        changed = hs != self._persisted_hs or soft != self._soft
        if not changed:
            assert got == bool(
                self._msgs or (self._needs_broadcast and self.role is Role.LEADER)
                or self.log.stable_index < self.log.last_index or self.applied < self.commit
                or self._read_states or self._aborted_reads or self._pending_snapshot is not None
            ), self.id
        else:
            assert got, f"{self.id}: hard or soft state changed but has_ready() is False"
        calls.append(changed)
        return got

    monkeypatch.setattr(RaftNode, "has_ready", checked)
    for seed in (3, 8):
        result = run_seed(seed, SimParams(safety_ms=1500.0, sizes=(3,)))
        assert result.ok, f"seed={seed}: {result.line()}"
    assert any(calls) and not all(calls), "both branches were exercised"


@pytest.mark.parametrize("field, value", [
    ("term", 9), ("vote", "n3"), ("commit", 1), ("promised", 5), ("recovering", True),
    ("role", Role.CANDIDATE), ("leader_id", "n3"),
])
def test_has_ready_sees_each_field_of_the_hard_and_soft_state_change_alone(
    field: str, value: object
) -> None:
    r = lone_node()
    r.step(AppendEntries(1, "n1", "n2", 0, 0, (Entry(1, 1, b"a"),), 0))
    while r.has_ready():
        drain(r)
    before = getattr(r, field)
    setattr(r, field, value)
    assert r.has_ready(), f"{field} changed from {before!r} to {value!r} unseen"
    setattr(r, field, before)
    assert not r.has_ready()
