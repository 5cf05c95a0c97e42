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
import time
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


# --- the publish port ---------------------------------------------------------------

SUBSCRIPTION_MAX_BYTES = 512  # a larger frame on the publish port drops that connection
SUBSCRIPTION_BUDGET_BYTES = 16 << 10  # subscription bytes held before the socket is rebuilt
# (an honest subscription holds 2 bytes: 8,000 of them fit)
SUBSCRIPTIONS_PER_TURN = 1_000
SUBSCRIPTION_RCVHWM = 4  # subscriptions libzmq takes from a connection ahead of us
PUB_SNDHWM = 100_000


class Publisher:
    """The node's XPUB for published updates, with its subscriptions bounded.

    libzmq keeps every subscription in a trie inside the socket, about 48 bytes per
    subscription byte (issue 11: four 1 MB subscriptions cost a node 196 MiB), and
    any client key holder may subscribe. Three bounds:

    - ``ZMQ_MAXMSGSIZE``: a subscription frame above ``SUBSCRIPTION_MAX_BYTES``
      closes that connection in libzmq's decoder, before anything is stored (CURVE
      handshake commands pass through the same decoder, hence 512 bytes, not 2);
    - ``ZMQ_XPUB_MANUAL``: every subscription reaches us, and only prefixes of the
      topics we publish (``topics``), or subscriptions of at most
      ``topic_max_bytes`` that start with one of ``topic_prefixes`` (families of
      topics made up as we go, e.g. ``room/<id>/``), are applied to the matching trie;
    - a budget: libzmq still remembers each subscription per connection (to report
      it when the connection ends), so once the subscriptions held reach
      ``SUBSCRIPTION_BUDGET_BYTES`` the socket is closed and bound again, which
      frees them all. Honest subscribers reconnect and subscribe again by
      themselves (ZeroMQ does it); a client's view sees the index gap and asks for
      a snapshot, as after any lost update.

    libzmq files subscriptions whenever the socket is used, sending included, not
    only when we read them: ``send`` takes the waiting ones first, and a small
    receive high-water mark (``SUBSCRIPTION_RCVHWM``) bounds how many each
    connection gets in ahead of our count. ``on_rebuild`` is called with the new
    socket (the caller polls it).

    ``watched(topic)`` says whether anyone follows ``topic`` (so that updates
    nobody follows are not even encoded).
    """

    def __init__(self, ctx: zmq.Context, bind: str, topics: tuple[bytes, ...],
                 curve: KeyPair | None = None, domain: str = "",
                 budget_bytes: int = SUBSCRIPTION_BUDGET_BYTES,
                 on_rebuild: Callable[[], None] | None = None,
                 topic_prefixes: tuple[bytes, ...] = (), topic_max_bytes: int = 0) -> None:
        self.ctx = ctx
        self.bind_addr = bind
        self.topics = topics
        # families of topics made up as we go (e.g. b"room/" + id): a subscription
        # starting with one of these prefixes, at most topic_max_bytes long, is applied
        self.topic_prefixes = topic_prefixes
        self.topic_max_bytes = topic_max_bytes
        self.curve = curve
        self.domain = domain
        self.budget_bytes = budget_bytes
        self.on_rebuild = on_rebuild or (lambda: None)
        self.refs: Counter[bytes] = Counter()  # accepted topic prefix -> subscriptions
        self.held_bytes = 0  # subscription bytes libzmq holds for us now
        self.refused = 0  # subscriptions to topics we do not publish (not applied)
        self.resets = 0
        self.socket = self._open()

    def _open(self) -> zmq.Socket:
        s = self.ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, PUB_SNDHWM)
        s.setsockopt(zmq.XPUB_MANUAL, 1)
        s.setsockopt(zmq.MAXMSGSIZE, SUBSCRIPTION_MAX_BYTES)
        s.setsockopt(zmq.RCVHWM, SUBSCRIPTION_RCVHWM)
        if self.curve is not None:
            make_server(s, self.curve, self.domain)
        # after a reset the old listener is closed by libzmq's reaper, not at once
        deadline = time.monotonic() + 2.0
        while True:
            try:
                s.bind(self.bind_addr)
                return s
            except zmq.ZMQError as e:
                if e.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    s.close(0)
                    raise
                time.sleep(0.01)

    def watched(self, topic: bytes) -> bool:
        """Whether a subscription matches ``topic``: O(len(topic)) lookups, however
        many subscriptions there are."""
        refs = self.refs
        return any(refs.get(topic[:n], 0) > 0 for n in range(len(topic) + 1))

    def accepts(self, subscription: bytes) -> bool:
        """Whether ``subscription`` can match something we publish."""
        if any(t.startswith(subscription) for t in self.topics):
            return True
        return len(subscription) <= self.topic_max_bytes and any(
            subscription.startswith(p) for p in self.topic_prefixes)

    def handle(self) -> bool:
        """Take the subscriptions that arrived (at most ``SUBSCRIPTIONS_PER_TURN``);
        True when the socket was rebuilt."""
        s = self.socket
        for _ in range(SUBSCRIPTIONS_PER_TURN):
            if not s.get(zmq.EVENTS) & zmq.POLLIN:
                break
            msg = s.recv(zmq.NOBLOCK)
            if not msg or msg[0] not in (0, 1):
                continue
            topic = msg[1:]
            if msg[0] == 1:
                self.held_bytes += len(msg)
                if self.held_bytes > self.budget_bytes:
                    self._rebuild()
                    return True
                if self.accepts(topic):
                    s.setsockopt(zmq.SUBSCRIBE, topic)  # applies to the sender's connection
                    self.refs[topic] += 1
                else:
                    self.refused += 1
            else:
                # also reported for each subscription of a connection that ended; libzmq
                # has already dropped that connection, so nothing is unsubscribed here
                self.held_bytes = max(0, self.held_bytes - len(msg))
                if self.refs.get(topic, 0) > 0:
                    self.refs[topic] -= 1
        return False

    def _rebuild(self) -> None:
        log.warning("publish port %s holds over %d bytes of subscriptions: rebuilding it "
                    "(subscribers reconnect by themselves)", self.bind_addr, self.budget_bytes)
        self.socket.close(0)
        self.refs.clear()
        self.held_bytes = 0
        self.resets += 1
        self.socket = self._open()
        self.on_rebuild()

    def send(self, topic: bytes, payload: bytes) -> bool:
        if self.socket.get(zmq.EVENTS) & zmq.POLLIN:
            self.handle()
        try:
            self.socket.send_multipart([topic, payload], zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            return False

    def close(self) -> None:
        self.socket.close(0)
