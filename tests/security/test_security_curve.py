"""CURVE and ZAP on real node processes: only listed keys get in (issue "Proof",
item 4: security). Each refusal is proved against a node that, with the right
keys, answers, commits and fails over as usual."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import zmq
from security_helpers import Intruder, leader_of, wait_for

from client.api import Client
from client.link import ClusterLink
from nodes import codec
from nodes.codec import Request
from nodes.local import LocalCluster
from nodes.raft.messages import AppendEntries, Entry, RequestVote
from nodes.security import client_keys, new_keypair, node_keys
from nodes.statemachine import encode_command

FAILED_AUTH = zmq.EVENT_HANDSHAKE_FAILED_AUTH  # the node's ZAP handler said no


def refused(verdict: int, keys: object) -> bool:
    """A plaintext socket fails the CURVE handshake (the detail varies); a key pair is
    refused by the ZAP handler."""
    if keys is None:
        return verdict != zmq.EVENT_HANDSHAKE_SUCCEEDED
    return verdict == FAILED_AUTH


def _intruders(lc: LocalCluster, nid: str) -> dict[str, tuple]:
    """name -> (keys, server key) of every kind of outsider a node must refuse."""
    server_key = lc.cluster.security.server_public_keys[nid]
    return {
        "no keys (plaintext)": (None, None),
        "an unknown key pair": (new_keypair(), server_key),
    }


def test_with_keys_the_cluster_elects_commits_and_fails_over(
    make_cluster: Callable[..., LocalCluster], client_for: Callable[..., Client]
) -> None:
    lc = make_cluster(3, secure=True)
    c = client_for(lc)
    old = wait_for(lambda: leader_of(c), 10, "a leader")
    for i in range(10):
        c.put(f"k{i}", i)
    assert all((c.status(n) or {}).get("curve") for n in lc.cluster.ids())
    lc.kill(old)
    c.put("after", "kill")  # the client fails over by itself, over CURVE
    new = wait_for(lambda: leader_of(c, [n for n in lc.cluster.ids() if n != old]), 5,
                   "a new leader")
    assert new != old
    assert [c.get(f"k{i}") for i in range(10)] == list(range(10))
    assert c.get("after") == "kill"
    # the killed node comes back over CURVE and catches up
    lc.start(old)
    commit = c.status(new)["commit"]
    wait_for(lambda: ((c.status(old) or {}).get("applied") or 0) >= commit, 5,
             f"{old} catching up after its restart")
    # the published updates reach a subscriber holding the client key
    link = ClusterLink(lc.cluster)
    try:
        seen: list[int] = []
        link.on_update = lambda _nid, upd: seen.append(upd.index)
        link.follow_updates(new)

        def published() -> list[int]:
            c.put("published", len(seen))  # again until the subscription has joined
            link.poll(50)
            return seen

        wait_for(published, 5, "an update published over CURVE")
    finally:
        link.close()


@pytest.mark.parametrize("who", ["no keys (plaintext)", "an unknown key pair"])
def test_an_outsider_gets_no_reply_and_commits_nothing(
    secure3: LocalCluster, client_for: Callable[..., Client], ctx: zmq.Context, who: str
) -> None:
    c = client_for(secure3)
    lead = wait_for(lambda: leader_of(c), 5, "a leader")
    keys, server_key = _intruders(secure3, lead)[who]
    denied_before = c.status(lead)["counters"]["auth_denied"].get("arena-client", 0)
    cid = secure3.cluster.cluster_id
    key = f"pwned-{who.split()[0]}"
    intruder = Intruder(ctx, zmq.DEALER, secure3.cluster.node(lead).client, keys, server_key)
    try:
        intruder.sock.send(codec.encode_request(cid, Request(1, "intruder", "status", {})))
        intruder.sock.send(codec.encode_request(cid, Request(2, "intruder", "submit", {
            "machine": "kv", "seq": 1, "cmd": {"op": "put", "key": key, "value": 1}})))
        assert refused(intruder.wait_handshake(), keys)
        if keys is not None:  # the node's ZAP handler said no, and counted it
            wait_for(lambda: c.status(lead)["counters"]["auth_denied"].get("arena-client", 0)
                     > denied_before, 3, "the refusal counted")
        # a legitimate write commits after the intruder's attempt...
        c.put("legit", who)
        assert c.get("legit") == who
        # ...while the intruder got nothing back and changed nothing
        assert intruder.sock.poll(200) == 0
        assert c.get(key) is None
    finally:
        intruder.close()


def test_an_outsider_cannot_subscribe_to_the_updates(
    secure3: LocalCluster, client_for: Callable[..., Client], ctx: zmq.Context
) -> None:
    c = client_for(secure3)
    lead = wait_for(lambda: leader_of(c), 5, "a leader")
    server_key = secure3.cluster.security.server_public_keys[lead]
    plain = Intruder(ctx, zmq.SUB, secure3.cluster.node(lead).pub)
    foreign = Intruder(ctx, zmq.SUB, secure3.cluster.node(lead).pub, new_keypair(), server_key)
    try:
        assert refused(plain.wait_handshake(), None)
        assert refused(foreign.wait_handshake(), "keys")
        c.put("secret", "value")  # published (the node publishes every applied change)
        assert plain.sock.poll(100) == 0 and foreign.sock.poll(100) == 0
    finally:
        plain.close()
        foreign.close()


# the self-proclaimed leader (a routing id no real node uses, so no real connection shadows it)
FORGER = "n9"


def _forged_append(cid: str, target: str, claimed: str, term: int, last: int,
                   last_term: int) -> bytes:
    """A well-formed AppendEntries from a self-proclaimed leader of a much later term,
    carrying a key-value write and committing it at once."""
    data = encode_command("intruder", 1, int(time.time() * 1000), "kv",
                          {"op": "put", "key": "forged", "value": True})
    m = AppendEntries(term + 50, claimed, target, last, last_term,
                      (Entry(last + 1, term + 50, data),), last + 1)
    return codec.encode_peer(cid, m)


def _stale_get(c: Client, nid: str, key: str) -> object:
    """``key`` as node ``nid`` has it applied (a local read there)."""
    call = c.link.wait(c.link.call("read", {"machine": "kv", "query": {"op": "get", "key": key},
                                            "linearizable": False}, node=nid))
    r = call.raise_for_error()
    return r.get("value") if isinstance(r, dict) and r.get("found") else None


def _forged_vote(cid: str, target: str, claimed: str, term: int, last: int) -> bytes:
    return codec.encode_peer(cid, RequestVote(term + 60, claimed, target, last + 100, term + 60,
                                              transfer=True))


def test_without_curve_a_forged_append_entries_takes_over_a_node(
    make_cluster: Callable[..., LocalCluster], client_for: Callable[..., Client],
    ctx: zmq.Context,
) -> None:
    """The control: the forged frame of the next test is one a plaintext node obeys."""
    lc = make_cluster(3)
    c = client_for(lc)
    lead = wait_for(lambda: leader_of(c), 10, "a leader")
    c.put("before", 1)
    target = next(n for n in lc.cluster.ids() if n != lead)
    s = wait_for(lambda: (st := c.status(target)) and st["applied"] == st["last_index"] and st,
                 3, "the follower caught up")
    frame = _forged_append(lc.cluster.cluster_id, target, FORGER, s["term"], s["last_index"],
                           s["term"])
    intruder = Intruder(ctx, zmq.DEALER, lc.cluster.node(target).raft, identity=FORGER)
    try:
        intruder.sock.send(frame)
        wait_for(lambda: (c.status(target) or {}).get("term", 0) >= s["term"] + 50, 3,
                 "the plaintext node adopting the forged term")
        wait_for(lambda: _stale_get(c, target, "forged") is True, 3,
                 "the plaintext node applying the forged entry")
    finally:
        intruder.close()


def test_a_forged_raft_message_changes_neither_term_nor_log(
    secure3: LocalCluster, client_for: Callable[..., Client], ctx: zmq.Context
) -> None:
    c = client_for(secure3)
    cf = secure3.cluster
    lead = wait_for(lambda: leader_of(c), 5, "a leader")
    c.put("before-forgery", 1)
    target = next(n for n in cf.ids() if n != lead)
    s = wait_for(lambda: (st := c.status(target)) and st["applied"] == st["last_index"] and st,
                 3, "the follower caught up")
    frames = [_forged_append(cf.cluster_id, target, FORGER, s["term"], s["last_index"], s["term"]),
              _forged_vote(cf.cluster_id, target, FORGER, s["term"], s["last_index"])]
    server_key = cf.security.server_public_keys[target]
    outsiders = {
        **_intruders(secure3, target),
        "the client key pair": (client_keys(cf), server_key),  # good for clients, not peers
    }
    denied = c.status(target)["counters"]["auth_denied"].get("arena-peer", 0)
    for who, (keys, skey) in outsiders.items():
        intruder = Intruder(ctx, zmq.DEALER, cf.node(target).raft, keys, skey, identity=FORGER)
        try:
            for f in frames:
                intruder.sock.send(f)
            assert refused(intruder.wait_handshake(), keys), who
        finally:
            intruder.close()
    wait_for(lambda: c.status(target)["counters"]["auth_denied"].get("arena-peer", 0)
             >= denied + 2, 3, "both key pairs refused by ZAP")
    after = c.status(target)
    assert after["term"] == s["term"] and after["leader"] == lead
    assert _stale_get(c, target, "forged") is None and c.get("forged") is None
    assert c.get("before-forgery") == 1


def test_one_node_key_cannot_speak_for_another_node(
    secure3: LocalCluster, client_for: Callable[..., Client], ctx: zmq.Context
) -> None:
    """A frame is kept only from the node its connection's key belongs to."""
    c = client_for(secure3)
    cf = secure3.cluster
    lead = wait_for(lambda: leader_of(c), 5, "a leader")
    target = next(n for n in cf.ids() if n != lead)
    holder = next(n for n in cf.ids() if n not in (lead, target))
    s = c.status(target)
    before = s["counters"]["peer_dropped"].get("sender_key_mismatch", 0)
    # holder's key, claiming (in the routing id and the frame) to be another node
    keys = node_keys(cf, holder)
    intruder = Intruder(ctx, zmq.DEALER, cf.node(target).raft, keys,
                        cf.security.server_public_keys[target], identity=FORGER)
    try:
        intruder.sock.send(_forged_vote(cf.cluster_id, target, FORGER, s["term"],
                                        s["last_index"]))
        assert intruder.wait_handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
        wait_for(lambda: c.status(target)["counters"]["peer_dropped"].get(
            "sender_key_mismatch", 0) > before, 3, "the frame dropped as sender_key_mismatch")
        assert c.status(target)["term"] == s["term"]
    finally:
        intruder.close()
