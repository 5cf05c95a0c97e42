"""Paper 5.4.2 and Figure 8: a leader may not commit an entry from an earlier term by
counting replicas. The scripted scenario follows the figure step by step; the
planted bug (commit by counting in any term) must be caught by the invariants."""

from __future__ import annotations

import pytest

from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.messages import AppendEntries
from nodes.raft.ready import Role
from nodes.sim.invariants import InvariantViolation
from nodes.sim.manual import ManualCluster

# basic Raft as in the paper: no pre-vote or leases, one entry per AppendEntries
PAPER = RaftConfig(pre_vote=False, check_quorum=False, max_batch_bytes=1)


def elect_with(c: ManualCluster, nid: str, voters: set[str]) -> None:
    """Campaign until ``nid`` leads, letting only ``voters`` hear it."""
    for _ in range(5):
        c.campaign(nid)
        while c.deliver(
            lambda m: {m.sender, m.recipient} <= voters | {nid} and not isinstance(m, AppendEntries)
        ):
            pass
        c.take(lambda m: not isinstance(m, AppendEntries))
        if c.node(nid).role is Role.LEADER:
            return
    raise AssertionError(f"{nid} was not elected\n{c.story()}")


def figure8(c: ManualCluster) -> int:
    """Play Figure 8; returns S1's commit index at step (c)."""
    # (a) S1 leads term 1 and replicates index 2 only to S2
    c.elect("n1")
    c.propose("n1", b"from-term-1")
    c.deliver(lambda m: m.recipient == "n2")
    c.take()
    assert [c.node(n).log.last_index for n in ("n1", "n2", "n3")] == [2, 2, 1]
    # (b) S1 crashes; S5 is elected by S3, S4 and itself, appends its own index 2
    c.crash("n1")
    elect_with(c, "n5", {"n3", "n4"})
    assert c.node("n5").log.term(2) == c.node("n5").term
    c.take()
    # (c) S5 crashes; S1 restarts, is elected, and replicates index 2 to S3 but not
    #     yet its own term's entry (index 3)
    c.crash("n5")
    c.restart("n1")
    elect_with(c, "n1", {"n2", "n3"})
    def old_term_only(m: object) -> bool:
        # S2 may take index 3 too (2 of 5 is no majority); S3 gets index 2 only
        # (it may see, and reject, the probe carrying index 3 while it lacks index 2)
        carries_new = isinstance(m, AppendEntries) and any(e.index >= 3 for e in m.entries)
        lacks_2 = c.node("n3").log.last_index < 2
        return m.recipient in {"n1", "n2", "n3"} and (
            m.recipient != "n3" or not carries_new or lacks_2
        )

    while c.deliver(old_term_only):
        pass
    assert c.node("n3").log.term(2) == 1, "index 2 of term 1 is on a majority now"
    assert c.node("n3").log.last_index == 2
    commit_at_c = c.node("n1").commit
    c.take()
    # (d) S1 crashes; S5 restarts and wins (its last term beats index 2 of term 1)
    c.crash("n1")
    c.restart("n5")
    elect_with(c, "n5", {"n2", "n3", "n4"})
    c.stabilize()
    c.restart("n1")
    c.heal()
    for _ in range(3):
        c.tick(times=PAPER.heartbeat_ticks)
        c.stabilize()
    logs = {n: [(e.index, e.term) for e in c.node(n).log.entries] for n in c.nodes}
    assert len({tuple(v) for v in logs.values()}) == 1, logs
    return commit_at_c


def test_figure8_old_term_entry_is_not_committed_by_counting() -> None:
    """Reference: paper 5.4.2, Figure 8."""
    c = ManualCluster(5, PAPER)
    # the rule under test: S1 does not count index 2 (term 1) as committed in term 3
    assert figure8(c) == 1, c.story()
    # and index 2 ends up holding S5's entry everywhere, which is allowed
    assert all(c.node(n).log.term(2) == 2 for n in c.nodes)


def test_planted_bug_commit_by_counting_in_an_old_term_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The suite must fail if the commit rule is mutated to count old-term entries."""
    monkeypatch.setattr(RaftNode, "_may_commit_at", lambda self, index: True)
    with pytest.raises(InvariantViolation, match="leader completeness|state machine safety"):
        figure8(ManualCluster(5, PAPER))
