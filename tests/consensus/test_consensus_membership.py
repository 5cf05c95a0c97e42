"""Cluster management through the API: bootstrap, add (learner, then voter),
remove (a follower, the leader). Thesis 4.1: one server at a time; 4.2.1: new
servers catch up as non-voting members; 4.2.2: removing the leader."""

from __future__ import annotations

from consensus_helpers import ConsensusCluster, run, wait_until

from nodes import Consensus, InProcessNetwork


def test_nodes_added_right_after_start_are_founding_members() -> None:
    """The seed's style: ``c.start(); c.add_node(...)`` in one synchronous block."""

    async def scenario() -> None:
        net = InProcessNetwork()
        ids = ["a", "b", "c"]
        nodes = [Consensus(i, transport=net, seed=3) for i in ids]
        for c in nodes:
            c.start()
            for other in ids:
                if other != c.node_id:
                    assert (await c.add_node(other)).accepted
        try:
            await wait_until(lambda: all(c.get_leader_id() for c in nodes), 3.0, "a leader")
            assert all(c.get_debug_state()["voters"] == ids for c in nodes)
            assert await nodes[0].propose("k", 1)
        finally:
            for c in nodes:
                await c.stop()

    run(scenario())


def test_an_added_node_joins_as_a_learner_catches_up_and_becomes_a_voter() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=31) as cl:
            leader = await cl.leader()
            for k in range(10):
                assert await cl[leader].propose(f"k{k}", k)
            newcomer = Consensus("n4", transport=cl.net, join=True, seed=31)
            cl.extra.append(newcomer)
            newcomer.start()
            assert newcomer.get_debug_state()["role"] == "joining"
            follower = next(i for i in cl.ids if i != leader)
            result = await cl[follower].add_node("n4")  # asked on a follower: forwarded
            assert result.accepted, result
            await wait_until(lambda: "n4" in cl[leader].get_debug_state()["voters"], 3.0,
                             "n4 promoted to voter")
            await wait_until(lambda: newcomer.get("k9") == 9, 3.0, "n4 caught up")
            # it knows the whole configuration, not just itself (see the cfg handshake)
            await wait_until(lambda: newcomer.get_debug_state()["voters"] == cl.ids + ["n4"],
                             3.0, "n4 sees four voters")
            assert {n.id for n in cl[follower].get_nodes()} == {"n1", "n2", "n3", "n4"}
            assert await newcomer.propose("from-n4", True)
            await cl.converged("from-n4", True)

    run(scenario())


def test_a_removed_follower_leaves_the_configuration() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=32) as cl:
            leader = await cl.leader()
            gone = next(i for i in cl.ids if i != leader)
            assert (await cl[leader].remove_node(gone)).accepted
            rest = [i for i in cl.ids if i != gone]
            await wait_until(lambda: all(cl[i].get_node(gone) is None for i in rest), 3.0)
            await wait_until(lambda: cl[gone].get_debug_state()["role"] == "removed", 3.0)
            result = await cl[leader].propose_with_result("k", 1)
            assert result.accepted and result.votes.total == 2 and result.quorum_required == 2

    run(scenario())


def test_the_leader_can_be_removed_and_the_others_carry_on() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=33) as cl:
            old = await cl.leader()
            assert await cl[old].propose("before", 1)
            follower = next(i for i in cl.ids if i != old)
            assert (await cl[follower].remove_node(old)).accepted
            rest = [i for i in cl.ids if i != old]
            new = await cl.leader(rest, timeout=3.0)
            assert new != old
            assert cl[new].get_debug_state()["voters"] == sorted(rest)
            assert await cl[follower].propose("after", 2)
            await cl.converged("after", 2, rest)
            assert cl[old].is_leader() is False

    run(scenario())


def test_an_address_given_to_add_node_is_replicated_to_every_member() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=34) as cl:
            leader = await cl.leader()
            newcomer = Consensus("n4", transport=cl.net, join=True, seed=34)
            cl.extra.append(newcomer)
            newcomer.start()
            assert (await cl[leader].add_node("n4", "tcp://10.0.0.4:7000")).accepted
            await wait_until(
                lambda: all(cl[i].get_node("n4") is not None
                            and cl[i].get_node("n4").address == "tcp://10.0.0.4:7000"
                            for i in cl.ids), 3.0, "n4's address everywhere")

    run(scenario())
