"""Term and vote survive a crash at every step of their write (paper Figure 2:
currentTerm and votedFor are "updated on stable storage before responding to
RPCs"). A node on DiskStorage votes, crashes at one of the storage's crash
points around the hard-state write (or just after its answer left), restarts
from its directory, and is asked again in the same term by another candidate:
across both lives it grants at most one vote in that term."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from random import Random

import pytest

from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.messages import (
    ClusterConfig,
    HardState,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from nodes.raft.ready import Role
from nodes.sim.cluster import Cluster
from nodes.sim.storage_hosts import DiskHost
from nodes.storage import DiskStorage

VOTERS = ClusterConfig(frozenset({"n1", "n2", "n3"}))
PLAIN = RaftConfig(pre_vote=False, check_quorum=False)  # real votes, no lease

HARD_STATE_POINTS = [
    "hardstate.write", "hardstate.fsync", "hardstate.rename", "hardstate.dirsync", "save.done",
]


class PowerCut(Exception):
    pass


def crash_at(point: str | None) -> Callable[[str], None]:
    def hook(name: str) -> None:
        if name == point:
            raise PowerCut(name)

    return hook


def open_node(path: Path, point: str | None = None) -> tuple[RaftNode, DiskStorage]:
    if not path.exists():
        # a founder past the fresh-cluster check (a new founder's directory starts
        # recovering until its peers confirm the cluster is new: nodes.raft.core)
        with DiskStorage(path, "n3", "votes", VOTERS, fsync=False) as founded:
            founded.save(HardState(), [])
    storage = DiskStorage(path, "n3", "votes", VOTERS, fsync=False, crash_hook=crash_at(point))
    return RaftNode("n3", storage, Random(3), PLAIN), storage


def drive(node: RaftNode, storage: DiskStorage, outbox: list[Message]) -> None:
    """The Ready contract: persist, then send (only the leader's appends go early)."""
    while node.has_ready():
        rd = node.ready()
        outbox.extend(rd.early_messages)
        if rd.must_sync():
            storage.save(rd.hard_state, rd.entries, rd.snapshot)
        outbox.extend(rd.messages)
        node.advance(rd)


def granted_in(outbox: list[Message], term: int) -> set[str]:
    return {m.recipient for m in outbox
            if isinstance(m, RequestVoteResponse) and m.granted and m.term == term}


@pytest.mark.parametrize("point", [*HARD_STATE_POINTS, "after the answer left"])
def test_a_voter_that_crashes_while_saving_its_vote_never_votes_twice_in_that_term(
    point: str, tmp_path: Path,
) -> None:
    """Reference: paper 5.2 ("each server will vote for at most one candidate in a
    given term") and Figure 2. Up to the atomic rename of the hard state the vote
    is not durable -- and was never sent; from then on it is durable, and the
    restarted node refuses the second candidate."""
    outbox: list[Message] = []
    node, storage = open_node(tmp_path / "n3", None if point.startswith("after") else point)
    node.step(RequestVote(1, "n1", "n3", 0, 0))
    try:
        drive(node, storage, outbox)
        crashed = False
    except PowerCut:
        crashed = True
    storage.abandon()  # the process is gone; nothing more is written
    assert crashed != point.startswith("after"), f"no crash at {point}"
    if crashed:
        assert not granted_in(outbox, 1), f"the vote left before it was saved ({point})"
    else:
        assert granted_in(outbox, 1) == {"n1"}

    again, storage = open_node(tmp_path / "n3")
    durable = point.startswith("after") or point in ("hardstate.dirsync", "save.done")
    assert (again.term, again.vote) == ((1, "n1") if durable else (0, None)), point
    again.step(RequestVote(1, "n2", "n3", 0, 0))
    drive(again, storage, outbox)
    storage.close()
    votes = granted_in(outbox, 1)
    assert len(votes) <= 1, f"voted for {sorted(votes)} in term 1 (crash at {point})"
    # durable: n2 is refused (and n1 heard of its vote only if no crash came first)
    assert votes == ({"n2"} if not durable else set() if crashed else {"n1"}), point


@pytest.mark.parametrize("point", HARD_STATE_POINTS)
def test_a_candidate_that_crashes_while_saving_its_own_vote_never_votes_for_another_in_that_term(
    point: str, tmp_path: Path,
) -> None:
    """Reference: paper 5.2 ("each candidate votes for itself") and Figure 2. A
    candidate's RequestVotes leave only once its term and self-vote are durable;
    if the crash came first, nobody heard of the campaign and the restarted node
    may vote for another candidate of that term, else it must refuse."""
    outbox: list[Message] = []
    node, storage = open_node(tmp_path / "n3", point)
    for _ in range(PLAIN.election_ticks_max):
        node.tick()
        if node.role is Role.CANDIDATE:
            break
    assert node.role is Role.CANDIDATE and node.term == 1
    with pytest.raises(PowerCut):
        drive(node, storage, outbox)
    storage.abandon()
    assert not outbox, f"the campaign was announced before its vote was saved ({point})"

    again, storage = open_node(tmp_path / "n3")
    durable = point in ("hardstate.dirsync", "save.done")
    assert (again.term, again.vote) == ((1, "n3") if durable else (0, None)), point
    again.step(RequestVote(1, "n1", "n3", 0, 0))
    drive(again, storage, outbox)
    storage.close()
    assert granted_in(outbox, 1) == (set() if durable else {"n1"}), point


@pytest.mark.parametrize("seed", range(3))
def test_elections_with_crashes_around_the_hard_state_write_keep_every_saved_vote(
    seed: int,
) -> None:
    """Reference: paper 5.2 and Figure 2, on the simulator over DiskStorage: leaders
    are crashed again and again so that votes are cast and written, while nodes
    are armed to crash at a random step of the hard-state write. The invariants
    run after every event: one leader per term, and every restart finds the term
    and vote its last save left (or the one the crash interrupted)."""
    rng = Random(seed)
    host = DiskHost(Random(seed), segment_bytes=1024)
    c = Cluster(3 + 2 * (seed % 2), seed, storage_host=host)
    try:
        for _ in range(40):
            victim = rng.choice(list(c.nodes))
            c.arm_crash(victim, rng.choice(HARD_STATE_POINTS), skip=rng.randrange(2))
            lead = c.leader()
            if lead is not None:
                c.crash(lead)
            c.run_for(rng.uniform(100, 400))
            for nid in c.ids:
                c.restart(nid)
        assert sum(host.fired.values()) >= 5, f"seed={seed}: only {dict(host.fired)} fired"
        assert c.invariants.restarts_checked >= 25, f"seed={seed}"
        assert len(c.invariants.leader_of_term) >= 12, f"seed={seed}: too few elections"
        for nid in c.ids:
            c.host.disarm(nid)
            c.restart(nid)
        assert c.wait_for_leader(3000) is not None, f"seed={seed}: no leader at the end"
    finally:
        c.close()
