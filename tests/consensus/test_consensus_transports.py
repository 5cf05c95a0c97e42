"""Transports: bring-your-own (bytes through user functions), ZeroMQ on loopback,
the in-process hub's fault injection, and the frames themselves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from consensus_helpers import run, wait_until

from nodes import Consensus, ConsensusError, InProcessNetwork
from nodes.codec import encode_peer
from nodes.consensus import wire
from nodes.local import free_ports
from nodes.raft.messages import RequestVote

IDS = ["a", "b", "c"]


async def _byo_cluster(async_sender: bool) -> tuple[dict[str, Consensus], list[bytes]]:
    nodes: dict[str, Consensus] = {}
    frames: list[bytes] = []

    def sender_of(me: str) -> Any:
        def deliver(to: str, data: bytes) -> None:
            frames.append(data)
            if to in nodes and nodes[to].running:
                nodes[to].handle_message(me, data)

        async def deliver_later(to: str, data: bytes) -> None:
            await asyncio.sleep(0)
            deliver(to, data)

        return deliver_later if async_sender else deliver

    for i in IDS:
        c = Consensus(i, peers=[p for p in IDS if p != i], seed=61)
        c.set_message_sender(sender_of(i))
        nodes[i] = c
    for c in nodes.values():
        c.start()
    return nodes, frames


@pytest.mark.parametrize("async_sender", [False, True], ids=["sync", "async"])
def test_bring_your_own_transport_carries_codec_frames(async_sender: bool) -> None:
    async def scenario() -> None:
        nodes, frames = await _byo_cluster(async_sender)
        try:
            leader = await nodes["a"].wait_for_leader()
            follower = next(i for i in IDS if i != leader)
            assert await nodes[follower].propose("k", "v")  # forwarded: an app frame
            assert await nodes[follower].read("k") == "v"
            assert frames and all(isinstance(f, bytes) for f in frames)
            kinds = {type(wire.decode(f, "arena")).__name__ for f in frames}
            assert {"RequestVote", "AppendEntries", "AppPacket"} <= kinds
            # garbage, foreign clusters and impostors are dropped, never raised
            nodes["a"].handle_message("b", b"\x00garbage")
            nodes["a"].handle_message("b", encode_peer("other-cluster",
                                                       RequestVote(9, "b", "a", 0, 0)))
            nodes["a"].handle_message("c", encode_peer("arena", RequestVote(9, "b", "a", 0, 0)))
            assert await nodes["a"].propose("still", "fine")
        finally:
            for c in nodes.values():
                await c.stop()

    run(scenario())


def test_handle_message_is_refused_on_a_node_with_another_transport() -> None:
    async def scenario() -> None:
        c = Consensus("x", transport=InProcessNetwork())
        c.start()
        try:
            with pytest.raises(ConsensusError, match="set_message_sender"):
                c.handle_message("y", b"")
            with pytest.raises(ConsensusError, match="another transport"):
                c.set_message_sender(lambda to, data: None)
        finally:
            await c.stop()

    run(scenario())


def test_three_nodes_over_zeromq_on_loopback_elect_and_commit() -> None:
    async def scenario() -> None:
        ports = free_ports(3)
        addr = {i: f"tcp://127.0.0.1:{p}" for i, p in zip(IDS, ports, strict=True)}
        nodes = {i: Consensus(i, address=addr[i], seed=62,
                              peers={p: addr[p] for p in IDS if p != i}) for i in IDS}
        for c in nodes.values():
            c.start()
        try:
            leader = await nodes["a"].wait_for_leader(timeout=5.0)
            follower = next(i for i in IDS if i != leader)
            result = await nodes[follower].propose_with_result("over", "zmq")
            assert result.accepted and result.votes.total == 3
            assert await nodes[leader].increment("n") == 1
            assert await nodes[follower].read("over") == "zmq"
            await wait_until(lambda: all(c.get("n") == 1 for c in nodes.values()))
            info = nodes[follower].get_node(leader)
            assert info is not None and info.address == addr[leader] and info.connected
        finally:
            for c in nodes.values():
                await c.stop()

    run(scenario())


def test_zeromq_needs_an_address_to_bind_and_one_per_peer() -> None:
    async def scenario() -> None:
        c = Consensus("x", transport="zmq")
        with pytest.raises(ConsensusError, match="address"):
            c.start()
        (port,) = free_ports(1)
        c = Consensus("x", address=f"tcp://127.0.0.1:{port}", peers=["y"])
        with pytest.raises(ConsensusError, match="every peer needs an address"):
            c.start()

    run(scenario())


def test_the_in_process_network_partitions_isolates_and_drops() -> None:
    net = InProcessNetwork()
    net.partition({"a", "b"}, {"c"})
    assert net.can_talk("a", "b") and not net.can_talk("a", "c")
    assert net.can_talk("x", "y") and not net.can_talk("x", "a")  # unnamed: one more group
    net.isolate("a")
    assert not net.can_talk("a", "b") and net.can_talk("b", "c")
    net.heal()
    assert net.can_talk("a", "c")
    with pytest.raises(ValueError, match="two partition groups"):
        net.partition({"a"}, {"a", "b"})

    async def scenario() -> None:
        lossy = InProcessNetwork(drop_rate=1.0)
        got: list[Any] = []
        loop = asyncio.get_running_loop()
        a = lossy.attach("a", got.append, loop)
        lossy.attach("b", got.append, loop)
        a.send("b", wire.AppPacket("ping", "a", {}))
        lossy.drop_rate = 0.0
        a.send("b", wire.AppPacket("ping", "a", {"n": (1, 2)}))
        a.send("nobody", wire.AppPacket("ping", "a", {}))
        await wait_until(lambda: got)
        assert got == [wire.AppPacket("ping", "a", {"n": [1, 2]})]  # as it would read off the wire
        assert lossy.counters["dropped_random"] == 1
        assert lossy.counters["dropped_no_such_node"] == 1
        with pytest.raises(ValueError, match="already attached"):
            lossy.attach("a", got.append, loop)

    run(scenario())


def test_application_frames_never_look_like_codec_frames() -> None:
    app = wire.encode("arena", wire.AppPacket("fwd", "a", {"rid": 1, "cmd": {"op": "put"}}))
    raft = wire.encode("arena", RequestVote(3, "a", "b", 7, 2))
    assert app[0] == wire.APP_TAG and raft[0] != wire.APP_TAG
    assert wire.decode(app, "arena") == wire.AppPacket("fwd", "a", {"rid": 1, "cmd": {"op": "put"}})
    assert wire.decode(raft, "arena") == RequestVote(3, "a", "b", 7, 2)
    for bad, code in [(b"", "empty"), (app, "foreign_cluster"), (bytes([wire.APP_TAG]) + b"\x01",
                                                                  "malformed")]:
        with pytest.raises(wire.WireError) as err:
            wire.decode(bad, "other" if code == "foreign_cluster" else "arena")
        assert err.value.code == code
    with pytest.raises(wire.WireError, match="limit"):
        wire.decode(app, "arena", max_frame=4)
