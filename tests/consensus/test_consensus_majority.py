"""mechanism="simple_majority" through the ``Consensus`` API: accept with quorum,
reject without, time out cleanly, and the vote policy hook decides."""

from __future__ import annotations

import asyncio

from consensus_helpers import ConsensusCluster, Recorder, run, wait_until

from nodes import Consensus, InProcessNetwork, Proposal


def test_a_proposal_with_a_quorum_is_accepted_and_applied_on_every_node() -> None:
    async def scenario() -> None:
        cl = ConsensusCluster(mechanism="simple_majority", seed=51)
        names = ("vote:requested", "vote:granted", "consensus:accepted", "state:changed",
                 "log:appended")
        recorders = {i: Recorder(cl[i], *names) for i in cl.ids}
        async with cl:
            result = await cl["n2"].propose_with_result("plan", "attack")
            assert result.accepted and result.error is None
            assert result.votes.total == 3 and result.quorum_required == 2
            assert result.votes.for_ >= 2 and result.index == 1
            await cl.converged("plan", "attack")
            await wait_until(lambda: all(r.of("consensus:accepted") for r in recorders.values()))
            for r in recorders.values():
                (key, value), details = r.of("consensus:accepted")[0]
                assert (key, value) == ("plan", "attack")
                assert details["proposal_id"] == result.proposal_id
                assert r.of("state:changed")[0][0] == ("plan", "attack", None)
                assert r.of("vote:requested")[0][0] == ("n2",)
                assert r.of("vote:granted")[0][0] == ("n2",)
                assert r.of("log:appended")[0][0] == (1, 0)
            assert cl["n1"].get_leader() is None and not cl["n1"].is_leader()
            state = cl["n1"].get_debug_state()
            assert state["commit_index"] == 1 and state["role"] == "peer"
            assert {n.id for n in cl["n3"].get_nodes()} == set(cl.ids)

    run(scenario())


def test_the_vote_policy_can_reject_a_proposal() -> None:
    async def scenario() -> None:
        def no_spending(p: Proposal) -> bool:
            return p.key != "treasury"

        async with ConsensusCluster(
            mechanism="simple_majority", seed=52, vote_policy=no_spending
        ) as cl:
            result = await cl["n1"].propose_with_result("treasury", 0)
            assert not result.accepted and result.error == "rejected"
            # decided as soon as the quorum is out of reach: two "no" of three
            assert result.votes.for_ == 0 and result.votes.against >= 2
            assert all(c.get("treasury") is None for c in cl.nodes.values())
            assert await cl["n1"].propose("harmless", 1)

    run(scenario())


def test_without_a_quorum_a_proposal_times_out_cleanly() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(mechanism="simple_majority", seed=53, timeout=0.3) as cl:
            cl.net.isolate("n1")
            result = await cl["n1"].propose_with_result("k", 1)
            assert not result.accepted and result.error == "timeout"
            assert (result.votes.for_, result.votes.total) == (1, 3)
            state = cl["n1"].get_debug_state()
            assert state["pending_own"] == 0 and state["commit_index"] == 0
            assert all(c.get("k") is None for c in cl.nodes.values())
            cl.net.heal()
            assert await cl["n1"].propose("k", 2)  # nothing left over blocks the key
            await cl.converged("k", 2)

    run(scenario())


def test_unanimity_fails_on_one_dissenting_vote() -> None:
    async def scenario() -> None:
        net = InProcessNetwork()
        ids = ["a", "b", "c"]

        def policy_of(i: str):  # noqa: ANN202 - a policy factory
            return (lambda p: False) if i == "c" else None

        nodes = {i: Consensus(i, "simple_majority", transport=net, quorum=1.0,
                              peers=[p for p in ids if p != i], vote_policy=policy_of(i))
                 for i in ids}
        for c in nodes.values():
            c.start()
        try:
            result = await nodes["a"].propose_with_result("k", 1)
            assert not result.accepted and result.quorum_required == 3
            assert result.votes.against == 1
        finally:
            for c in nodes.values():
                await c.stop()

    run(scenario())


def test_an_async_vote_policy_is_awaited_and_a_failing_one_votes_no() -> None:
    async def scenario() -> None:
        asked: list[str] = []

        async def slow_yes(p: Proposal) -> bool:
            asked.append(p.proposal_id)
            await asyncio.sleep(0.01)
            return True

        def broken(p: Proposal) -> bool:
            raise RuntimeError("policy bug")

        net = InProcessNetwork()
        ids = ["a", "b", "c"]
        policies = {"a": slow_yes, "b": slow_yes, "c": broken}
        nodes = {i: Consensus(i, "simple_majority", transport=net, vote_policy=policies[i],
                              peers=[p for p in ids if p != i]) for i in ids}
        for c in nodes.values():
            c.start()
        try:
            result = await nodes["c"].propose_with_result("k", 1)
            assert result.accepted and (result.votes.for_, result.votes.against) == (2, 1)
            assert len(asked) == 2
        finally:
            for c in nodes.values():
                await c.stop()

    run(scenario())


def test_the_patterns_work_under_simple_majority_too() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(mechanism="simple_majority", seed=54) as cl:
            assert await cl["n1"].increment("votes") == 1
            assert await cl["n2"].increment("votes") == 2
            assert await cl["n3"].compare_and_swap("votes", 2, 10)
            assert not await cl["n1"].compare_and_swap("votes", 2, 11)
            await cl.converged("votes", 10)
            assert await cl["n2"].batch([("put", "x", 1), ("put", "y", 2)])
            await cl.converged("y", 2)
            assert await cl["n1"].read("y") == 2  # a local read under simple_majority
            assert await cl["n1"].acquire_lock("l", ttl=5)
            assert not await cl["n2"].acquire_lock("l", ttl=5)

    run(scenario())


def test_members_can_be_added_and_removed_locally() -> None:
    async def scenario() -> None:
        net = InProcessNetwork()
        a = Consensus("a", "simple_majority", transport=net)
        b = Consensus("b", "simple_majority", transport=net)
        a.start()
        b.start()
        try:
            assert await a.add_node("b") and await b.add_node("a")
            result = await a.propose_with_result("k", 1)
            assert result.accepted and result.votes.total == 2 and result.quorum_required == 2
            assert (await a.remove_node("b")).accepted
            assert [n.id for n in a.get_nodes()] == ["a"]
            result = await a.propose_with_result("k", 2)
            assert result.accepted and result.votes.total == 1
        finally:
            await a.stop()
            await b.stop()

    run(scenario())
