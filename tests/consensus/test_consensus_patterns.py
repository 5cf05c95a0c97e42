"""The patterns, each done atomically inside the replicated state machine:
compare-and-swap, counters, atomic batches, distributed locks, optimistic updates
(with rollback), and key subscriptions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from consensus_helpers import ConsensusCluster, Recorder, run, wait_until

from nodes import ConsensusError


def test_compare_and_swap_succeeds_only_on_the_expected_value() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=41) as cl:
            await cl.leader()
            assert await cl["n1"].compare_and_swap("k", None, "a")  # None: absent
            assert not await cl["n2"].compare_and_swap("k", None, "b")
            assert not await cl["n3"].compare_and_swap("k", "zzz", "b")
            assert await cl["n3"].compare_and_swap("k", "a", "b")
            await cl.converged("k", "b")
            # racing swaps from every node: exactly one wins
            wins = await asyncio.gather(*(cl[i].compare_and_swap("k", "b", i) for i in cl.ids))
            assert wins.count(True) == 1
            await cl.converged("k", cl.ids[wins.index(True)])

    run(scenario())


def test_counters_from_every_node_add_up_the_same_everywhere() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=42) as cl:
            await cl.leader()
            ups = [cl[i].increment("score", 2) for i in cl.ids for _ in range(10)]
            downs = [cl[i].decrement("score") for i in cl.ids for _ in range(5)]
            await asyncio.gather(*ups, *downs)
            await cl.converged("score", 3 * 10 * 2 - 3 * 5)
            assert await cl["n2"].increment("score", 0) == 45
            assert await cl["n1"].propose("name", "text")
            with pytest.raises(ConsensusError, match="not_integer"):
                await cl["n1"].increment("name")

    run(scenario())


def test_a_batch_applies_all_of_its_operations_or_none() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=43) as cl:
            await cl.leader()
            ok = await cl["n1"].batch([("put", "a", 1), ("incr", "n", 5), ("put", "b", "x")])
            assert ok.accepted and len(ok.result["results"]) == 3
            await cl.converged("n", 5)
            # the third op fails (b is not an integer): nothing of the batch applies
            bad = await cl["n2"].batch([("put", "a", 2), ("incr", "n"), ("incr", "b")])
            assert not bad and bad.error == "not_integer"
            # a condition that does not hold: nothing applies either
            cond = await cl["n3"].batch([("put", "a", 3)], conditions=[("a", 999)])
            assert not cond and cond.error == "condition_failed"
            held = await cl["n3"].batch([{"op": "delete", "key": "b"}, ("decr", "n", 2)],
                                        conditions=[{"key": "a", "equals": 1}])
            assert held.accepted
            for c in cl.nodes.values():
                await wait_until(lambda c=c: (c.get("a"), c.get("n"), c.get("b")) == (1, 3, None))

    run(scenario())


def test_a_lock_has_one_holder_until_released_or_expired() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=44) as cl:
            await cl.leader()
            changes = Recorder(cl["n3"], "lock:changed")
            first = await cl["n1"].acquire_lock("door", ttl=0.3)
            assert first and first.holder == "n1" and first.token == 1
            refused = await cl["n2"].acquire_lock("door", ttl=5)
            assert not refused and refused.error == "lock_held" and refused.holder == "n1"
            assert not await cl["n2"].release_lock("door")  # not the holder
            # n2 waits: the lock expires on the leader's clock, then it is n2's
            second = await cl["n2"].acquire_lock("door", ttl=5, wait=2.0)
            assert second and second.holder == "n2" and second.token == 2
            assert not await cl["n1"].release_lock("door")  # its hold expired
            assert await cl["n2"].release_lock("door")
            third = await cl["n1"].acquire_lock("door", ttl=5)
            assert third and third.token == 3
            info = cl["n1"].lock_info("door")
            assert info["held"] and info["holder"] == "n1"
            await wait_until(lambda: len(changes.of("lock:changed")) >= 4)
            actions = [d["action"] for _, d in changes.of("lock:changed")]
            assert actions[:4] == ["acquired", "acquired", "released", "acquired"]

    run(scenario())


def test_an_optimistic_update_shows_at_once_and_is_confirmed() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=45) as cl:
            leader = await cl.leader()
            assert await cl[leader].propose("hp", 10)
            node = cl[leader]
            seen = Recorder(node, "state:changed")
            task = node.optimistic_update("hp", lambda hp: hp - 3)
            info = node.get_info("hp")
            assert node.get("hp") == 7 and info.optimistic  # before any round trip
            (args, details), = seen.of("state:changed")
            assert args == ("hp", 7, 10) and details["optimistic"] is True
            result = await task
            assert result.accepted
            assert node.get("hp") == 7 and not node.get_info("hp").optimistic
            assert not any(d.get("rolled_back") for _, d in seen.of("state:changed"))
            await cl.converged("hp", 7)

    run(scenario())


def test_an_optimistic_update_that_loses_its_race_is_rolled_back() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=46) as cl:
            leader = await cl.leader()
            follower = next(i for i in cl.ids if i != leader)
            assert await cl[leader].propose("hp", 10)
            await cl.converged("hp", 10)
            node = cl[follower]
            seen = Recorder(node, "state:changed")
            # another write is already on its way when the optimistic one reads version v
            rival = asyncio.ensure_future(cl[follower].propose("hp", 50))
            task = node.optimistic_update("hp", lambda hp: hp - 3)
            assert node.get("hp") == 7
            result = await task
            assert await rival
            assert not result.accepted and result.error == "cas_failed"
            assert node.get("hp") == 50 and not node.get_info("hp").optimistic
            rolled = [(a, d) for a, d in seen.of("state:changed") if d.get("rolled_back")]
            assert rolled and rolled[0][0] == ("hp", 50, 7)

    run(scenario())


def test_an_optimistic_update_without_quorum_rolls_back_after_the_timeout() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=47) as cl:
            leader = await cl.leader()
            assert await cl[leader].propose("gold", 5)
            await cl.converged("gold", 5)
            cl.net.isolate(leader)
            task = cl[leader].optimistic_update("gold", lambda g: g + 1, timeout=0.4)
            assert cl[leader].get("gold") == 6
            result = await task
            assert not result.accepted and result.error == "timeout"
            assert cl[leader].get("gold") == 5

    run(scenario())


def test_subscribe_follows_one_key_until_unsubscribed() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=48) as cl:
            await cl.leader()
            got: list[tuple[Any, ...]] = []
            stop = cl["n2"].subscribe("watched", lambda key, new, old: got.append((key, new, old)))
            everything: list[str] = []
            cl["n2"].subscribe("*", lambda key, new, old: everything.append(key))
            assert await cl["n1"].propose("watched", 1)
            assert await cl["n1"].propose("other", 1)
            assert await cl["n1"].propose("watched", 2)
            await wait_until(lambda: len(got) == 2 and len(everything) == 3)
            assert got == [("watched", 1, None), ("watched", 2, 1)]
            stop()
            assert await cl["n1"].delete("watched")
            await wait_until(lambda: len(everything) == 4)
            assert len(got) == 2

    run(scenario())
