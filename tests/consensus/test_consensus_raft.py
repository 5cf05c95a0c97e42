"""mechanism="raft" through the ``Consensus`` API on the in-process network:
election, forwarding, failover, partitions, reads, events, snapshots, durability."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from consensus_helpers import ConsensusCluster, Recorder, run, wait_until

from nodes import Consensus, ConsensusError, InProcessNetwork


def test_three_nodes_elect_one_leader_that_every_node_reports() -> None:
    """Paper 5.2: at most one leader per term; every node learns who it is."""

    async def scenario() -> None:
        async with ConsensusCluster(seed=11) as cl:
            recorders = {i: Recorder(cl[i], "leader:elected") for i in cl.ids}
            leader = await cl.leader()
            assert [c.is_leader() for c in cl.nodes.values()].count(True) == 1
            assert cl[leader].get_node_id() == leader
            await wait_until(lambda: all(r.of("leader:elected") for r in recorders.values()))
            for r in recorders.values():
                (args, details), *_ = r.of("leader:elected")
                assert args == (leader,) and details["term"] >= 1
            state = cl[leader].get_debug_state()
            assert state["role"] == "leader" and state["leader_id"] == leader
            assert state["current_term"] >= 1
            assert state["commit_index"] >= 1 and state["log_length"] >= 1  # the no-op

    run(scenario())


def test_a_proposal_made_on_a_follower_is_forwarded_to_the_leader() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=12) as cl:
            leader = await cl.leader()
            follower = next(i for i in cl.ids if i != leader)
            result = await cl[follower].propose_with_result("setting", "new")
            assert result.accepted and result.error is None and result.key == "setting"
            assert result.votes.total == 3 and result.quorum_required == 2
            assert 2 <= result.votes.for_ <= 3 and result.votes.against == 0
            assert result.proposal_id and result.index is not None
            assert cl[follower].get_debug_state()["counters"]["forwarded"] >= 1
            assert await cl[follower].propose("player_score", 100) is True
            assert cl[follower].get("player_score") == 100  # read-your-writes, no waiting
            await cl.converged("player_score", 100)
            await cl.converged("setting", "new")

    run(scenario())


def test_killing_the_leader_elects_a_new_one_and_keeps_accepted_values() -> None:
    """Paper 5.4 (leader completeness): committed entries survive the leader."""

    async def scenario() -> None:
        async with ConsensusCluster(seed=13) as cl:
            old = await cl.leader()
            for k in range(5):
                assert await cl[old].propose(f"k{k}", k)
            await cl[old].stop()
            rest = [i for i in cl.ids if i != old]
            new = await cl.leader(rest, timeout=3.0)
            assert new != old
            assert await cl[rest[0]].propose("after", True)
            for i in rest:
                assert [cl[i].get(f"k{k}") for k in range(5)] == list(range(5))
            await cl.converged("after", True, rest)

    run(scenario())


def test_a_minority_cannot_commit_and_healing_converges() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(ids=[f"n{i}" for i in range(1, 6)], seed=14) as cl:
            old = await cl.leader()
            assert await cl[old].propose("before", 1)
            minority = {old, next(i for i in cl.ids if i != old)}
            majority = set(cl.ids) - minority
            watchers = {i: Recorder(cl[i], "partition:detected", "partition:healed")
                        for i in cl.ids}
            cl.net.partition(minority, majority)
            lost = await cl[old].propose_with_result("lost", 1, timeout=0.6)
            assert not lost.accepted and lost.error == "timeout"
            new = await cl.leader(majority, timeout=3.0)
            assert await cl[new].propose("during", 2)
            await wait_until(lambda: all(watchers[i].of("partition:detected") for i in minority),
                             3.0, "partition:detected on the minority")
            args, _ = watchers[old].of("partition:detected")[0]
            reachable, unreachable = args
            assert set(reachable) == minority and set(unreachable) == majority
            assert not any(watchers[i].of("partition:detected") for i in majority)
            cl.net.heal()
            await cl.converged("during", 2, timeout=3.0)
            assert all(c.get("lost") is None for c in cl.nodes.values())  # never committed
            await cl.leader(timeout=3.0)
            await wait_until(lambda: all(watchers[i].of("partition:healed") for i in minority),
                             3.0, "partition:healed on the minority")

    run(scenario())


def test_a_linearizable_read_on_a_follower_sees_every_earlier_write() -> None:
    """Thesis 6.4: ReadIndex through the leader, then wait until applied."""

    async def scenario() -> None:
        async with ConsensusCluster(seed=15) as cl:
            leader = await cl.leader()
            follower = next(i for i in cl.ids if i != leader)
            for v in range(20):
                assert await cl[leader].propose("x", v)
                assert await cl[follower].read("x") == v
            assert await cl[leader].read("x") == 19
            assert await cl[follower].read("absent", "default") == "default"

    run(scenario())


def test_a_read_without_a_reachable_leader_fails_clearly() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=16) as cl:
            leader = await cl.leader()
            loner = next(i for i in cl.ids if i != leader)
            cl.net.isolate(loner)
            with pytest.raises(ConsensusError, match="linearizable read failed"):
                await cl[loner].read("x", timeout=0.5)
            assert cl[loner].get("x", "local") == "local"  # a local read still answers

    run(scenario())


def test_votes_log_appends_and_acceptances_are_reported_as_events() -> None:
    async def scenario() -> None:
        cl = ConsensusCluster(seed=17)
        names = ("vote:requested", "vote:granted", "log:appended", "consensus:accepted",
                 "state:changed")
        recorders = {i: Recorder(cl[i], *names) for i in cl.ids}
        async with cl:
            leader = await cl.leader()
            assert await cl[leader].propose("k", "v")
            await wait_until(lambda: all(r.of("consensus:accepted") for r in recorders.values()))
            voters = [i for i in cl.ids if i != leader]
            # the leader asked for votes; those that granted one said so
            granted = [i for i in voters if any(a == (leader,)
                                                for a, _ in recorders[i].of("vote:granted"))]
            assert granted, "a leader needs at least one other vote among three"
            for i in granted:
                assert any(a == (leader,) for a, _ in recorders[i].of("vote:requested"))
            for r in recorders.values():
                assert r.of("log:appended")
                (key, value), details = r.of("consensus:accepted")[0]
                assert (key, value) == ("k", "v") and details["op"] == "put"
                assert details["index"] >= 2
                (k, new, old), d = r.of("state:changed")[0]
                assert (k, new, old) == ("k", "v", None) and d["optimistic"] is False
            index, term = recorders[leader].of("log:appended")[-1][0]
            assert index >= 2 and term >= 1

    run(scenario())


def test_a_silent_peer_is_reported_unreachable_then_reconnected() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=18, failure_timeout=0.3) as cl:
            await cl.leader()
            watcher = Recorder(cl["n1"], "node:unreachable", "node:reconnected")
            cl.net.isolate("n3")
            await wait_until(lambda: watcher.of("node:unreachable"), 3.0, "node:unreachable")
            assert watcher.of("node:unreachable")[0][0] == ("n3",)
            assert cl["n1"].get_node("n3").connected is False
            assert cl["n1"].get_node("n3").status == "unreachable"
            cl.net.heal()
            await wait_until(lambda: watcher.of("node:reconnected"), 3.0, "node:reconnected")
            assert watcher.of("node:reconnected")[0][0] == ("n3",)
            assert cl["n1"].get_node("n3").connected is True

    run(scenario())


def test_get_nodes_reports_each_member_with_role_and_connectivity() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=19) as cl:
            leader = await cl.leader()
            # roles of others come with their pings: wait for one round
            await wait_until(lambda: all(n.role for n in cl["n1"].get_nodes()))
            listed = cl["n1"].get_nodes()
            assert [n.id for n in listed] == sorted(cl.ids)
            assert all(n.status == "active" for n in listed)
            nodes = {n.id: n for n in listed}
            assert nodes[leader].role == "leader"
            assert all(n.voter and not n.learner and n.connected for n in nodes.values())
            assert nodes["n1"].is_self and nodes["n1"].as_dict()["id"] == "n1"
            assert {n.role for i, n in nodes.items() if i != leader} == {"follower"}

    run(scenario())


def test_a_single_node_needs_no_transport() -> None:
    async def scenario() -> None:
        c = Consensus("solo", seed=1)
        c.start()
        try:
            assert await c.wait_for_leader() == "solo"
            assert await c.propose("k", 1) and c.get("k") == 1
            assert await c.read("k") == 1
        finally:
            await c.stop()

    run(scenario())


def test_concurrent_proposals_share_persists_when_batching() -> None:
    """Group commit: proposals within batch_window share one Ready (one persist)."""

    async def scenario() -> None:
        async with ConsensusCluster(seed=20, batch_window=0.005) as cl:
            leader = await cl.leader()
            before = cl[leader].get_debug_state()["counters"]["persists"]
            values = await asyncio.gather(*(cl[leader].increment("n") for _ in range(100)))
            assert sorted(values) == list(range(1, 101))
            persists = cl[leader].get_debug_state()["counters"]["persists"] - before
            assert persists < 50, persists

    run(scenario())


def test_a_follower_far_behind_catches_up_from_a_snapshot() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=21, snapshot_interval=20) as cl:
            leader = await cl.leader()
            lagging = next(i for i in cl.ids if i != leader)
            cl.net.isolate(lagging)
            for k in range(60):
                assert await cl[leader].propose(f"k{k}", k)
            assert cl[leader].get_debug_state()["snapshot_index"] > 0
            changes = Recorder(cl[lagging], "state:changed")
            cl.net.heal()
            await cl.converged("k59", 59, [lagging], timeout=3.0)
            assert [cl[lagging].get(f"k{k}") for k in range(60)] == list(range(60))
            assert cl[lagging].get_debug_state()["snapshot_index"] > 0
            assert {a[0] for a, _ in changes.of("state:changed")} >= {"k0", "k59"}

    run(scenario())


def test_with_a_data_dir_a_restarted_node_keeps_what_was_accepted(tmp_path: Path) -> None:
    async def scenario() -> None:
        c = Consensus("durable", data_dir=tmp_path / "d", seed=2, snapshot_interval=10)
        c.start()
        await c.wait_for_leader()
        for k in range(25):
            assert await c.propose(f"k{k}", k)
        await c.stop()
        again = Consensus("durable", data_dir=tmp_path / "d", seed=3, snapshot_interval=10)
        again.start()
        try:
            await again.wait_for_leader()
            await wait_until(lambda: again.get("k24") == 24, 3.0, "the log replayed")
            assert [again.get(f"k{k}") for k in range(25)] == list(range(25))
            assert again.get_debug_state()["current_term"] >= 2
        finally:
            await again.stop()

    run(scenario())


def test_leadership_can_be_transferred_to_a_chosen_node() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=22) as cl:
            leader = await cl.leader()
            target = next(i for i in cl.ids if i != leader)
            result = await cl[leader].transfer_leadership(target)
            assert result.accepted, result
            assert await cl.leader(timeout=3.0) == target

    run(scenario())


def test_a_slow_network_that_loses_packets_still_commits() -> None:
    async def scenario() -> None:
        net = InProcessNetwork(drop_rate=0.1, latency=0.002, seed=5)
        async with ConsensusCluster(seed=23, net=net) as cl:
            await cl.leader(timeout=5.0)
            for k in range(5):
                assert await cl["n1"].propose(f"k{k}", k, timeout=5.0)
            assert await cl["n2"].increment("c") == 1
            assert net.counters["dropped_random"] > 0

    run(scenario(), deadline=30)
