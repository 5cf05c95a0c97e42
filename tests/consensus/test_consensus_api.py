"""The API's edges: lifecycle errors, argument checks, listener calling rules,
bad values, stopping with work in flight, and ``import nodes`` staying light."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from consensus_helpers import ConsensusCluster, run, wait_until

from nodes import Consensus, ConsensusError, InProcessNetwork, InvalidArgument, NotStarted

ROOT = Path(__file__).resolve().parents[2]


def test_start_outside_a_running_loop_says_what_to_do() -> None:
    c = Consensus("x")
    with pytest.raises(NotStarted, match="running asyncio loop"):
        c.start()


def test_calls_before_start_fail_clearly() -> None:
    async def scenario() -> None:
        c = Consensus("x")
        with pytest.raises(NotStarted, match="start"):
            await c.propose("k", 1)
        with pytest.raises(NotStarted, match="start"):
            c.remove_node("y")
        assert c.get("k") is None and c.get_leader() is None and c.get_leader_id() is None
        assert c.get_debug_state()["current_term"] == 0

    run(scenario())


def test_start_async_can_wait_for_a_leader() -> None:
    async def scenario() -> None:
        c = Consensus("solo")
        await c.start_async(wait_for_leader=True, timeout=3.0)
        try:
            assert c.is_leader() and c.get_leader_id() == "solo"
            assert c.get_leader().id == "solo" and str(c.get_leader()) == "solo"
            c.start()  # idempotent
        finally:
            await c.stop()
        assert not c.running

    run(scenario())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mechanism": "paxos"}, "mechanism"),
    ({"election_timeout": (0.3, 0.15)}, "election_timeout"),
    ({"heartbeat_interval": 0.2}, "election_timeout"),
    ({"quorum": 0}, "quorum"),
    ({"transport": "carrier-pigeon"}, "transport"),
    ({"timeout": 0}, "positive"),
])
def test_bad_arguments_are_refused_at_construction(kwargs: dict[str, Any], match: str) -> None:
    mechanism = kwargs.pop("mechanism", "raft")
    with pytest.raises(ValueError, match=match):
        Consensus("x", mechanism, **kwargs)
    with pytest.raises(ValueError, match="node_id"):
        Consensus("")


def test_peers_without_a_transport_are_refused_at_start() -> None:
    async def scenario() -> None:
        with pytest.raises(ConsensusError, match="no transport"):
            Consensus("x", peers=["y"]).start()

    run(scenario())


def test_listeners_get_what_they_declare_and_may_be_async_or_failing() -> None:
    async def scenario() -> None:
        got: dict[str, Any] = {}
        async_done = asyncio.Event()

        async def async_listener(leader_id: str) -> None:
            got["async"] = leader_id
            async_done.set()

        def failing(*args: Any) -> None:
            raise RuntimeError("listener bug")

        c = Consensus("solo")
        with pytest.raises(ValueError, match="unknown event"):
            c.on("leader:elekted", print)
        with pytest.raises(TypeError):
            c.on("leader:elected", "not callable")  # type: ignore[arg-type]
        c.on("leader:elected", failing)
        never = c.on("leader:elected", lambda leader_id: got.setdefault("unsubscribed", True))
        never()
        removed = lambda leader_id: got.setdefault("off", True)  # noqa: E731
        c.on("leader:elected", removed)
        c.off("leader:elected", removed)
        c.on("leader:elected", lambda: got.setdefault("no-args", True))
        c.on("leader:elected", lambda leader_id, *, term: got.setdefault("term", term))
        c.on("leader:elected", lambda *a, **kw: got.setdefault("all", (a, kw)))
        c.on("leader:elected", async_listener)
        off = c.on("state:changed", lambda key, new, old: got.setdefault("changes", []).append(new))
        c.start()
        try:
            await c.wait_for_leader()
            await asyncio.wait_for(async_done.wait(), 3.0)
            assert got["no-args"] is True and got["term"] >= 1
            assert got["all"] == (("solo",), {"term": got["term"]})
            assert got["async"] == "solo"
            assert "unsubscribed" not in got and "off" not in got
            assert await c.propose("k", 1)
            off()
            assert await c.propose("k", 2)
            assert got["changes"] == [1]
        finally:
            await c.stop()

    run(scenario())


def test_values_that_cannot_be_replicated_are_refused_up_front_as_increment_does() -> None:
    async def scenario() -> None:
        c = Consensus("solo")
        c.start()
        try:
            await c.wait_for_leader()
            with pytest.raises(InvalidArgument, match="'k' cannot be replicated"):
                await c.propose_with_result("k", object())
            with pytest.raises(InvalidArgument, match="'k' cannot be replicated"):
                await c.propose("k", object())
            with pytest.raises(InvalidArgument, match="by must be an int"):
                await c.increment("k", "one")  # type: ignore[arg-type]
            assert c.get_debug_state()["log_length"] == 1  # only the leader's no-op
            assert await c.propose("k", {"nested": [1, 2]})
            assert c.get("k") == {"nested": [1, 2]} and c.keys() == ["k"]
            assert await c.propose("k", None)  # None deletes
            assert c.get("k", "gone") == "gone"
            with pytest.raises(ValueError, match="key"):
                await c.propose("", 1)
        finally:
            await c.stop()

    run(scenario())


def test_stopping_a_node_fails_its_proposals_in_flight() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=71) as cl:
            leader = await cl.leader()
            cl.net.isolate(leader)
            pending = asyncio.ensure_future(cl[leader].propose_with_result("k", 1, timeout=5))
            await wait_until(lambda: cl[leader].get_debug_state()["pending_proposals"] == 1)
            await cl[leader].stop()
            result = await asyncio.wait_for(pending, 1.0)
            assert not result.accepted and result.error == "stopped"

    run(scenario())


def test_a_node_stopped_on_the_hub_is_gone_for_the_others() -> None:
    async def scenario() -> None:
        net = InProcessNetwork()
        async with ConsensusCluster(seed=72, net=net) as cl:
            await cl.leader()
            await cl["n3"].stop()
            assert net.nodes == ["n1", "n2"]

    run(scenario())


def test_import_nodes_does_not_load_the_consensus_layer() -> None:
    code = ("import sys, nodes; assert 'nodes.consensus' not in sys.modules; "
            "assert 'zmq' not in sys.modules; from nodes import Consensus; "
            "assert Consensus.__module__ == 'nodes.consensus.api'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)
