"""Per-client rate limits (issue "Proof", item 4: security): a token bucket per client
id, set by ``arena node --rate-limit`` or the cluster file's ``[options] rate_limit``.
One flooding client is answered ``rate_limited`` while another keeps its latency."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from security_helpers import leader_of, wait_for

from client.api import Client
from client.link import Call, ClusterLink
from nodes.local import LocalCluster

RATE = 50.0  # requests/s per client
FLOOD_ROUNDS = 12
FLOOD_PER_ROUND = 250


@pytest.mark.parametrize("configured_by", ["cluster file", "command line"])
def test_a_flooding_client_is_rate_limited_while_another_keeps_its_latency(
    make_cluster: Callable[..., LocalCluster], client_for: Callable[..., Client],
    configured_by: str,
) -> None:
    if configured_by == "cluster file":
        lc = make_cluster(3, rate_limit=RATE, rate_burst=40)
        burst = 40
    else:
        lc = make_cluster(3, extra_args=["--rate-limit", f"{RATE:g}"])
        burst = 200  # the node's default bucket size
    good = client_for(lc)
    lead = wait_for(lambda: leader_of(good), 10, "a leader")
    flood = ClusterLink(lc.cluster, prefer=lead)
    try:
        calls: list[Call] = []
        latencies: list[float] = []
        started = time.monotonic()
        for i in range(FLOOD_ROUNDS):
            for _ in range(FLOOD_PER_ROUND):
                calls.append(flood.call("read", {"machine": "kv", "query": {
                    "op": "get", "key": "x"}, "linearizable": False}, node=lead))
            flood.poll(0)
            t = time.monotonic()
            assert good.put(f"good{i}", i)["ok"]  # to the same leader, from another client id
            latencies.append(time.monotonic() - t)
        # a connection far over its limit is not answered at all (issue 11: refusing
        # must stay cheap): the node counts what it dropped unread
        refused = lambda: _refused(good.status(lead))  # noqa: E731
        wait_for(lambda: flood.poll(10) or refused() + sum(c.ok for c in calls) >= len(calls),
                 10, "every flood request admitted, refused or dropped")
        elapsed = time.monotonic() - started  # the link retries the dropped ones meanwhile
    finally:
        flood.close()
    admitted = [c for c in calls if c.ok]
    limited = [c for c in calls if c.done and not c.ok]
    assert all(c.error and c.error.code in ("rate_limited", "timeout") for c in limited)
    assert len(admitted) <= burst + RATE * elapsed + 5, (len(admitted), elapsed)
    assert refused() >= len(calls) - burst - RATE * elapsed - 5
    # the other client: every write succeeded (above), none waited behind the flood
    assert max(latencies) < 0.3, latencies
    assert good.get(f"good{FLOOD_ROUNDS - 1}") == FLOOD_ROUNDS - 1


def _refused(status: dict | None) -> int:
    counters = (status or {}).get("counters", {})
    return (counters.get("client_errors", {}).get("rate_limited", 0)
            + counters.get("client_dropped", {}).get("rate_limited_connection", 0))
