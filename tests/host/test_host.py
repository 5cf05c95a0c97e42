"""The node host: many groups, one sync per turn, coalesced batches, quiescence,
node failure."""

from __future__ import annotations

import pytest

from nodes.host.cluster import HostCluster
from nodes.host.host import Batch, GroupMessage, Host, HostOptions
from nodes.host.storage import MemoryWal
from nodes.raft.messages import AppendEntries, ClusterConfig, Entry, HardState
from nodes.raft.ready import Role

IDS = ["n1", "n2", "n3"]


def settled(groups: int, lead: str = "n1", quiesce_ticks: int = 3) -> HostCluster:
    c = HostCluster(IDS, HostOptions(quiesce_ticks=quiesce_ticks), seed=7)
    for gid in range(1, groups + 1):
        c.create(gid, IDS, lead=lead)
    c.stabilize()
    return c


def test_proposals_to_many_groups_share_one_sync_and_one_batch_per_peer() -> None:
    c = settled(50, quiesce_ticks=0)
    host, wal = c.hosts["n1"], c.wals["n1"]
    before = wal.syncs
    for gid in range(1, 51):
        host.propose(gid, b"w")
    turn = host.turn()
    assert turn.synced and wal.syncs == before + 1
    assert all(len(wal.by_id[gid].load().entries) == 2 for gid in range(1, 51))  # no-op + w
    assert [(b.recipient, len(b.messages)) for b in turn.batches] == [("n2", 50), ("n3", 50)]
    # the followers, too, persist the 50 groups' entries with one sync each
    for b in turn.batches:
        c.hosts[b.recipient].receive(b)
        f_before = c.wals[b.recipient].syncs
        answer = c.hosts[b.recipient].turn()
        assert c.wals[b.recipient].syncs == f_before + 1
        assert [(a.recipient, len(a.messages)) for a in answer.batches] == [("n1", 50)]


def test_no_ack_is_queued_before_the_turns_one_sync() -> None:
    """Acks of every group wait for the one sync; only a leader's early
    AppendEntries may be queued before it."""
    seen: list[list[str]] = []

    class Watching(MemoryWal):
        def sync(self) -> None:
            seen.append([type(gm.msg).__name__ for msgs in host._outbox.values() for gm in msgs])
            super().sync()

    host = Host("n2", Watching(), HostOptions())
    for gid in (1, 2):
        host.create_group(gid, IDS)
    host.receive(
        Batch(
            "n1",
            "n2",
            tuple(
                GroupMessage(gid, AppendEntries(1, "n1", "n2", 0, 0, (Entry(1, 1, b"a"),), 0))
                for gid in (1, 2)
            ),
        )
    )
    turn = host.turn()
    assert seen == [[]]
    assert [type(gm.msg).__name__ for gm in turn.batches[0].messages] == [
        "AppendEntriesResponse"
    ] * 2


def test_quiesced_groups_are_not_ticked_and_only_beats_cross() -> None:
    c = settled(20)
    for _ in range(6):
        c.tick()
        c.stabilize()
    assert all(c.quiesced(gid) == IDS for gid in range(1, 21))
    elapsed = {
        (nid, gid): (g.raft.election_elapsed, g.raft.heartbeat_elapsed)
        for nid, h in c.hosts.items()
        for gid, g in h.groups.items()
    }
    start = len(c.log)
    for _ in range(50):
        c.tick()
        c.stabilize()
    assert {
        (nid, gid): (g.raft.election_elapsed, g.raft.heartbeat_elapsed)
        for nid, h in c.hosts.items()
        for gid, g in h.groups.items()
    } == elapsed
    sent = [line for line in c.log[start:] if "->" in line]
    assert sent and all(line.endswith(" beat") for line in sent), sent[:5]
    assert len(sent) <= 6 * 50 // 5  # one beat per ordered node pair per beat_ticks


