"""The core's part of quiescence and host-level failure handling: ``campaign``,
``forget_leader``, ``can_quiesce`` and ``quiesce`` (the node host decides when)."""

from __future__ import annotations

from nodes.raft.messages import AppendEntries, RequestVote
from nodes.raft.ready import Role
from nodes.sim.manual import ManualCluster, both, of_type, to


def test_campaign_starts_an_election_now() -> None:
    c = ManualCluster(3)
    c.node("n2").campaign()
    c.process("n2")
    c.stabilize()
    assert c.leader() == "n2", c.story()


def test_can_quiesce_only_once_every_follower_holds_every_entry() -> None:
    c = ManualCluster(3)
    c.elect("n1")
    leader = c.node("n1")
    assert leader.can_quiesce(), c.story()
    c.propose("n1", b"x")
    assert not leader.can_quiesce()  # not yet replicated
    c.deliver(to("n2"))  # n2 gets it; n3 does not yet
    c.deliver(to("n1"))
    assert leader.commit == leader.log.last_index
    assert not leader.can_quiesce()  # n3 lags behind
    c.stabilize()
    assert leader.can_quiesce()
    assert not c.node("n2").can_quiesce()  # followers never decide


def test_a_pending_read_keeps_the_leader_awake() -> None:
    c = ManualCluster(3)
    c.elect("n1")
    c.node("n1").read_index("r1")
    c.process("n1")
    assert not c.node("n1").can_quiesce()
    c.stabilize()
    assert c.node("n1").can_quiesce()


def test_quiesce_sends_each_follower_a_heartbeat_with_the_commit_index() -> None:
    c = ManualCluster(3)
    c.elect("n1")
    c.propose("n1", b"x")
    c.stabilize()
    c.node("n1").quiesce()
    c.process("n1")
    beats = c.take(of_type(AppendEntries))
    assert sorted(m.recipient for m in beats) == ["n2", "n3"]
    assert all(m.entries == () and m.leader_commit == 2 for m in beats), beats


def test_forget_leader_lets_a_follower_grant_a_pre_vote_inside_the_lease() -> None:
    c = ManualCluster(3)
    c.elect("n1")
    c.crash("n1")
    # n2 campaigns at once: n3 heard from n1 a moment ago, so it ignores the pre-vote
    c.campaign("n2")
    c.deliver(both(to("n3"), of_type(RequestVote)))
    assert c.take(to("n2")) == [], c.story()
    assert c.node("n2").role is Role.PRE_CANDIDATE
    # once n3 forgets n1 (its node is down), the same campaign wins
    c.node("n3").forget_leader()
    c.process("n3")
    c.campaign("n2")
    c.stabilize()
    assert c.leader() == "n2", c.story()


def test_forget_leader_keeps_term_and_vote() -> None:
    c = ManualCluster(3)
    c.elect("n1")
    f = c.node("n2")
    term, vote = f.term, f.vote
    f.forget_leader()
    assert (f.term, f.vote, f.leader_id, f.role) == (term, vote, None, Role.FOLLOWER)


def test_a_member_known_down_is_not_waited_for() -> None:
    c = ManualCluster(3)
    c.elect("n1")
    c.crash("n3")
    c.propose("n1", b"x")
    c.stabilize()
    leader = c.node("n1")
    assert leader.commit == 2
    assert not leader.can_quiesce()
    assert leader.can_quiesce(down={"n3"})
    assert not leader.can_quiesce(down={"n2"})


def test_tick_says_whether_it_left_work_for_a_ready() -> None:
    """A driver of many groups asks ``has_ready()`` only of groups whose tick said so;
    the answer must be True whenever the tick left a Ready behind."""
    c = ManualCluster(3)
    c.elect("n1")
    c.stabilize()
    follower, leader = c.node("n2"), c.node("n1")
    quiet = [follower.tick() for _ in range(3)]
    assert quiet == [False] * 3 and not follower.has_ready()
    follower.election_elapsed = follower.randomized_election_timeout - 1
    assert follower.tick() is True and follower.has_ready()  # it campaigns
    c.process("n2")
    results = []
    for _ in range(leader.cfg.heartbeat_ticks):
        results.append((leader.tick(), leader.has_ready()))
        c.process("n1")
    assert all(said == had for said, had in results), results
    assert (True, True) in results  # the heartbeat tick
