"""Pipelined commands against real node processes (issue 10, item 5): a command that
fails on its way (answered ``not_leader`` by a follower, or lost with a paused node)
while the next one commits is still applied, exactly once, when it is retried.

Reference: thesis 6.3: the client sends the lowest seq it has no answer for
(``first_outstanding``), the cluster keeps the results from there on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq
from integration_helpers import leader_of, wait_for

from client.api import Client
from client.link import ClusterLink
from nodes import codec
from nodes.codec import Request, Response
from nodes.local import LocalCluster


class RawClient:
    """One DEALER per node, frames built by hand: the protocol as a foreign client sees it."""

    def __init__(self, lc: LocalCluster, client_id: str) -> None:
        self.cluster_id = lc.cluster.cluster_id
        self.client_id = client_id
        self.ctx = zmq.Context.instance()
        self.dealers: dict[str, zmq.Socket] = {}
        for node in lc.cluster.nodes:
            d = self.ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            d.connect(node.client)
            self.dealers[node.id] = d
        self.req_id = 0

    def submit(self, node: str, seq: int, cmd: dict, **extra: Any) -> Response:
        resp = self.try_submit(node, seq, cmd, 5.0, **extra)
        assert resp is not None, f"no answer from {node} to seq {seq}"
        return resp

    def try_submit(self, node: str, seq: int, cmd: dict, timeout_s: float,
                   **extra: Any) -> Response | None:
        """None when no answer comes in time (a node drops what a connection sends far
        over its rate limit, PROTOCOL.md section 11)."""
        self.req_id += 1
        body = {"machine": "kv", "seq": seq, "cmd": cmd, **extra}
        d = self.dealers[node]
        d.send(codec.encode_request(self.cluster_id,
                                    Request(self.req_id, self.client_id, "submit", body)))
        while True:
            if not d.poll(int(timeout_s * 1000)):
                return None
            resp = codec.decode_response(d.recv(), self.cluster_id)
            if resp.req_id == self.req_id:  # ignore late answers to earlier requests
                return resp

    def close(self) -> None:
        for d in self.dealers.values():
            d.close(0)


INCR = {"op": "incr", "key": "n"}


def test_a_seq_refused_by_a_follower_is_applied_after_the_next_seq_committed(
    cluster3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    c = client_for(cluster3)
    lead = wait_for(lambda: leader_of(c), 10, "a leader")
    follower = next(n for n in cluster3.cluster.ids() if n != lead)
    raw = RawClient(cluster3, "c-pipelined")
    try:
        assert raw.submit(lead, 1, INCR).result["value"] == 1
        refused = raw.submit(follower, 2, INCR, first_outstanding=2)
        assert not refused.ok and refused.error is not None
        assert refused.error.code == "not_leader" and refused.error.leader_id == lead
        three = raw.submit(lead, 3, INCR, first_outstanding=2)
        assert three.ok and three.result["value"] == 2
        two = raw.submit(lead, 2, INCR, first_outstanding=2)  # the retry, after 3 committed
        assert two.ok and two.result == {"ok": True, "value": 3, "version": 3}, two.result
        again = raw.submit(lead, 3, INCR, first_outstanding=2)
        assert again.result == three.result and again.index > three.index  # a new entry
        moved_on = raw.submit(lead, 4, INCR, first_outstanding=4)
        assert moved_on.result["value"] == 4
        stale = raw.submit(lead, 2, INCR, first_outstanding=2)
        assert stale.result["error"] == "stale_sequence"
        assert (stale.result["last_seq"], stale.result["first_outstanding"]) == (4, 4)
        bad = raw.submit(lead, 5, INCR, first_outstanding=6)
        assert bad.error is not None and bad.error.code == "bad_request"
        assert "first_outstanding" in bad.error.message
    finally:
        raw.close()
    assert c.get("n") == 4


def test_the_link_resends_a_command_lost_with_a_paused_node_after_the_next_one_committed(
    cluster3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    c = client_for(cluster3)
    lead = wait_for(lambda: leader_of(c), 10, "a leader")
    follower = next(n for n in cluster3.cluster.ids() if n != lead)
    link = ClusterLink(cluster3.cluster, prefer=lead, request_timeout=1.0)
    try:
        assert link.wait(link.submit("kv", INCR)).result["value"] == 1  # seq 1 opens
        cluster3.pause(follower)
        link.current = follower  # as if the link believed the follower led
        lost = link.submit("kv", INCR)  # seq 2, to the paused node: no answer
        link.current = lead
        later = link.submit("kv", INCR)  # waits for the next poll, then goes to the leader
        link.wait(later)
        assert later.ok and later.result == {"ok": True, "value": 2, "version": 2}
        assert not lost.done  # 2 is still unanswered: the floor the link sends is 2
        assert min(link.unanswered) == lost.body["seq"] == 2
        link.wait(lost)  # after request_timeout it is resent to the leader
        assert lost.ok and lost.result == {"ok": True, "value": 3, "version": 3}, lost.result
        assert link.unanswered == set()
    finally:
        cluster3.resume(follower)
        link.close()
    assert c.get("n") == 3


def test_a_seq_refused_as_rate_limited_is_applied_after_the_next_seq_committed(
    make_cluster: Callable[..., LocalCluster], client_for: Callable[..., Client]
) -> None:
    """The rate limit refuses seq 2 before it is proposed; seq 3, sent when a token
    is back, commits; seq 2 resent afterwards is applied (issue 10 item 5)."""
    lc = make_cluster(3, rate_limit=2.0, rate_burst=1)
    c = client_for(lc)
    lead = wait_for(lambda: leader_of(c), 10, "a leader")
    raw = RawClient(lc, "c-throttled")
    try:
        def until_admitted(seq: int) -> Response:
            answers: list[Response] = []

            def admitted() -> Response | None:
                resp = raw.try_submit(lead, seq, INCR, 0.5, first_outstanding=2)
                if resp is None:  # dropped unanswered: the connection is far over its limit
                    return None
                answers.append(resp)
                return None if resp.error is not None and resp.error.code == "rate_limited" \
                    else resp
            # resend as PROTOCOL.md advises: pause about 1 / rate_limit s between tries
            return wait_for(admitted, 10, f"seq {seq} admitted (answers: {answers[-1:]})",
                            every=0.5)

        assert raw.submit(lead, 1, INCR).result["value"] == 1  # the only token
        refused = raw.submit(lead, 2, INCR, first_outstanding=2)
        assert refused.error is not None and refused.error.code == "rate_limited"
        assert until_admitted(3).result["value"] == 2
        two = until_admitted(2)
        assert two.result == {"ok": True, "value": 3, "version": 3}, two.result
    finally:
        raw.close()
    assert c.get("n") == 3


def test_the_link_backs_off_and_resends_rate_limited_commands_each_applied_once(
    make_cluster: Callable[..., LocalCluster], client_for: Callable[..., Client]
) -> None:
    lc = make_cluster(3, rate_limit=2.0, rate_burst=1)
    c = client_for(lc)
    lead = wait_for(lambda: leader_of(c), 10, "a leader")
    link = ClusterLink(lc.cluster, prefer=lead)
    try:
        link.wait(link.submit("kv", INCR))
        calls = [link.submit("kv", {"op": "incr", "key": f"k{i}"}) for i in range(4)]
        wait_for(lambda: link.poll(10) or all(call.done for call in calls), 10,
                 "every throttled command answered")
    finally:
        link.close()
    assert [call.ok and call.result["ok"] for call in calls] == [True] * 4, \
        [(call.error, call.result) for call in calls]
    assert sum(call.throttled for call in calls) >= 1  # the limit bit: they backed off
    assert [c.get(f"k{i}") for i in range(4)] == [1, 1, 1, 1]