def test_a_proposal_wakes_its_group_and_only_it() -> None:
    c = settled(3)
    for _ in range(6):
        c.tick()
        c.stabilize()
    c.propose(2, b"x")
    c.stabilize()
    assert c.quiesced(1) == IDS and c.quiesced(3) == IDS
    assert c.quiesced(2) == []
    c.tick()  # lazy commit notification: the followers learn the commit at the next tick
    c.stabilize()
    assert sorted(line.split()[0] for line in c.log if "g2 applied 2@1" in line) == IDS
    for _ in range(6):
        c.tick()
        c.stabilize()
    assert c.quiesced(2) == IDS


def test_a_follower_behind_the_leader_does_not_quiesce() -> None:
    wal = MemoryWal()
    host = Host("n2", wal, HostOptions())
    host.create_group(1, IDS)
    # the quiesce heartbeat says commit 5, but this follower's log stops at 0
    host.receive(
        Batch("n1", "n2", (GroupMessage(1, AppendEntries(1, "n1", "n2", 0, 0, (), 5), True),))
    )
    assert not host.groups[1].quiesced
    host.turn()
    host.receive(
        Batch(
            "n1",
            "n2",
            (GroupMessage(1, AppendEntries(1, "n1", "n2", 0, 0, (Entry(1, 1, b"a"),), 1), True),),
        )
    )
    assert host.groups[1].quiesced


def test_messages_for_an_unknown_group_or_from_an_impostor_are_dropped() -> None:
    host = Host("n2", MemoryWal(), HostOptions())
    host.create_group(1, IDS)
    host.receive(Batch("n1", "n2", (GroupMessage(9, AppendEntries(1, "n1", "n2", 0, 0, (), 0)),)))
    host.receive(Batch("n1", "n2", (GroupMessage(1, AppendEntries(1, "n3", "n2", 0, 0, (), 0)),)))
    assert host.dropped == {"unknown_group": 1, "sender_mismatch": 1}
    assert host.groups[1].raft.term == 0


def test_a_dead_node_wakes_the_groups_it_led_and_they_elect() -> None:
    c = settled(6, lead="n1")
    c.create(7, IDS, lead="n2")
    c.stabilize()
    for _ in range(6):
        c.tick()
        c.stabilize()
    assert all(c.quiesced(gid) == IDS for gid in range(1, 8))
    c.kill("n1")
    for _ in range(80):
        c.tick()
        c.stabilize()
        if all(c.leader(gid) not in (None, "n1") for gid in range(1, 7)):
            break
    assert all(c.leader(gid) in ("n2", "n3") for gid in range(1, 7)), c.log[-30:]
    assert c.hosts["n2"].down == {"n1"}
    assert c.quiesced(7) == ["n2", "n3"]  # led by n2: nothing to do
    for gid in range(1, 7):
        c.propose(gid, b"after")
    c.stabilize()
    for _ in range(6):
        c.tick()
        c.stabilize()
    # with n1 known down, the groups quiesce again without waiting for it
    assert all(c.quiesced(gid) == ["n2", "n3"] for gid in range(1, 8))


def test_groups_are_created_and_removed_at_runtime() -> None:
    c = settled(2)
    c.create(3, IDS, lead="n3")
    c.stabilize()
    assert c.leader(3) == "n3"
    for nid in IDS:
        c.hosts[nid].remove_group(3)
        assert 3 not in c.wals[nid].by_id
    with pytest.raises(ValueError, match="not among group 4's members"):
        c.hosts["n1"].create_group(4, ["n2", "n3"])
    with pytest.raises(ValueError, match="group 1 already exists on node n1"):
        c.hosts["n1"].create_group(1, IDS)


def test_a_restarted_node_rebuilds_its_groups_from_the_shared_storage() -> None:
    c = settled(4)
    c.propose(1, b"x")
    c.stabilize()
    c.kill("n2")
    c.restart("n2")
    for _ in range(40):
        c.tick()
        c.stabilize()
    g = c.hosts["n2"].groups[1]
    assert g.raft.log.last_index == 2 and g.raft.role is Role.FOLLOWER
    assert all(c.leader(gid) == "n1" for gid in range(1, 5))


