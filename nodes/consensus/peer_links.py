"""How ``Consensus`` nodes reach each other: in-process, ZeroMQ, or bring your own.

A node talks to its transport through a ``Link``: ``send(to, packet)``,
``add_peer`` / ``remove_peer``, ``poll()`` (called every tick) and ``close()``.
Incoming packets are handed to the node's ``deliver(packet)`` callback, always
on the node's event loop and never from inside ``send`` (so a node is never
re-entered while it handles a Ready). Packets are Raft messages or ``AppPacket``
messages (see ``wire``). Every transport may lose packets; Raft and the
``Consensus`` layer retransmit what matters.

- ``InProcessNetwork``: a hub for nodes in one process (tests, examples,
  simulations). Delivery goes through the event loop (``call_soon``, or
  ``call_later`` with ``latency``); ``partition``, ``heal``, ``isolate`` and
  ``drop_rate`` (seeded) inject faults.
- ``ZmqLink``: ``nodes.transport.PeerTransport`` (ROUTER in, one DEALER per
  peer out) driven from asyncio without blocking it: the ROUTER's ``zmq.FD`` is
  watched with ``loop.add_reader`` and drained until empty (that FD is
  edge-triggered), and every tick drains again as a safety net.
- ``CallbackLink``: bring your own transport. Outgoing frames go to
  ``sender(to_id, data: bytes)`` (a plain function or a coroutine function);
  incoming frames come in through ``Consensus.handle_message(from_id, data)``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Callable
from random import Random
from typing import Any, Protocol

from . import wire
from .wire import AppPacket, Packet

log = logging.getLogger("arena.consensus.peer_links")

Deliver = Callable[[Packet], None]


class Link(Protocol):
    """One node's attachment to a transport."""

    def send(self, to: str, packet: Packet) -> None: ...

    def add_peer(self, node_id: str, address: str | None) -> None: ...

    def remove_peer(self, node_id: str) -> None: ...

    def poll(self) -> None: ...

    def close(self) -> None: ...


