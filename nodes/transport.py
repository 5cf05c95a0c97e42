"""Raft traffic between node processes over ZeroMQ.

Each node binds one ROUTER for incoming peer traffic and keeps one DEALER per
peer (identity = its own node id) for outgoing traffic. Outgoing sockets use
``ZMQ_IMMEDIATE`` (nothing is queued for a peer that is not connected), a
bounded send queue (HWM) and zero linger, so a dead or stopped peer never
blocks the node nor makes it grow: Raft retransmits what matters. Reconnection
is ZeroMQ's own. Frames that cannot be decoded are dropped and counted by
reason; they never raise out of ``receive``.

Reachability comes from the DEALER's socket monitor (TCP connected or not) and
is reported as ``node:unreachable`` / ``node:reconnected`` events.

With ``curve`` (see ``nodes.security``) the ROUTER is a CURVE server that only
admits node keys, every DEALER a CURVE client with this node's key pair, and a
frame is kept only if its sender is the node whose key the connection
authenticated (``User-Id``): holding one node's key does not let a process
speak for another.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import codec
from .raft.messages import Message
from .security import PEER_DOMAIN, KeyPair, make_client, make_server

log = logging.getLogger("arena.transport")

SEND_HWM = 10_000
RECV_HWM = 100_000


class PeerTransport:
    def __init__(
        self,
        ctx: zmq.Context,
        node_id: str,
        cluster_id: str,
        bind: str,
        peers: dict[str, str],
        max_frame: int = codec.DEFAULT_MAX_FRAME,
        on_event: Callable[[str, str], None] | None = None,
        curve: KeyPair | None = None,
        peer_keys: dict[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.curve = curve
        self.peer_keys = dict(peer_keys or {})  # node id -> CURVE public key
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.max_frame = max_frame
        self.on_event = on_event or (lambda event, peer: None)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.RCVHWM, RECV_HWM)
        self.router.setsockopt(zmq.MAXMSGSIZE, max_frame + 1024)
        if curve is not None:
            make_server(self.router, curve, PEER_DOMAIN)
        self.router.bind(bind)
        self.dealers: dict[str, zmq.Socket] = {}
        self.monitors: dict[zmq.Socket, str] = {}
        self.connected: dict[str, bool] = {}
        self.blocked: set[str] = set()  # peers cut off by an admin partition
        self.dropped: Counter[str] = Counter()
        self.sent = 0
        self.received = 0
        for peer, addr in peers.items():
            if peer != node_id:
                self.add_peer(peer, addr)

    def add_peer(self, peer: str, addr: str, public_key: str | None = None) -> None:
        if peer in self.dealers or peer == self.node_id:
            return
        if public_key is not None:
            self.peer_keys[peer] = public_key
        server_key = self.peer_keys.get(peer)
        if self.curve is not None and server_key is None:
            log.error("node %s: no CURVE public key for peer %s; it stays unreachable "
                      "(add it to [security] server_public_keys)", self.node_id, peer)
            self.dropped["peer_without_key"] += 1
            return
        d = self.ctx.socket(zmq.DEALER)
        d.setsockopt_string(zmq.IDENTITY, self.node_id)
        d.setsockopt(zmq.LINGER, 0)
        d.setsockopt(zmq.SNDHWM, SEND_HWM)
        d.setsockopt(zmq.IMMEDIATE, 1)
        d.setsockopt(zmq.RECONNECT_IVL, 50)
        d.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        if self.curve is not None and server_key is not None:
            make_client(d, self.curve, server_key)
        mon = d.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        d.connect(addr)
        self.dealers[peer] = d
        self.monitors[mon] = peer
        self.connected[peer] = False

    def remove_peer(self, peer: str) -> None:
        d = self.dealers.pop(peer, None)
        if d is None:
            return
        for mon, p in list(self.monitors.items()):
            if p == peer:
                del self.monitors[mon]
                d.disable_monitor()
                mon.close(0)
        d.close(0)
        self.connected.pop(peer, None)

    # --- traffic -----------------------------------------------------------------

    def send(self, msg: Message) -> None:
        peer = msg.recipient
        if peer in self.blocked:
            self.dropped["partitioned_out"] += 1
            return
        d = self.dealers.get(peer)
        if d is None:
            self.dropped["unknown_peer"] += 1
            return
        try:
            d.send(codec.encode_peer(self.cluster_id, msg), zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped["peer_queue_full_or_down"] += 1

    def receive(self, limit: int = 10_000) -> list[Message]:
        """Everything waiting on the ROUTER (non-blocking), decoded."""
        out: list[Message] = []
        curve = self.curve is not None
        router = self.router
        for _ in range(limit):
            # asking first is cheaper than the exception an empty recv raises
            if not router.get(zmq.EVENTS) & zmq.POLLIN:
                break
            try:
                parts = router.recv_multipart(zmq.NOBLOCK, copy=not curve)
            except zmq.Again:
                break
            if len(parts) != 2:
                self.dropped["bad_envelope"] += 1
                continue
            user = None
            if curve:
                user = parts[1].get("User-Id")  # type: ignore[union-attr]
                frames = [p.bytes for p in parts]  # type: ignore[union-attr]
            else:
                frames = parts  # type: ignore[assignment]
            try:
                msg = codec.decode_peer(frames[1], self.cluster_id, self.max_frame)
            except codec.ProtocolError as e:
                self.dropped[e.code] += 1
                log.debug("dropped a peer frame: %s", e)
                continue
            if msg.sender.encode() != frames[0]:
                self.dropped["sender_mismatch"] += 1
                continue
            if curve and user != msg.sender:
                self.dropped["sender_key_mismatch"] += 1
                continue
            if msg.sender in self.blocked:
                self.dropped["partitioned_in"] += 1
                continue
            self.received += 1
            out.append(msg)
        return out

    def poll_monitors(self) -> None:
        for mon, peer in list(self.monitors.items()):
            while True:
                try:
                    ev = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                up = ev["event"] == zmq.EVENT_CONNECTED
                if up != self.connected.get(peer):
                    self.connected[peer] = up
                    self.on_event("node:reconnected" if up else "node:unreachable", peer)

    def sockets(self) -> list[zmq.Socket]:
        return [self.router, *self.monitors]

    def close(self) -> None:
        for peer in list(self.dealers):
            self.remove_peer(peer)
        self.router.close(0)
