"""Membership changes (thesis 4): regressions found while testing the core."""

from __future__ import annotations

from nodes.raft.messages import ChangeKind, ConfigChange
from nodes.raft.ready import Role
from nodes.sim.manual import ManualCluster


def test_a_leader_removed_from_the_configuration_steps_down_once_the_removal_commits() -> None:
    """Reference: thesis 4.2.2. "the leader steps down ... once the Cnew entry is
    committed". The commit happens while the leader handles an AppendEntries
    response; it used to go on replicating to that follower with the progress
    table already cleared (KeyError)."""
    c = ManualCluster(3)
    c.elect("n1")
    index = c.node("n1").propose_config_change(ConfigChange(ChangeKind.REMOVE, "n1"))
    c.process("n1")
    c.stabilize()
    r = c.node("n1")
    assert r.role is Role.FOLLOWER and r.commit >= index, c.story()
    assert r.removed and "n1" not in r.config.members()
    for _ in range(10 * c.config.election_ticks_max):
        c.tick()
        c.stabilize()
        if c.leader() not in (None, "n1"):
            break
    lead = c.leader()
    assert lead in ("n2", "n3") and c.node(lead).config.voters == {"n2", "n3"}, c.story()
    c.propose(lead, b"after")
    c.stabilize()
    assert c.applied_data("n2")[-1:] == c.applied_data("n3")[-1:] == [b"after"]


def test_a_server_added_with_an_empty_configuration_learns_the_whole_configuration() -> None:
    """Reference: thesis 4.1 / 4.4. A new server receives the log from the leader; the
    configuration it derives must be the cluster's, not one built from the changes
    alone -- otherwise, cut off, it elects itself with a "majority" of one."""
    c = ManualCluster(3)
    c.elect("n1")
    c.add_node("n4")  # a brand-new server: no configuration, it waits for a leader
    c.node("n1").propose_config_change(ConfigChange(ChangeKind.ADD_LEARNER, "n4"))
    c.process("n1")
    c.stabilize()
    c.tick("n1", times=c.config.heartbeat_ticks)  # caught up: auto-promoted
    c.stabilize()
    c.tick("n1", times=c.config.heartbeat_ticks)
    c.stabilize()
    assert c.node("n1").config.voters == {"n1", "n2", "n3", "n4"}
    c.isolate("n4")
    c.campaign("n4")
    c.stabilize()
    assert c.node("n4").role is not Role.LEADER, "n4 leads alone: two leaders at once"
    assert c.node("n4").config.voters == {"n1", "n2", "n3", "n4"}