def _schedule(loop: asyncio.AbstractEventLoop, delay: float, fn: Callable[..., Any],
              *args: Any) -> None:
    """Run ``fn`` on ``loop`` later, from whichever thread we are on."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        if delay > 0:
            loop.call_later(delay, fn, *args)
        else:
            loop.call_soon(fn, *args)
    elif delay > 0:
        loop.call_soon_threadsafe(loop.call_later, delay, fn, *args)
    else:
        loop.call_soon_threadsafe(fn, *args)


# --- in-process ----------------------------------------------------------------------


class InProcessNetwork:
    """A message hub for ``Consensus`` nodes living in one process.

    ``partition(*groups)``: a node talks only to nodes of its own group; the
    nodes named in no group form one more group together. ``isolate(*ids)`` cuts
    those nodes off from everybody. ``heal()`` removes every cut. ``drop_rate``
    (0..1) loses that fraction of packets, drawn from a ``Random(seed)``.
    ``latency`` (seconds) delays every delivery.
    """

    def __init__(self, drop_rate: float = 0.0, latency: float = 0.0, seed: int | None = None) -> None:
        self.drop_rate = drop_rate
        self.latency = latency
        self.rng = Random(seed)
        self._links: dict[str, _InProcessLink] = {}
        self._group_of: dict[str, int] = {}
        self.counters: Counter[str] = Counter()

    # --- faults ------------------------------------------------------------------

    def partition(self, *groups: set[str] | frozenset[str] | list[str] | tuple[str, ...]) -> None:
        self._group_of = {}
        for i, group in enumerate(groups):
            for node in group:
                if node in self._group_of:
                    raise ValueError(f"node {node!r} is in two partition groups")
                self._group_of[node] = i + 1  # unnamed nodes share group 0

    def isolate(self, *node_ids: str) -> None:
        self.partition(*({n} for n in node_ids))

    def heal(self) -> None:
        self._group_of = {}

    def can_talk(self, a: str, b: str) -> bool:
        return self._group_of.get(a, 0) == self._group_of.get(b, 0)

    @property
    def nodes(self) -> list[str]:
        return sorted(self._links)

    # --- attachment ----------------------------------------------------------------

    def attach(self, node_id: str, deliver: Deliver, loop: asyncio.AbstractEventLoop) -> Link:
        if node_id in self._links:
            raise ValueError(f"a node {node_id!r} is already attached to this network")
        link = _InProcessLink(self, node_id, deliver, loop)
        self._links[node_id] = link
        return link

    def _detach(self, link: _InProcessLink) -> None:
        if self._links.get(link.node_id) is link:
            del self._links[link.node_id]

    def _send(self, sender: str, to: str, packet: Packet) -> None:
        self.counters["sent"] += 1
        target = self._links.get(to)
        if target is None:
            self.counters["dropped_no_such_node"] += 1
            return
        if not self.can_talk(sender, to):
            self.counters["dropped_partition"] += 1
            return
        if self.drop_rate and self.rng.random() < self.drop_rate:
            self.counters["dropped_random"] += 1
            return
        if isinstance(packet, AppPacket):
            packet = AppPacket(packet.kind, packet.sender, wire.copy_body(packet.body))
        _schedule(target.loop, self.latency, target.receive, sender, packet)


class _InProcessLink:
    def __init__(self, net: InProcessNetwork, node_id: str, deliver: Deliver,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.net = net
        self.node_id = node_id
        self.deliver = deliver
        self.loop = loop
        self.closed = False

    def send(self, to: str, packet: Packet) -> None:
        if not self.closed:
            self.net._send(self.node_id, to, packet)

    def receive(self, sender: str, packet: Packet) -> None:
        # a partition that started while the packet was in flight still cuts it
        if self.closed or not self.net.can_talk(sender, self.node_id):
            return
        self.net.counters["delivered"] += 1
        self.deliver(packet)

    def add_peer(self, node_id: str, address: str | None) -> None:
        pass  # the hub routes by node id

    def remove_peer(self, node_id: str) -> None:
        pass

    def poll(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self.net._detach(self)


# --- bring your own ------------------------------------------------------------------


Sender = Callable[[str, bytes], Any]


class CallbackLink:
    """Frames out through a user function; frames in through ``receive_frame``."""

    def __init__(self, node_id: str, cluster_id: str, sender: Sender, deliver: Deliver,
                 loop: asyncio.AbstractEventLoop, max_frame: int = wire.DEFAULT_MAX_FRAME) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.sender = sender
        self.deliver = deliver
        self.loop = loop
        self.max_frame = max_frame
        self.dropped: Counter[str] = Counter()
        self._tasks: set[asyncio.Future[Any]] = set()
        self.closed = False

    def send(self, to: str, packet: Packet) -> None:
        if self.closed:
            return
        data = wire.encode(self.cluster_id, packet)
        try:
            outcome = self.sender(to, data)
        except Exception:
            self.dropped["sender_failed"] += 1
            log.exception("node %s: the message sender failed for %s", self.node_id, to)
            return
        if inspect.isawaitable(outcome):
            task = asyncio.ensure_future(outcome)
            self._tasks.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.dropped["sender_failed"] += 1
            log.warning("node %s: an async send failed: %r", self.node_id, task.exception())

    def receive_frame(self, from_id: str, data: bytes) -> None:
        """Decode a frame (any thread) and deliver it on the node's loop."""
        if self.closed:
            return
        try:
            packet = wire.decode(data, self.cluster_id, self.max_frame)
        except wire.WireError as exc:
            self.dropped[exc.code] += 1
            log.debug("node %s dropped a frame from %s: %s", self.node_id, from_id, exc)
            return
        if packet.sender != from_id:
            self.dropped["sender_mismatch"] += 1
            return
        _schedule(self.loop, 0.0, self._deliver, packet)

    def _deliver(self, packet: Packet) -> None:
        if not self.closed:
            self.deliver(packet)

    def add_peer(self, node_id: str, address: str | None) -> None:
        pass

    def remove_peer(self, node_id: str) -> None:
        pass

    def poll(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        for task in self._tasks:
            task.cancel()


# --- ZeroMQ --------------------------------------------------------------------------


class ZmqLink:
    """``nodes.transport.PeerTransport`` polled from asyncio.

    Raft messages go out through ``PeerTransport.send`` (codec peer frames);
    application frames go out on the same per-peer DEALER. Incoming frames are
    read from the ROUTER here (not with ``PeerTransport.receive``, which knows
    only Raft frames) and checked the same way: the frame's sender must be the
    DEALER identity it came from.
    """

    def __init__(self, node_id: str, cluster_id: str, bind: str, peers: dict[str, str],
                 deliver: Deliver, loop: asyncio.AbstractEventLoop,
                 on_peer_event: Callable[[str, str], None] | None = None,
                 max_frame: int = wire.DEFAULT_MAX_FRAME) -> None:
        import zmq

        from nodes.transport import PeerTransport

        self._zmq = zmq
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.deliver = deliver
        self.loop = loop
        self.max_frame = max_frame
        self.ctx = zmq.Context()
        self.peer_transport = PeerTransport(
            self.ctx, node_id, cluster_id, bind, dict(peers), max_frame,
            on_event=on_peer_event,
        )
        self.dropped: Counter[str] = Counter()
        self.closed = False
        self._fd = self.peer_transport.router.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._drain)
        loop.call_soon(self._drain)  # frames may be waiting already: the FD is edge-triggered

    @property
    def connected(self) -> dict[str, bool]:
        return self.peer_transport.connected

    def send(self, to: str, packet: Packet) -> None:
        if self.closed:
            return
        pt = self.peer_transport
        if not isinstance(packet, AppPacket):
            pt.send(packet)
            return
        dealer = pt.dealers.get(to)
        if dealer is None:
            self.dropped["unknown_peer"] += 1
            return
        try:
            dealer.send(wire.encode(self.cluster_id, packet), self._zmq.NOBLOCK)
        except self._zmq.Again:
            self.dropped["peer_queue_full_or_down"] += 1

    def _drain(self) -> None:
        if self.closed:
            return
        zmq = self._zmq
        router = self.peer_transport.router
        for _ in range(10_000):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 2:
                self.dropped["bad_envelope"] += 1
                continue
            try:
                packet = wire.decode(frames[1], self.cluster_id, self.max_frame)
            except wire.WireError as exc:
                self.dropped[exc.code] += 1
                continue
            if packet.sender.encode() != frames[0]:
                self.dropped["sender_mismatch"] += 1
                continue
            self.deliver(packet)
        else:
            self.loop.call_soon(self._drain)  # more waiting: let others run first

    def add_peer(self, node_id: str, address: str | None) -> None:
        if address and not self.closed:
            self.peer_transport.add_peer(node_id, address)

    def remove_peer(self, node_id: str) -> None:
        if not self.closed:
            self.peer_transport.remove_peer(node_id)

    def poll(self) -> None:
        if not self.closed:
            self.peer_transport.poll_monitors()
            self._drain()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self._fd)
        self.peer_transport.close()
        self.ctx.term()
