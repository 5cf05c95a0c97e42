"""The node host's ZeroMQ shell: the I/O around a sans-I/O ``Host``.

One ROUTER in (peers' DEALERs connect to it), one DEALER per peer node out
(identity = this node's id; ``ZMQ_IMMEDIATE``, a bounded queue, zero linger,
as ``nodes.transport``: a dead peer never blocks the loop). Every frame is a
``GroupBatch`` (``nodes.codec`` frame 8): all the groups' messages from one
node to another in one turn. The loop::

    wait for a frame or the next tick
    receive every waiting batch        -> host.receive
    tick, if due                       -> host.tick
    while the host has work: turn      -> one storage sync, then the batches go

``python -m nodes.host.shell`` runs one node host process for ``arena bench
groups``: it creates the groups, places their first leaders, and answers a
control socket (status, a write load) so the benchmark can measure it from
outside. Its storage is ``MemoryWal`` (in memory), or with ``--data-dir`` the
shared write-ahead log (``nodes.storage.shared.SharedWal``): every group on disk,
one fsync per loop turn for all of them; a restarted process reopens the
directory and hosts again every group it holds.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import cast

import msgpack
import zmq
from zmq.utils.monitor import parse_monitor_message

from nodes import codec
from nodes.raft.errors import NotLeader, TransferInProgress
from nodes.raft.ready import Role
from nodes.storage.shared import SharedWal

from .host import Batch, GroupMessage, Host, HostOptions, Turn
from .storage import HostStorage, MemoryWal

log = logging.getLogger("arena.host")

SEND_HWM = 10_000
MAX_TICKS_PER_STEP = 2
CAMPAIGNS_PER_STEP = 25


class HostShell:
    def __init__(
        self,
        host: Host,
        cluster_id: str,
        bind: str,
        peers: dict[str, str],
        tick_s: float = 0.01,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        on_turn: Callable[[Turn], None] | None = None,
    ) -> None:
        self.host = host
        self.cluster_id = cluster_id
        self.tick_s = tick_s
        self.on_turn = on_turn
        self.ctx = ctx or zmq.Context.instance()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(bind)
        self.dealers: dict[str, zmq.Socket[bytes]] = {}
        self.monitors: dict[zmq.Socket[bytes], str] = {}  # a dropped connection: the peer is down
        for peer, addr in peers.items():
            if peer != host.id:
                d = self.ctx.socket(zmq.DEALER)
                d.setsockopt_string(zmq.IDENTITY, host.id)
                d.setsockopt(zmq.LINGER, 0)
                d.setsockopt(zmq.SNDHWM, SEND_HWM)
                d.setsockopt(zmq.IMMEDIATE, 1)
                d.setsockopt(zmq.RECONNECT_IVL, 50)
                d.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
                mon = d.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
                d.connect(addr)
                self.dealers[peer] = d
                self.monitors[mon] = peer
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        for mon in self.monitors:
            self.poller.register(mon, zmq.POLLIN)
        self.dropped: Counter[str] = Counter()
        self.sent = self.received = 0
        self.heard_from: set[str] = set()  # peers a batch came from, ever
        self._next_tick = time.monotonic() + tick_s

    def register(self, sock: zmq.Socket[bytes]) -> None:
        """Wake the loop for another socket too (``step`` returns its readiness)."""
        self.poller.register(sock, zmq.POLLIN)

    def step(self) -> set[zmq.Socket[bytes]]:
        """One loop iteration; returns the other registered sockets that are readable."""
        # whole milliseconds, rounded up: a timeout rounded down to 0 would spin
        timeout_ms = max(0, math.ceil((self._next_tick - time.monotonic()) * 1000))
        ready = dict(self.poller.poll(timeout_ms))
        if self.router in ready:
            self._receive()
        for mon, peer in self.monitors.items():
            if mon in ready:
                self._watch(mon, peer)
        now = time.monotonic()
        if now >= self._next_tick:
            # late ticks are dropped, not caught up (etcd's ticker does the same): an
            # overloaded loop slows its groups' clocks instead of timing out every
            # election and every peer node at once, which would only add load
            ticks = 0
            while now >= self._next_tick:
                self._next_tick += self.tick_s
                ticks += 1
            for _ in range(min(ticks, MAX_TICKS_PER_STEP)):
                self.host.tick()
                self.flush()
        self.flush()
        return {s for s in ready if s is not self.router and s not in self.monitors}

    def flush(self) -> None:
        host = self.host
        while host.has_work():
            turn = host.turn()
            for b in turn.batches:
                self._send(b)
            if self.on_turn is not None:
                self.on_turn(turn)

    def _receive(self, limit: int = 10_000) -> None:
        router, host, cid = self.router, self.host, self.cluster_id
        for _ in range(limit):
            if not cast(int, router.get(zmq.EVENTS)) & zmq.POLLIN:
                break
            parts = router.recv_multipart(zmq.NOBLOCK)
            if len(parts) != 2:
                self.dropped["bad_envelope"] += 1
                continue
            try:
                sender, recipient, items = codec.decode_batch(parts[1], cid)
            except codec.ProtocolError as e:
                self.dropped[e.code] += 1
                continue
            if sender.encode() != parts[0]:
                self.dropped["sender_mismatch"] += 1
                continue
            self.received += 1
            self.heard_from.add(sender)
            host.receive(
                Batch(sender, recipient, tuple(GroupMessage(g, m, q) for g, q, m in items))
            )

    def _watch(self, mon: zmq.Socket[bytes], peer: str) -> None:
        while True:
            try:
                ev = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if ev["event"] == zmq.EVENT_DISCONNECTED:
                self.host.node_unreachable(peer)

    def _send(self, b: Batch) -> None:
        d = self.dealers.get(b.recipient)
        if d is None:
            self.dropped["unknown_peer"] += 1
            return
        items = [(gm.group, gm.quiesce, gm.msg) for gm in b.messages]
        try:
            d.send(codec.encode_batch(self.cluster_id, b.sender, b.recipient, items), zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped["peer_queue_full_or_down"] += 1

    def close(self) -> None:
        for d in self.dealers.values():
            d.disable_monitor()
            d.close(0)
        for mon in self.monitors:
            mon.close(0)
        self.router.close(0)


# --- the benchmark's node host process ----------------------------------------------------


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan if the bench dies
    except OSError:
        pass


class BenchNode:
    """A node host with placed groups, a write load and a control socket."""

    def __init__(self, args: argparse.Namespace) -> None:
        ids = args.ids.split(",")
        addrs = dict(zip(ids, args.peers.split(","), strict=True))
        self.ids = ids
        self.args = args
        storage: HostStorage = MemoryWal()
        if args.data_dir:
            # witness: a disk that drops the last synced records at a record boundary is
            # caught too (one more fsync a turn for all groups; issue 11's guarantee)
            storage = cast(HostStorage, SharedWal(Path(args.data_dir), node_id=args.id,
                                                  cluster_id="bench", witness=True))
        self.storage = storage
        self.host = Host(args.id, storage, HostOptions(), seed=args.seed)
        self.host.reopen()  # a durable restart: every group the directory holds
        for nid in ids:
            self.host.add_node(nid)
        self.shell = HostShell(
            self.host, "bench", addrs[args.id], addrs, args.tick_ms / 1000, on_turn=self._on_turn
        )
        self.control = self.shell.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.bind(args.control)
        self.shell.register(self.control)
        # per group: (term, monotonic time) of this node's first commit as its leader
        self.led_at: dict[int, tuple[int, float]] = {}
        self.load_until = 0.0
        self.load_reply: list[bytes] | None = None
        self.window = 1
        self.outstanding: Counter[int] = Counter()
        self.commits = 0
        self.load_started = 0.0
        self.to_campaign: list[int] = []  # placed first leaders, CAMPAIGNS_PER_STEP at a time
        self.led: set[int] = set()  # groups this node leads (from the turns' leader changes)
        self.to_hand_over: list[int] = []  # led here, placed elsewhere: transfer, a few a step

    def _on_turn(self, turn: Turn) -> None:
        now = time.monotonic()
        groups = self.host.groups
        for gid, leader in turn.leaders.items():
            if leader == self.host.id:
                self.led.add(gid)
            else:
                self.led.discard(gid)
        for a in turn.applied:
            g = groups.get(a.group)
            if g is None or g.raft.role is not Role.LEADER or a.term != g.raft.term:
                continue
            if self.led_at.get(a.group, (0, 0.0))[0] != a.term:
                self.led_at[a.group] = (a.term, now)
            if a.result is not None and self.outstanding[a.group] > 0:
                self.outstanding[a.group] -= 1
                self.commits += 1

    def _pump_load(self) -> None:
        if not self.load_until:
            return
        if time.monotonic() >= self.load_until:
            elapsed = time.monotonic() - self.load_started
            assert self.load_reply is not None
            self.control.send_multipart(
                [*self.load_reply, msgpack.packb({"commits": self.commits, "seconds": elapsed})]
            )
            self.load_until, self.load_reply = 0.0, None
            return
        groups = self.host.groups
        for gid in list(self.led):
            g = groups[gid]
            if g.raft.role is Role.LEADER:
                while self.outstanding[gid] < self.window:
                    try:
                        self.host.propose(gid, b"w")
                    except (NotLeader, TransferInProgress):
                        break
                    self.outstanding[gid] += 1

    def _control(self) -> None:
        while cast(int, self.control.get(zmq.EVENTS)) & zmq.POLLIN:
            *route, body = self.control.recv_multipart()
            req = msgpack.unpackb(body)
            op = req.get("op")
            if op == "status":
                st = self.host.status()
                st["cpu"] = time.process_time()
                st["now"] = time.monotonic()
                st["led_at"] = {gid: t for gid, (_, t) in self.led_at.items()}
                st["leaders"] = {gid: g.raft.leader_id for gid, g in self.host.groups.items()}
                st["heard_from"] = sorted(self.shell.heard_from)
                self.control.send_multipart([*route, msgpack.packb(st)])
            elif op == "create":
                # once every node hears every other: a first leader's campaign is not lost
                # (the campaigns come with the next op, once every node has every group)
                for gid in range(self.args.groups):
                    if gid not in self.host.groups:
                        self.host.create_group(gid, self.ids, asleep=True)
                self.control.send_multipart([*route, msgpack.packb({"created": self.args.groups})])
            elif op == "campaign":
                for gid, g in self.host.groups.items():
                    if self._placed(gid) == self.args.id and g.raft.role is not Role.LEADER:
                        self.to_campaign.append(gid)
                self.control.send_multipart([*route, msgpack.packb({"ok": True})])
            elif op == "place":
                # leaders elected elsewhere than placed (a recovering SharedWal replica's
                # campaign waits for its term probe, other timers may fire first): hand over
                self.to_hand_over = [
                    gid for gid, g in self.host.groups.items()
                    if g.raft.role is Role.LEADER and self._placed(gid) != self.args.id
                ]
                self.control.send_multipart(
                    [*route, msgpack.packb({"handing_over": len(self.to_hand_over)})]
                )
            elif op == "load":
                self.window = int(req.get("window", 1))
                self.commits = 0
                self.outstanding.clear()
                self.load_started = time.monotonic()
                self.load_until = self.load_started + float(req["seconds"])
                self.load_reply = route
            else:
                self.control.send_multipart(
                    [*route, msgpack.packb({"error": f"unknown op {op!r}"})]
                )

    def _placed(self, gid: int) -> str:
        """The node placed to lead group ``gid`` (--place)."""
        return str(self.ids[0] if self.args.place == "one" else self.ids[gid % len(self.ids)])

    def run(self) -> None:
        stop = False

        def on_term(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_term)
        while not stop:
            readable = self.shell.step()
            if self.control in readable:
                self._control()
            if self.to_campaign:
                # a few elections per loop turn: a thousand at once would starve the
                # new leaders' first heartbeats and set the followers' timers off
                for gid in self.to_campaign[:CAMPAIGNS_PER_STEP]:
                    self.host.campaign(gid)
                del self.to_campaign[:CAMPAIGNS_PER_STEP]
            if self.to_hand_over:
                for gid in self.to_hand_over[:CAMPAIGNS_PER_STEP]:
                    try:
                        self.host.transfer_leadership(gid, self._placed(gid))
                    except NotLeader:
                        pass  # it moved on its own: the bench's wait says where it is
                del self.to_hand_over[:CAMPAIGNS_PER_STEP]
            self._pump_load()
            self.shell.flush()
        if isinstance(self.storage, SharedWal):
            self.storage.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m nodes.host.shell",
        description="One node host process (for arena bench groups).",
    )
    p.add_argument("--id", required=True)
    p.add_argument("--ids", required=True, help="every node id, comma-separated")
    p.add_argument("--peers", required=True, help="every node's peer address, in --ids order")
    p.add_argument("--control", required=True, help="address of the control socket to bind")
    p.add_argument("--groups", type=int, default=1000)
    p.add_argument(
        "--place",
        choices=["spread", "one"],
        default="spread",
        help="first leaders: spread over the nodes, or all on the first",
    )
    p.add_argument("--tick-ms", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data-dir",
        default=None,
        help="keep every group in a shared write-ahead log in this directory (one fsync "
        "per loop turn); reopened on restart. Default: in memory",
    )
    args = p.parse_args(argv)
    _die_with_parent()
    BenchNode(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