def test_memory_wal_keeps_only_what_was_synced() -> None:
    wal = MemoryWal()
    s = wal.open_group(1, ClusterConfig(frozenset(IDS)))
    s.stage(HardState(1, "n1"), [Entry(1, 1, b"a")])
    assert s.load().entries == []
    wal.sync()
    s.stage(None, [Entry(2, 1, b"b")])
    wal.crash()
    assert [e.index for e in s.load().entries] == [1] and s.load().hard_state.vote == "n1"
    assert wal.open_group(1, ClusterConfig()) is s


def test_a_leader_that_stepped_down_is_reelected_by_followers_whose_timer_is_frozen() -> None:
    """Followers of a live node run no election timer, so their leader lease never
    runs out: when the leader itself campaigns (it stepped down), they must still
    vote, or the group stays leaderless forever."""
    c = settled(1, quiesce_ticks=0)
    for _ in range(3):
        c.tick()
        c.stabilize()
    leader = c.hosts["n1"].groups[1].raft
    leader._become_follower(leader.term, None)  # as check-quorum does under load
    c.hosts["n1"]._dirty[1] = c.hosts["n1"].groups[1]
    c.stabilize()
    for _ in range(80):
        c.tick()
        c.stabilize()
        if c.leader(1) is not None:
            break
    assert c.leader(1) is not None, c.log[-20:]


def test_a_group_snapshots_and_a_node_that_missed_entries_catches_up_from_it() -> None:
    c = HostCluster(IDS, HostOptions(quiesce_ticks=3, snapshot_interval=4), seed=7)
    c.create(1, IDS, lead="n1")
    c.stabilize()
    c.kill("n3")
    for k in range(10):
        c.propose(1, b"x%d" % k)
        c.stabilize()
    leader = c.hosts["n1"].groups[1]
    assert leader.raft.log.offset_index >= 8  # compacted: n3's next entries are gone
    c.restart("n3")
    for _ in range(40):
        c.tick()
        c.stabilize()
    follower = c.hosts["n3"].groups[1]
    assert "InstallSnapshot" in "\n".join(c.log)
    assert follower.raft.applied == leader.raft.applied == 11
    assert follower.machine.count == leader.machine.count == 10  # type: ignore[attr-defined]


def test_a_membership_change_makes_the_new_node_a_peer_of_the_host() -> None:
    from nodes.raft.messages import ChangeKind, ConfigChange

    c = HostCluster(IDS, HostOptions(quiesce_ticks=0), seed=7)
    c.create(1, ["n1", "n2"], lead="n1")
    c.stabilize()
    host = c.hosts["n1"]
    assert host.peers() == {"n2"}
    host.propose_config_change(1, ConfigChange(ChangeKind.ADD_LEARNER, "n3"))
    c.stabilize()
    assert host.peers() == {"n2", "n3"} and "n3" in host.heard


class RecoveringWal(MemoryWal):
    """New groups start recovering, as SharedWal's do for a founder (a wiped
    directory cannot be told from a new one)."""

    def open_group(self, gid: int, initial_config: ClusterConfig):  # type: ignore[no-untyped-def]
        new = gid not in self.by_id
        g = super().open_group(gid, initial_config)
        if new:
            g.save(HardState(recovering=True), [])
        return g


def test_groups_on_storage_that_starts_recovering_still_get_their_placed_leaders() -> None:
    """Created asleep and told to campaign at once, a recovering replica must still
    run its term probe, then campaign: else the group never elects."""
    c = HostCluster(IDS, HostOptions(quiesce_ticks=3), seed=5)
    for nid in IDS:
        c.wals[nid] = RecoveringWal()
        c.hosts[nid].storage = c.wals[nid]
    for gid in range(1, 4):
        for nid in IDS:
            c.hosts[nid].create_group(gid, IDS, asleep=True)
    for gid in range(1, 4):
        c.hosts[IDS[gid % 3]].campaign(gid)
    assert c.hosts["n1"].groups[3].raft.recovering
    # the probe starts after election_ticks_max (30) ticks; the placed replica
    # campaigns as soon as it answers, not one more election timeout later
    for _ in range(40):
        c.tick()
        c.stabilize()
    assert [c.leader(gid) for gid in range(1, 4)] == ["n2", "n3", "n1"], c.log[-30:]
