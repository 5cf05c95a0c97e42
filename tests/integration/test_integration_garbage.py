"""Garbage on every port: raw TCP bytes (no ZeroMQ handshake at all, half a
handshake, random frames) thrown at each node's raft, client and pub ports. The
node keeps serving; a well-formed client with a malformed request gets a clear
error (frame-level garbage inside ZeroMQ is covered by tests/security and the
codec fuzz tests)."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

import msgpack
import zmq
from integration_helpers import wait_for

from client.api import Client
from nodes import codec
from nodes.local import LocalCluster

ZMTP_GREETING = b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL" + b"\x00" * 16 + b"\x00" + b"\x00" * 31


def _address(addr: str) -> tuple[str, int]:
    host, port = addr.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def throw(addr: str, payload: bytes) -> None:
    with socket.create_connection(_address(addr), timeout=2) as s:
        try:
            s.sendall(payload)
            s.settimeout(0.2)
            s.recv(64)
        except OSError:
            pass  # the node may hang up on us: that is its right


def test_raw_garbage_on_every_port_leaves_every_node_serving(
    cluster3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    seed = random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    c = client_for(cluster3)
    wait_for(lambda: c.leader(), 10, "a leader")
    c.put("before", 1)
    payloads = [
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ZMTP_GREETING[:5],  # half a greeting
        ZMTP_GREETING + rng.randbytes(200),  # a greeting, then nonsense
        rng.randbytes(4096),
        b"\x00" * 10_000,
    ]
    for n in cluster3.cluster.nodes:
        for addr in (n.raft, n.client, n.pub):
            for p in payloads:
                throw(addr, p)
    for nid in cluster3.cluster.ids():
        assert cluster3.alive(nid), f"{nid} died (seed={seed})"
        assert c.status(nid) is not None, f"{nid} stopped answering (seed={seed})"
    c.put("after", 2)
    assert (c.get("before"), c.get("after")) == (1, 2), f"seed={seed}"


def test_a_malformed_request_gets_a_protocol_error_and_the_node_keeps_serving(
    cluster3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    c = client_for(cluster3)
    wait_for(lambda: c.leader(), 10, "a leader")
    node = cluster3.cluster.nodes[0]
    ctx = zmq.Context.instance()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(node.client)
    try:
        for bad in (b"\x93\x01\x02\x03", b"not msgpack at all", b"\x95\x09" + b"\x00" * 8):
            d.send(bad)
            assert d.poll(3000), "no answer to a malformed request"
            resp = codec.decode_response(d.recv(), cluster3.cluster.cluster_id)
            assert not resp.ok and resp.error is not None
            assert resp.error.code == "protocol" and resp.error.message
        # a readable head names the request: its answer goes to its req_id (issue 10)
        cid = cluster3.cluster.cluster_id
        ext_body = msgpack.packb([1, cid, 16, 42, "c-x", "submit",
                                  {"cmd": msgpack.ExtType(1, b"t")}], use_bin_type=True)
        unknown_kind = msgpack.packb([1, cid, 16, 43, "c-x", "frobnicate", {}])
        for frame, req_id, reason in ((ext_body, 42, "malformed:"),
                                      (unknown_kind, 43, "unknown_kind:")):
            d.send(frame)
            assert d.poll(3000), f"no answer to request {req_id}"
            resp = codec.decode_response(d.recv(), cid)
            assert resp.req_id == req_id and resp.error is not None
            assert resp.error.message.startswith(reason), resp.error.message
    finally:
        d.close(0)
    s = c.status(node.id)
    assert s is not None and sum(s["counters"]["client_dropped"].values()) >= 5
    assert s["counters"]["client_dropped"].get("unknown_kind") == 1
    c.put("still", "serving")
    assert c.get("still") == "serving"
