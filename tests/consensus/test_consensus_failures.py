"""How the library fails: a value it cannot encode is refused before anything is
stored (simple_majority included), and a node whose tick task dies says so
instead of looking alive (issue 10, item 7)."""

from __future__ import annotations

import logging

import pytest
from consensus_helpers import ConsensusCluster, Recorder, run, wait_until

from nodes import InvalidArgument


def test_simple_majority_refuses_an_unencodable_value_up_front_and_keeps_ticking() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(
            mechanism="simple_majority", seed=81, failure_timeout=0.3
        ) as cl:
            watcher = Recorder(cl["n2"], "node:unreachable")
            with pytest.raises(InvalidArgument, match="'k' cannot be replicated"):
                await cl["n1"].propose("k", object())
            assert cl["n1"].get_debug_state()["pending_own"] == 0  # nothing stored
            # the resend interval and the failure timeout pass: n1 still ticks and pings
            rounds = cl["n1"].get_debug_state()["tick_rounds"]
            await wait_until(lambda: cl["n1"].get_debug_state()["tick_rounds"] > rounds + 40,
                             3.0, "40 more tick rounds on n1")
            assert cl["n1"].running and cl["n1"].failure is None
            assert not watcher.of("node:unreachable")
            assert await cl["n1"].propose("k", 1)
            await cl.converged("k", 1)

    run(scenario())


@pytest.mark.parametrize("mechanism", ["raft", "simple_majority"])
def test_a_failing_tick_task_stops_the_node_visibly(mechanism: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with ConsensusCluster(mechanism=mechanism, seed=82) as cl:
            node = cl["n1"]
            failed = Recorder(node, "node:failed")
            boom = RuntimeError("boom in a tick")

            def broken(ticks: int, now: float) -> None:
                raise boom

            node._driver._on_ticks = broken  # type: ignore[method-assign]
            await wait_until(lambda: not node.running, 3.0, "n1 to report it is not running")
            assert node.failure is boom
            assert failed.of("node:failed") == [(("n1",), {"error": boom})]
            assert node.get_debug_state()["failure"] == repr(boom)
            with pytest.raises(Exception, match="failed .*boom in a tick"):
                await node.propose("k", 1)

    with caplog.at_level(logging.ERROR, logger="arena.consensus"):
        run(scenario())
    assert any("tick task failed" in r.getMessage() and r.exc_info for r in caplog.records)
