"""Integration tests with real node processes over loopback (issue: the node process)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from integration_helpers import leader_of, wait_for

from client.api import Client
from nodes.local import LocalCluster


@pytest.mark.parametrize("size", [3, 5])
def test_a_cluster_of_n_processes_elects_one_leader(
    make_cluster: Callable[..., LocalCluster], client_for: Callable[..., Client], size: int
) -> None:
    lc = make_cluster(size)
    c = client_for(lc)
    lead = wait_for(lambda: leader_of(c), 10, "a leader")
    terms = {nid: c.status(nid)["term"] for nid in lc.cluster.ids()}
    assert len({t for t in terms.values()}) == 1 or max(terms.values()) == c.status(lead)["term"]
    leaders = [n for n in lc.cluster.ids() if (c.status(n) or {}).get("role") == "leader"]
    assert leaders == [lead]


def test_killing_the_leader_elects_another_and_keeps_every_acknowledged_write(
    cluster3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    c = client_for(cluster3)
    wait_for(lambda: leader_of(c), 10, "a leader")
    for i in range(20):
        c.put(f"k{i}", i)
    old = leader_of(c)
    assert old is not None
    cluster3.kill(old)
    # the client fails over by itself: the next write just works
    c.put("after", "kill")
    new = wait_for(lambda: leader_of(c, [n for n in cluster3.cluster.ids() if n != old]), 5,
                   "a new leader")
    assert new != old
    assert [c.get(f"k{i}") for i in range(20)] == list(range(20))
    assert c.get("after") == "kill"


def test_a_paused_leader_is_replaced_and_steps_down_on_resume_without_stale_commits(
    cluster3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    c = client_for(cluster3)
    old = wait_for(lambda: leader_of(c), 10, "a leader")
    c.put("x", 1)
    cluster3.pause(old)
    others = [n for n in cluster3.cluster.ids() if n != old]
    new = wait_for(lambda: leader_of(c, others), 5, "a leader among the others")
    c.put("x", 2)
    cluster3.resume(old)
    wait_for(lambda: (c.status(old) or {}).get("role") == "follower", 5,
             f"{old} stepping down after resume")
    wait_for(lambda: (c.get("x", stale=True) == 2 and c.status(old)["applied"]
                      >= c.status(new)["commit"]), 5, "the resumed node catching up")
    assert c.get("x") == 2


def test_a_partitioned_minority_cannot_commit_and_healing_converges(
    make_cluster: Callable[..., LocalCluster], client_for: Callable[..., Client]
) -> None:
    lc = make_cluster(5)
    c = client_for(lc)
    lead = wait_for(lambda: leader_of(c), 10, "a leader")
    minority = [lead, next(n for n in lc.cluster.ids() if n != lead)]
    for nid in lc.cluster.ids():
        c.admin("partition", {"nodes": minority}, node=nid)
    majority = [n for n in lc.cluster.ids() if n not in minority]
    wait_for(lambda: leader_of(c, majority), 5, "a leader in the majority")
    # the old leader cannot commit: a write sent straight to it never succeeds
    before = c.status(lead)["commit"]
    c.put("during", "partition")
    wait_for(lambda: (c.status(lead) or {}).get("role") != "leader", 3, "old leader stepping down")
    assert c.status(lead)["commit"] == before
    for nid in lc.cluster.ids():
        c.admin("heal", {}, node=nid)
    target = max(c.status(n)["commit"] for n in majority)
    wait_for(lambda: all((c.status(n) or {}).get("applied", 0) >= target for n in lc.cluster.ids()),
             5, "every node applying the majority's log after healing")
    assert c.get("during") == "partition"


def test_restarting_every_node_brings_back_all_acknowledged_data(
    cluster3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    c = client_for(cluster3)
    wait_for(lambda: leader_of(c), 10, "a leader")
    for i in range(50):
        c.put(f"key{i}", {"n": i})
    assert c.incr("counter", 7) == 7
    for nid in cluster3.cluster.ids():
        cluster3.kill(nid)
    for nid in cluster3.cluster.ids():
        cluster3.start(nid)
    wait_for(lambda: leader_of(c), 10, "a leader after the full restart")
    assert [c.get(f"key{i}") for i in range(50)] == [{"n": i} for i in range(50)]
    assert c.get("counter") == 7


def test_updates_are_encoded_only_while_someone_subscribes_and_then_arrive_in_order(
    cluster3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    """The PUB side is an XPUB: with no subscriber an applied command is not even
    encoded (``updates_unwatched``); once a SUB follows the stream every update is
    published, in index order; after it leaves the node stops again."""
    import zmq

    from nodes import codec

    c = client_for(cluster3)
    lead = c.wait_for_leader(10)
    c.put("quiet", 1)
    stats = wait_for(lambda: (c.status(lead) or {}).get("counters"), 5, "status")
    assert stats["updates_published"] == 0 and stats["updates_unwatched"] >= 1, stats

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, codec.UPDATE_TOPIC)
        sub.connect(cluster3.cluster.node(lead).pub)
        # the subscription reaches the node asynchronously: write until one arrives
        first = wait_for(lambda: c.put("probe", 1) and sub.poll(50) and sub.recv_multipart(),
                         10, "a first update on the subscribed stream")
        start = codec.decode_update(first[1], cluster3.cluster.cluster_id).index
        for i in range(20):
            c.put("watched", i)
        seen = []
        while len(seen) < 20 and sub.poll(5000):
            upd = codec.decode_update(sub.recv_multipart()[1], cluster3.cluster.cluster_id)
            if upd.machine == "kv" and upd.command and upd.command.get("key") == "watched":
                seen.append((upd.index, upd.command["value"]))
        assert [v for _, v in seen] == list(range(20)), seen
        assert [i for i, _ in seen] == sorted(i for i, _ in seen) and seen[0][0] > start
        published = c.status(lead)["counters"]["updates_published"]  # type: ignore[index]
        assert published >= 21
    finally:
        sub.close(0)
        ctx.term()
    # the unsubscription (the SUB's disconnect) reaches the node asynchronously too
    def stopped() -> bool:
        before = c.status(lead)["counters"]  # type: ignore[index]
        c.put("after", 1)
        after = c.status(lead)["counters"]  # type: ignore[index]
        return after["updates_unwatched"] > before["updates_unwatched"] and (
            after["updates_published"] == before["updates_published"])
    wait_for(stopped, 10, "the node to stop publishing once nobody subscribes")
