"""The node process: one event loop that drives the Raft core over ZeroMQ.

Each loop turn: wait on the sockets until the next tick is due; feed peer
messages to the core; tick if a tick is due; then take one budget of client
requests (proposals, reads, snapshots, status, admin); and handle every Ready
in the contract's order -- persist (one fsync) -> send -> apply (and publish,
and answer clients) -> advance. Proposals that arrive together share one Ready,
one fsync and one AppendEntries per follower (group commit and batching come
from the loop).

Under a flood (issue 11) peers and ticks never wait behind clients: client work
per turn is bounded (``CLIENT_BUDGET_*``), the client socket is not read while
the oldest uncommitted proposal is older than ``MAX_PENDING_AGE_S`` (so a
command waits behind a few milliseconds of others' work, not behind a backlog),
and snapshots are paced (``SNAPSHOT_DUTY``). A full disk stops the node with
``DiskFull``.

The server knows no game: it runs the state machines it is given (the CLI
composes the key-value one and the game's). A machine may offer
``due_command(now_ms) -> dict | None``: the leader proposes it (the game's
clock ticks that end rounds on the leader's time, carried in the log).

Security (``nodes.security``): with ``[security] curve = true`` every socket is
CURVE and the loop also answers ZAP requests (only listed keys get in); a
request under a session-bound client id must carry its session key; admin
requests need the admin key; each client id and each connection (routing
identity) gets a token bucket (``--rate-limit`` or ``[options] rate_limit``; on
by default with CURVE). A connection over its limit is refused before its
request is decoded, and beyond twice the limit not answered at all. The publish
socket's subscriptions are bounded (``transport.Publisher``).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import zmq

from . import codec, security
from .clusterfile import ClusterFile
from .codec import ClusterInfo, ErrorInfo, Request, Response, Update
from .host.driver import ReadyDriver
from .raft.core import RaftConfig, RaftNode
from .raft.errors import (
    ConfigChangeInProgress,
    InvalidConfigChange,
    NotLeader,
    RaftError,
    TransferInProgress,
)
from .raft.messages import ChangeKind, ClusterConfig, ConfigChange, EntryKind, Snapshot
from .raft.ready import Ready, Role
from .statemachine import (
    BATCH_MACHINE,
    BadCommand,
    Replicated,
    StateMachine,
    decode_command,
    encode_command,
)
from .storage import DiskStorage
from .transport import PeerTransport, Publisher

log = logging.getLogger("arena.node")

CLUSTER_INFO_EVERY_S = 0.1
# Client work per loop turn: at most this many requests, or this much time, whichever
# ends first (checked every CLIENT_BUDGET_CHECK requests). The rest waits in the socket.
# The ROUTER reads its connections round-robin (libzmq fair-queues per routing
# identity), so one flooding connection takes one slot per round, not the budget.
CLIENT_BUDGET_REQUESTS = 64
CLIENT_BUDGET_S = 0.002
CLIENT_BUDGET_CHECK = 16
CLIENT_SNDHWM = 10_000
# Admission: while the oldest uncommitted proposal is older than this, no new client
# request is read (the socket holds them, and the senders feel it). A client's
# command then waits behind a few milliseconds of others' work at most, however many
# a flooder pipelines; a cluster under no load never defers.
MAX_PENDING_AGE_S = 0.002
SNAPSHOT_BYTES = 4 << 20  # also snapshot once this much log was applied since the last
# A snapshot stops the loop while it is taken (tens of ms with many client sessions):
# after one that took t, the next waits t / SNAPSHOT_DUTY unless SNAPSHOT_BYTES of log
# piled up, so snapshots take at most this share of the loop's time.
SNAPSHOT_DUTY = 0.02
MAX_BUCKETS = 10_000  # above this, buckets of idle clients (full again) are forgotten


class DiskFull(Exception):
    """The node's file system has no space left (ENOSPC): the node stops. Nothing
    acknowledged is lost, because nothing is acknowledged before it is fsynced."""

    def __init__(self, node_id: str, data_dir: Path, error: OSError) -> None:
        where = f" while writing {error.filename}" if error.filename else ""
        super().__init__(
            f"node {node_id} stopped: the file system holding its data directory {data_dir} "
            f"is full (no space left on device{where}). Nothing acknowledged was lost: the "
            "node acknowledges a vote or an entry only once it is fsynced, and it stopped "
            "at the first write that failed. Free space there (or move the directory to a "
            f"larger disk), then start the node again (arena restart {node_id}); it catches "
            "up from the others.")
        self.data_dir = data_dir


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass(slots=True)
class NodeOptions:
    node_id: str
    cluster: ClusterFile
    data_dir: Path
    fsync: bool = True
    max_frame: int = codec.DEFAULT_MAX_FRAME
    admin_key: str | None = None
    rate_limit_per_s: float = 0.0  # per client id; 0 = off
    rate_burst: int = 200
    seed: int | None = None  # election jitter; random when None
    join: bool = False  # a new server: no configuration until the leader sends the log


@dataclass(slots=True)
class _PendingSubmit:
    ident: bytes
    req_id: int
    term: int
    at: float = 0.0  # time.monotonic() when proposed


@dataclass(slots=True)
class _TokenBucket:
    tokens: float
    at: float


@dataclass(slots=True)
class Counters:
    proposals: int = 0
    applied: int = 0
    reads: int = 0
    fsyncs: int = 0
    updates_published: int = 0
    updates_unwatched: int = 0  # applied while nobody subscribed: not even encoded
    stream_updates_published: int = 0  # per-topic streams of a fed machine (e.g. room/<id>/)
    stream_updates_unwatched: int = 0
    client_deferred_turns: int = 0  # loop turns that left client requests waiting
    client_errors: Counter[str] = field(default_factory=Counter)
    client_dropped: Counter[str] = field(default_factory=Counter)


class NodeServer:
    def __init__(
        self,
        opts: NodeOptions,
        machines: Iterable[StateMachine],
        on_event: Callable[[str, dict], None] | None = None,
        feeds: dict[str, Any] | None = None,
    ) -> None:
        """``feeds``: per machine name, what is published of it and what clients may
        read of it (e.g. ``nodes.rooms_feed.RoomsFeed``); a machine without a feed
        is published and read as it is."""
        self.opts = opts
        self.id = opts.node_id
        self.cluster = opts.cluster
        self.me = self.cluster.node(self.id)
        self.on_event = on_event or (lambda name, data: None)
        timing = self.cluster.timing
        hb, emin, emax = timing.ticks()
        self.tick_s = timing.tick_ms / 1000.0
        self.raft_config = RaftConfig(heartbeat_ticks=hb, election_ticks_min=emin,
                                      election_ticks_max=emax, lazy_commit_notify=True)
        self.stopping = False
        self.counters = Counters()
        self.started_at = time.time()

        # founders start from the cluster file's voters; a joining server knows no
        # configuration and waits to learn it from the leader (it is added as a learner)
        initial = ClusterConfig() if opts.join else ClusterConfig(frozenset(self.cluster.ids()))
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        self.storage = DiskStorage(
            opts.data_dir, self.id, self.cluster.cluster_id, initial_config=initial,
            fsync=opts.fsync, compress_snapshots=self.cluster.compression,
        )
        seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(8), "big")
        self.raft = RaftNode(self.id, self.storage, Random(seed), self.raft_config)
        self.sm = Replicated(machines)
        self.feeds: dict[str, Any] = {n: f for n, f in (feeds or {}).items() if n in self.sm.machines}
        self._ready_driver: ReadyDriver | None = None  # built on first use, anew for a new core
        snap = self.storage.snapshot()
        if snap is not None:
            self.sm.restore(snap.data)
        self.last_applied = self.raft.applied
        self._bytes_since_snapshot = 0
        self._next_snapshot_at = 0.0  # clock() before which no snapshot is due
        self.clock: Callable[[], float] = time.monotonic  # paces snapshots (tests fake it)
        self.addresses = {n.id: n for n in self.cluster.nodes}

        # rate limit: the command line's, else the cluster file's
        self.rate_limit = opts.rate_limit_per_s or self.cluster.rate_limit
        self.rate_burst = opts.rate_burst if opts.rate_limit_per_s else self.cluster.rate_burst
        self.keys = security.node_keys(self.cluster, self.id)  # None: plaintext
        security.check_admin_key(self.cluster)

        self.ctx = zmq.Context()
        # the ZAP handler is bound before any CURVE socket, so no handshake goes unvetted
        self.zap = security.zap_for(self.ctx, self.cluster) if self.keys else None
        peers = {n.id: n.raft for n in self.cluster.nodes}
        self.transport = self._make_transport(peers)
        self.clients = self.ctx.socket(zmq.ROUTER)
        self.clients.setsockopt(zmq.LINGER, 0)
        self.clients.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.clients.setsockopt(zmq.MAXMSGSIZE, opts.max_frame + 1024)
        # answers queued for one client that does not read them: beyond this they are
        # dropped (a pipelining client has its window in flight, far fewer)
        self.clients.setsockopt(zmq.SNDHWM, CLIENT_SNDHWM)
        if self.keys is not None:
            security.make_server(self.clients, self.keys, security.CLIENT_DOMAIN)
        self.clients.bind(self.me.client)
        # XPUB: the subscriptions come back to us, so updates nobody follows (the
        # usual case on a follower) are not even encoded; they are bounded too
        fixed = [codec.UPDATE_TOPIC, codec.CLUSTER_TOPIC]
        prefixes: list[bytes] = []
        max_bytes = 0
        for feed in self.feeds.values():
            fixed += feed.fixed_topics
            prefixes += feed.topic_prefixes
            max_bytes = max(max_bytes, feed.topic_max_bytes)
        self.publisher = Publisher(self.ctx, self.me.pub, tuple(fixed), self.keys,
                                   security.CLIENT_DOMAIN, on_rebuild=self._on_publish_rebuilt,
                                   topic_prefixes=tuple(prefixes), topic_max_bytes=max_bytes)
        self.poller = zmq.Poller()
        self._register_poll()

        self.pending_submits: dict[int, _PendingSubmit] = {}
        self.pending_reads: list[tuple[int, bytes, int, str, dict]] = []  # (index, ...)
        self._read_ctx = 0
        self._reads_by_ctx: dict[int, tuple[bytes, int, str, dict]] = {}
        self._timer_seq: dict[str, int] = {}
        self._timer_inflight: dict[str, int] = {}
        self._buckets: dict[str, _TokenBucket] = {}
        self._last_info = 0.0
        self._next_tick = time.monotonic() + self.tick_s
        self._conn_buckets: dict[bytes, _TokenBucket] = {}  # per routing identity
        self._refusal_buckets: dict[bytes, _TokenBucket] = {}  # answered refusals, same
        self.leader_changes: list[tuple[float, str | None, int]] = []
        log.info("node %s starting: term %d, commit %d, applied %d, log %d entries, seed %d",
                 self.id, self.raft.term, self.raft.commit, self.raft.applied,
                 self.raft.log.last_index - self.raft.log.offset_index, seed)

    def _make_transport(self, peers: dict[str, str]) -> PeerTransport:
        return PeerTransport(self.ctx, self.id, self.cluster.cluster_id, self.me.raft, peers,
                             self.opts.max_frame, on_event=self._peer_event, curve=self.keys,
                             peer_keys=self.cluster.security.server_public_keys)

    def _register_poll(self) -> None:
        self.poller = zmq.Poller()
        self.poller_without_clients = zmq.Poller()
        for s in [*self.transport.sockets(), self.publisher.socket]:
            self.poller.register(s, zmq.POLLIN)
            self.poller_without_clients.register(s, zmq.POLLIN)
        self.poller.register(self.clients, zmq.POLLIN)
        if self.zap is not None:
            self.poller.register(self.zap.socket, zmq.POLLIN)
            self.poller_without_clients.register(self.zap.socket, zmq.POLLIN)

    # --- the loop -------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        try:
            self.serve_forever()
        except OSError as e:
            if is_disk_full(e):
                raise DiskFull(self.id, self.opts.data_dir, e) from e
            raise
        finally:
            self.close()

    def stop(self) -> None:
        self.stopping = True

    def serve_forever(self) -> None:
        self._next_tick = time.monotonic() + self.tick_s
        while not self.stopping:
            if self._clients_deferred():
                # wait for peers (the acks that commit) or the tick, not for clients:
                # polling a readable socket we will not read would spin
                timeout = min(1, poll_timeout_ms(self._next_tick, time.monotonic()))
                readable = dict(self.poller_without_clients.poll(timeout))
            else:
                readable = dict(self.poller.poll(poll_timeout_ms(self._next_tick,
                                                                 time.monotonic())))
            self.turn(readable)

    def turn(self, readable: dict | None = None) -> None:
        """One pass over the inputs ``poll`` found readable (all, when not given),
        then the Ready loop. Probing idle sockets costs an exception each, on the
        write path of every hop.

        Order matters under load: peer traffic and the ticks that are due come
        first, then at most one budget of client requests (``CLIENT_BUDGET_*``).
        Client traffic, however heavy, delays a heartbeat by one budget at most;
        what is left waits in the socket for the next turn."""
        def due(sock: zmq.Socket) -> bool:
            return readable is None or sock in readable

        if self.zap is not None and due(self.zap.socket):
            self.zap.handle()
        if readable is None or any(m in readable for m in self.transport.monitors):
            self.transport.poll_monitors()
        if due(self.transport.router):
            self._serve_peers()
        self._tick_if_due()
        if due(self.publisher.socket):
            self._track_subscriptions()
        if due(self.clients):
            if self._clients_deferred():
                self.counters.client_deferred_turns += 1
            else:
                self._serve_clients()
                self._drain_ready()
        now = time.monotonic()
        if now - self._last_info >= CLUSTER_INFO_EVERY_S:
            self._last_info = now
            self._publish_info()

    def _clients_deferred(self) -> bool:
        """True while the oldest uncommitted client proposal is older than
        ``MAX_PENDING_AGE_S`` (``pending_submits`` is in index order)."""
        if not self.pending_submits:
            return False
        oldest = next(iter(self.pending_submits.values()))
        return time.monotonic() - oldest.at > MAX_PENDING_AGE_S

    def _serve_peers(self) -> None:
        for m in self.transport.receive():
            self.raft.step(m)
        self._drain_ready()

    def _tick_if_due(self) -> None:
        now = time.monotonic()
        ticks = 0
        while now >= self._next_tick:
            self._next_tick += self.tick_s
            ticks += 1
        if not ticks:
            return
        # after a pause (SIGSTOP) count at most one election timeout's worth
        for _ in range(min(ticks, self.raft_config.election_ticks_max)):
            self.raft.tick()
            self._drain_ready()
        self._leader_timers()
        self._drain_ready()

    # --- the Ready contract ------------------------------------------------------------

    def _drain_ready(self) -> None:
        # the Ready contract is driven (and asserted) by nodes.host.driver; this node's
        # part is what to persist, where to send, and how to apply
        driver = self._ready_driver
        if driver is None or driver.raft is not self.raft:
            driver = self._ready_driver = ReadyDriver(
                self.raft, self._persist, self.transport.send, self._apply_ready,
                self._after_ready)
        driver.drain()

    def _persist(self, rd: Ready) -> None:
        self.storage.save(rd.hard_state, rd.entries, rd.snapshot)  # one group commit
        self.counters.fsyncs += 1

    def _apply_ready(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.sm.restore(rd.snapshot.data)
            for feed in self.feeds.values():
                feed.reset()
            self.last_applied = rd.snapshot.meta.index
            self._publish(Update(self.last_applied, rd.snapshot.meta.term, "", "", 0,
                                 {"snapshot": True}, []))
        for e in rd.committed_entries:
            self._apply_entry(e.index, e.term, e.kind, e.data)
        for rs in rd.read_states:
            req = self._reads_by_ctx.pop(rs.context, None)  # type: ignore[arg-type]
            if req is not None:
                self.pending_reads.append((rs.index, *req))
        for ctx in rd.aborted_reads:
            req = self._reads_by_ctx.pop(ctx, None)  # type: ignore[arg-type]
            if req is not None:
                self._reply_error(req[0], req[1], "not_leader", "leadership was lost; retry")
        if rd.soft_state is not None:
            self._on_soft_state(rd)

    def _after_ready(self, rd: Ready) -> None:
        self._serve_reads()
        self._maybe_snapshot()

    def _apply_entry(self, index: int, term: int, kind: EntryKind, data: bytes) -> None:
        self.last_applied = index
        self.counters.applied += 1
        self._bytes_since_snapshot += len(data)
        if kind is EntryKind.CONFIG:
            self._on_config_applied()
            self._publish(Update(index, term, "", "", 0, {"config": self.raft.status()}, []))
            self._answer_submit(index, term, {"ok": True, "config": True})
            return
        applied = self.sm.apply_entry(index, term, data)
        self._answer_submit(index, term, applied.result)  # the writer first, then watchers
        if self.feeds:
            self._publish_fed(index, term, applied, data)
        else:
            self._publish(Update(index, term, applied.machine, applied.client_id, applied.seq,
                                 applied.result, applied.events, command=applied.command,
                                 clock_ms=applied.clock_ms))
        if applied.client_id.startswith("@"):
            self._timer_inflight.pop(applied.client_id.split("/")[0][1:], None)

    def _answer_submit(self, index: int, term: int, result: object) -> None:
        p = self.pending_submits.pop(index, None)
        if p is None:
            return
        if p.term != term:
            # another entry took that index: ours was never committed (retry is safe)
            self._reply_error(p.ident, p.req_id, "not_leader",
                              "the proposal was overwritten by a new leader; retry",
                              leader=self.raft.leader_id)
            return
        self._reply(p.ident, Response(p.req_id, True, result, None, index))

    def _on_soft_state(self, rd: Ready) -> None:
        s = rd.soft_state
        assert s is not None
        log.info("node %s: %s in term %d, leader %s", self.id, s.role.value, s.term, s.leader_id)
        self.leader_changes.append((time.time(), s.leader_id, s.term))
        if s.role is Role.LEADER:
            self.on_event("leader:elected", {"leader_id": self.id, "term": s.term})
        elif s.leader_id is not None:
            self.on_event("leader:elected", {"leader_id": s.leader_id, "term": s.term})
        if s.role is not Role.LEADER and self.pending_submits:
            # proposals in flight may or may not commit: the client retries with the
            # same sequence number and the session table applies it at most once
            for p in self.pending_submits.values():
                self._reply_error(p.ident, p.req_id, "not_leader",
                                  "leadership changed while the command was in flight; retry "
                                  "(the retry is applied at most once)", leader=s.leader_id)
            self.pending_submits.clear()
        self._publish_info()

    def _on_config_applied(self) -> None:
        cfg = self.raft.config
        for nid in cfg.members():
            addr = self.addresses.get(nid)
            if addr is not None:
                self.transport.add_peer(nid, addr.raft)
        for peer in list(self.transport.dealers):
            if peer not in cfg.members():
                self.transport.remove_peer(peer)
        self._register_poll()
        if self.raft.removed:
            log.warning("node %s was removed from the cluster", self.id)

    def _maybe_snapshot(self) -> None:
        """Every ``snapshot_interval`` applied entries, or once the entries applied
        since the last snapshot hold ``SNAPSHOT_BYTES`` (a batch is one entry of many
        commands: counting entries alone would let the log, held in memory, grow);
        paced by ``SNAPSHOT_DUTY``."""
        interval = self.cluster.snapshot_interval
        if not interval:
            return
        applied = self.raft.applied
        full = self._bytes_since_snapshot >= SNAPSHOT_BYTES
        if applied - self.raft.log.offset_index < interval and not full:
            return
        started = self.clock()
        if started < self._next_snapshot_at and not full:
            return
        meta = self.raft.snapshot_meta(applied)
        self.storage.compact(Snapshot(meta, self.sm.snapshot()))
        self.raft.compact(applied)
        self._bytes_since_snapshot = 0
        took = self.clock() - started
        self._next_snapshot_at = started + took / SNAPSHOT_DUTY

    def _serve_reads(self) -> None:
        if not self.pending_reads:
            return
        still = []
        for item in self.pending_reads:
            index, ident, req_id, machine, query = item
            if index <= self.last_applied:
                self._reply(ident, Response(req_id, True, self._query(machine, query), None,
                                            self.last_applied))
            else:
                still.append(item)
        self.pending_reads = still

    def _query(self, machine: str, query: dict) -> object:
        try:
            result = self.sm.query(machine, query)
        except (KeyError, ValueError) as e:
            return {"ok": False, "error": "bad_query", "message": str(e)}
        feed = self.feeds.get(machine)
        return result if feed is None else feed.query(result, self.raft.leader_id)

    def _client_snapshot(self, name: str) -> object:
        """A machine's state as a client may read it (its feed's view, if it has one)."""
        feed = self.feeds.get(name)
        machine = self.sm.machines[name]
        return machine.snapshot() if feed is None else feed.snapshot(machine)

    # --- leader timers (e.g. the game clock) ---------------------------------------------

    def _leader_timers(self) -> None:
        if self.raft.role is not Role.LEADER or self.raft.lead_transferee is not None:
            return
        now_ms = int(time.time() * 1000)
        for name, machine in self.sm.machines.items():
            due = getattr(machine, "due_command", None)
            if due is None or name in self._timer_inflight:
                continue
            cmd = due(now_ms)
            if cmd is None:
                continue
            client = f"@{name}/{self.id}/{self.raft.term}"
            seq = self._timer_seq.get(client, 0) + 1
            self._timer_seq[client] = seq
            try:
                index = self.raft.propose(encode_command(client, seq, now_ms, name, cmd))
            except RaftError:
                return
            self._timer_inflight[name] = index

    # --- clients -----------------------------------------------------------------------

    def _serve_clients(self) -> None:
        clients = self.clients
        stop_at = time.monotonic() + CLIENT_BUDGET_S
        for n in range(CLIENT_BUDGET_REQUESTS):
            if n and n % CLIENT_BUDGET_CHECK == 0 and time.monotonic() >= stop_at:
                return
            # asking first is cheaper than the exception an empty recv raises
            if not clients.get(zmq.EVENTS) & zmq.POLLIN:
                return
            try:
                frames = clients.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                self.counters.client_dropped["bad_envelope"] += 1
                continue
            ident, payload = frames
            # per connection, before anything is decoded: a connection far over its
            # limit costs a recv and a lookup, not a decode and an answer
            over_connection_limit = not self._admit_connection(ident)
            if over_connection_limit and not self._take(self._refusal_buckets, ident, 1):
                self.counters.client_dropped["rate_limited_connection"] += 1
                continue
            try:
                req = codec.decode_request(payload, self.cluster.cluster_id, self.opts.max_frame)
            except codec.ProtocolError as e:
                self.counters.client_dropped[e.code] += 1
                self._reply(ident, codec.protocol_error_response(e))
                continue
            if over_connection_limit:
                self._reply_error(ident, req.req_id, "rate_limited",
                                  f"this connection exceeds {self.rate_limit:g} requests/s "
                                  "(whatever its client ids); slow down")
                continue
            if not security.session_ok(req.client_id, req.body.get(security.SESSION_KEY_FIELD)):
                # before the rate limit, so nobody can drain another client's bucket either
                self._reply_error(ident, req.req_id, "unauthorized",
                                  f"client id {req.client_id} is bound to a session key and the "
                                  "request does not carry it; use your own client id")
                continue
            if not self._admit(req.client_id, _request_cost(req)):
                self._reply_error(ident, req.req_id, "rate_limited",
                                  f"client {req.client_id} exceeds "
                                  f"{self.rate_limit:g} requests/s; slow down")
                continue
            try:
                self._handle_request(ident, req)
            except Exception as e:  # a bad request must never stop the node
                log.exception("request %s from %s failed", req.kind, req.client_id)
                self._reply_error(ident, req.req_id, "bad_request", f"{type(e).__name__}: {e}")

    def _admit(self, client_id: str, cost: int = 1) -> bool:
        """Token bucket per client: each command costs a token (a batch costs one per
        command it carries, so batching is no way around the limit)."""
        return self._take(self._buckets, client_id, cost)

    def _admit_connection(self, ident: bytes) -> bool:
        """Token bucket per connection (ZeroMQ routing identity), one token a request:
        a client that takes a new client id for every request is still one connection."""
        return self._take(self._conn_buckets, ident, 1)

    def _take(self, buckets: dict, key: str | bytes, cost: int) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket (full when new); False if it
        holds fewer. Always True when no rate limit is set."""
        rate = self.rate_limit
        if rate <= 0:
            return True
        now = time.monotonic()
        burst = float(self.rate_burst)
        b = buckets.get(key)
        if b is None:
            if len(buckets) >= MAX_BUCKETS:
                full = [k for k, v in buckets.items() if v.tokens + (now - v.at) * rate >= burst]
                for k in full:
                    del buckets[k]
            b = buckets[key] = _TokenBucket(burst, now)
        b.tokens = min(burst, b.tokens + (now - b.at) * rate)
        b.at = now
        if b.tokens < min(cost, burst):
            return False
        b.tokens -= min(cost, burst)
        return True

    def _handle_request(self, ident: bytes, req: Request) -> None:
        kind, body = req.kind, req.body
        if kind == "submit":
            self._submit(ident, req)
        elif kind == "read":
            self._read(ident, req)
        elif kind == "snapshot":
            names = body.get("machines") or list(self.sm.machines)
            state = {n: self._client_snapshot(n) for n in names if n in self.sm.machines}
            self._reply(ident, Response(req.req_id, True,
                                        {"index": self.last_applied, "machines": state},
                                        None, self.last_applied))
        elif kind in ("status", "hello"):
            self._reply(ident, Response(req.req_id, True, self.status(), None, self.last_applied))
        elif kind == "admin":
            self._admin(ident, req)
        else:
            self._reply_error(ident, req.req_id, "bad_request", f"unknown request kind {kind!r}")

    def _not_leader(self, ident: bytes, req_id: int) -> None:
        leader = self.raft.leader_id
        self._reply_error(ident, req_id, "not_leader",
                          f"node {self.id} is not the leader"
                          + (f"; the leader is {leader}" if leader else "; no leader is known yet"),
                          leader=leader)

    def _submit(self, ident: bytes, req: Request) -> None:
        body = req.body
        machine, seq, cmd = body.get("machine"), body.get("seq"), body.get("cmd")
        if machine == BATCH_MACHINE:
            items = cmd.get("batch") if isinstance(cmd, dict) else None
            if not isinstance(items, list) or not items or not all(
                    isinstance(i, dict) and i.get("m") in self.sm.machines for i in items):
                self._reply_error(ident, req.req_id, "bad_request",
                                  "a batch needs cmd.batch: a non-empty list of {m, cmd} for "
                                  f"machines {sorted(self.sm.machines)}")
                return
        elif not isinstance(machine, str) or machine not in self.sm.machines:
            self._reply_error(ident, req.req_id, "bad_request",
                              f"unknown state machine {machine!r}; this node runs "
                              f"{sorted(self.sm.machines)}")
            return
        if not isinstance(seq, int) or seq < 1 or not isinstance(cmd, dict):
            self._reply_error(ident, req.req_id, "bad_request",
                              "submit needs seq (int >= 1) and cmd (map)")
            return
        first = body.get("first_outstanding")  # thesis 6.3: optional, 1..seq
        if first is not None and (type(first) is not int or not 1 <= first <= seq):
            self._reply_error(ident, req.req_id, "bad_request",
                              f"first_outstanding must be an int from 1 to seq ({seq}), the "
                              f"lowest seq you have no answer for; got {first!r:.40}")
            return
        if req.client_id.startswith("@"):
            self._reply_error(ident, req.req_id, "bad_request", "client ids starting with @ are reserved")
            return
        try:
            data = encode_command(req.client_id, seq, int(time.time() * 1000), machine, cmd,
                                  first)
            index = self.raft.propose(data)
        except NotLeader:
            self._not_leader(ident, req.req_id)
            return
        except TransferInProgress as e:
            self._reply_error(ident, req.req_id, "transfer_in_progress", str(e), leader=e.target)
            return
        except ValueError as e:
            self._reply_error(ident, req.req_id, "bad_request", str(e))
            return
        self.counters.proposals += 1
        self.pending_submits[index] = _PendingSubmit(ident, req.req_id, self.raft.term,
                                                     time.monotonic())

    def _read(self, ident: bytes, req: Request) -> None:
        body = req.body
        machine, query = body.get("machine"), body.get("query")
        if not isinstance(machine, str) or machine not in self.sm.machines or not isinstance(query, dict):
            self._reply_error(ident, req.req_id, "bad_request",
                              "read needs machine (one of "
                              f"{sorted(self.sm.machines)}) and query (map)")
            return
        self.counters.reads += 1
        if not body.get("linearizable", True):
            result = self._query(machine, query)
            if isinstance(result, dict):
                result = {**result, "stale": True, "applied_index": self.last_applied,
                          "node": self.id, "role": self.raft.role.value}
            self._reply(ident, Response(req.req_id, True, result, None, self.last_applied))
            return
        self._read_ctx += 1
        ctx = self._read_ctx
        try:
            self.raft.read_index(ctx)
        except NotLeader:
            self._not_leader(ident, req.req_id)
            return
        self._reads_by_ctx[ctx] = (ident, req.req_id, machine, query)

    def _admin(self, ident: bytes, req: Request) -> None:
        body = req.body
        key = self.opts.admin_key or self.cluster.admin_key
        if not security.admin_key_ok(key, body.get("key")):
            self._reply_error(ident, req.req_id, "unauthorized",
                              "admin commands need the cluster's admin key (--admin-key)")
            return
        action, args = body.get("action"), body.get("args") or {}
        ok = lambda result: self._reply(ident, Response(req.req_id, True, result))  # noqa: E731
        if action == "partition":
            group = set(args.get("nodes", []))
            everyone = set(self.addresses) | set(self.raft.config.members())
            blocked = (everyone - group) if self.id in group else group
            blocked.discard(self.id)
            self.transport.blocked = blocked
            log.warning("node %s: partitioned from %s", self.id, sorted(blocked))
            self.on_event("partition:detected", {"blocked": sorted(blocked)})
            ok({"blocked": sorted(blocked)})
        elif action == "heal":
            self.transport.blocked = set()
            self.on_event("partition:healed", {})
            ok({"blocked": []})
        elif action == "transfer":
            try:
                self.raft.transfer_leadership(str(args.get("to")))
            except NotLeader:
                self._not_leader(ident, req.req_id)
                return
            except InvalidConfigChange as e:
                self._reply_error(ident, req.req_id, "rejected", str(e))
                return
            ok({"transferring_to": args.get("to")})
        elif action in ("add_node", "remove_node"):
            self._membership(ident, req, action, args)
        elif action == "ping":  # changes nothing: lets a tool check its admin key
            ok({"admin": True, "node": self.id})
        elif action == "propose":
            self._admin_propose(ident, req, args)
        else:
            self._reply_error(ident, req.req_id, "bad_request",
                              f"unknown admin action {action!r} (partition, heal, transfer, "
                              "add_node, remove_node, ping, propose)")

    def _admin_propose(self, ident: bytes, req: Request, args: dict) -> None:
        """A command under the reserved client id ``@admin/<node>/<term>`` (machines may
        allow ``@`` ids more than clients, e.g. closing any room); answered when applied."""
        machine, cmd = args.get("machine"), args.get("cmd")
        if machine not in self.sm.machines or not isinstance(cmd, dict):
            self._reply_error(ident, req.req_id, "bad_request",
                              f"propose needs machine (one of {sorted(self.sm.machines)}) and cmd (map)")
            return
        client = f"@admin/{self.id}/{self.raft.term}"
        seq = self._timer_seq.get(client, 0) + 1
        try:
            index = self.raft.propose(encode_command(client, seq, int(time.time() * 1000),
                                                     machine, cmd))
        except NotLeader:
            self._not_leader(ident, req.req_id)
            return
        except (RaftError, ValueError) as e:
            self._reply_error(ident, req.req_id, "rejected", str(e))
            return
        self._timer_seq[client] = seq
        self.pending_submits[index] = _PendingSubmit(ident, req.req_id, self.raft.term,
                                                     time.monotonic())

    def _membership(self, ident: bytes, req: Request, action: str, args: dict) -> None:
        nid = str(args.get("id", ""))
        if action == "add_node":
            addrs = {k: args.get(k) for k in ("raft", "client", "pub")}
            if not all(isinstance(v, str) for v in addrs.values()):
                self._reply_error(ident, req.req_id, "bad_request",
                                  "add_node needs id, raft, client and pub addresses")
                return
            from .clusterfile import NodeAddress

            self.addresses[nid] = NodeAddress(nid, addrs["raft"], addrs["client"], addrs["pub"])
            public_key = args.get("public_key")
            if isinstance(public_key, str) and self.zap is not None:
                self.zap.allow(security.PEER_DOMAIN, public_key, nid)
                self.transport.peer_keys[nid] = public_key
            elif self.keys is not None and nid not in self.transport.peer_keys:
                self._reply_error(ident, req.req_id, "bad_request",
                                  f"the cluster uses CURVE: add_node needs {nid}'s public_key "
                                  "(or its entry in [security] server_public_keys)")
                return
            change = ConfigChange(ChangeKind.ADD_LEARNER, nid)
        else:
            change = ConfigChange(ChangeKind.REMOVE, nid)
        try:
            index = self.raft.propose_config_change(change)
        except NotLeader:
            self._not_leader(ident, req.req_id)
            return
        except (ConfigChangeInProgress, InvalidConfigChange, TransferInProgress) as e:
            self._reply_error(ident, req.req_id, "rejected", str(e))
            return
        if change.kind is ChangeKind.ADD_LEARNER:
            self.transport.add_peer(nid, self.addresses[nid].raft)
            self._register_poll()
        self.pending_submits[index] = _PendingSubmit(ident, req.req_id, self.raft.term,
                                                     time.monotonic())

    def _peer_event(self, event: str, peer: str) -> None:
        log.info("node %s: %s %s", self.id, event, peer)
        self.on_event(event, {"node_id": peer})

    # --- output -------------------------------------------------------------------------

    def _reply(self, ident: bytes, resp: Response) -> None:
        try:
            frame = codec.encode_response(self.cluster.cluster_id, resp)
        except codec.EncodeError as e:
            # a result the protocol cannot carry: answer with the reason, never crash
            log.error("cannot encode the answer to request %d: %s", resp.req_id, e)
            self.counters.client_dropped["unencodable_reply"] += 1
            frame = codec.encode_response(self.cluster.cluster_id, Response(
                resp.req_id, False, None, ErrorInfo("bad_request", f"unencodable result: {e}"[:500])))
        try:
            self.clients.send_multipart([ident, frame], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counters.client_dropped["reply_undeliverable"] += 1

    def _reply_error(self, ident: bytes, req_id: int, code: str, message: str,
                     leader: str | None = None) -> None:
        self.counters.client_errors[code] += 1
        addr = self.addresses[leader].client if leader in self.addresses else None
        self._reply(ident, Response(req_id, False, None, ErrorInfo(code, message, leader, addr)))

    def _track_subscriptions(self) -> None:
        self.publisher.handle()

    def _on_publish_rebuilt(self) -> None:
        self._register_poll()

    def _publish(self, upd: Update) -> None:
        if not self.publisher.watched(codec.UPDATE_TOPIC):
            self.counters.updates_unwatched += 1
            return
        self.counters.updates_published += 1
        try:
            payload = codec.encode_update(self.cluster.cluster_id, upd)
        except codec.EncodeError as e:
            # keep the sequence gap-free: publish the index without its payload
            log.error("cannot encode the update at index %d: %s", upd.index, e)
            payload = codec.encode_update(self.cluster.cluster_id, Update(
                upd.index, upd.term, "", upd.client_id, upd.seq, {"unencodable": True}, []))
        self.publisher.send(codec.UPDATE_TOPIC, payload)

    def _publish_fed(self, index: int, term: int, applied: Any, data: bytes) -> None:
        """Publish an entry when some machines have feeds: the firehose gets what the
        feeds show of it (a transport batch item by item), and each stream the
        entry touched gets its part (only while someone watches it)."""
        leader = self.raft.leader_id
        machine, result, events, command = (applied.machine, applied.result, applied.events,
                                            applied.command)
        if applied.duplicate:  # the first result again, with no machine named: find it
            try:
                envelope = decode_command(data)
            except BadCommand:
                envelope = {}
            origin, cmd = envelope.get("m"), envelope.get("cmd")
            if origin in self.feeds:
                result = self.feeds[origin].public_result(result)
            elif origin == BATCH_MACHINE and isinstance(cmd, dict) and isinstance(
                    cmd.get("batch"), list):
                result, _ = self._batch_shown(cmd["batch"], result)
            self._publish(Update(index, term, machine, applied.client_id, applied.seq, result,
                                 events, command=command, clock_ms=applied.clock_ms))
            return
        fed = [name for name in self.feeds if name == machine or (
            machine == BATCH_MACHINE and any(e.get("machine") == name for e in events))]
        if machine == BATCH_MACHINE and isinstance(command, dict) and isinstance(
                command.get("batch"), list):
            items = command["batch"]
            fed += [m for m in {i.get("m") for i in items if isinstance(i, dict)}
                    if m in self.feeds and m not in fed]
            if fed:
                result, command = self._batch_shown(items, result)
        if self.publisher.watched(codec.UPDATE_TOPIC):
            if machine in self.feeds:
                feed = self.feeds[machine]
                result, command = feed.public_result(result), None
            shown = [self.feeds[e["machine"]].public_event(e, leader)
                     if e.get("machine") in self.feeds else e for e in events]
            self._publish(Update(index, term, machine, applied.client_id, applied.seq, result,
                                 shown, command=command, clock_ms=applied.clock_ms))
        else:
            self.counters.updates_unwatched += 1
        for name in fed:
            own = [e for e in events if e.get("machine", name) == name]
            for topic, head, part in self.feeds[name].streams(index, own, leader):
                if not self.publisher.watched(topic):
                    self.counters.stream_updates_unwatched += 1
                    continue
                self.counters.stream_updates_published += 1
                self._publish_stream(topic, Update(index, term, name, applied.client_id,
                                                   applied.seq, head, part,
                                                   clock_ms=applied.clock_ms))

    def _batch_shown(self, items: list, result: Any) -> tuple[Any, dict]:
        """A batch's result and command as published: fed machines' items lose their
        command, and their results what their feed keeps back."""
        results = result.get("results") if isinstance(result, dict) else None
        shown_items, shown_results = [], []
        for i, item in enumerate(items):
            feed = self.feeds.get(item.get("m")) if isinstance(item, dict) else None
            shown_items.append(item if feed is None else {"m": item["m"], "cmd": None})
            if isinstance(results, list) and i < len(results):
                shown_results.append(results[i] if feed is None else feed.public_result(results[i]))
        if isinstance(results, list):
            result = {**result, "results": shown_results}
        return result, {"batch": shown_items}

    def _publish_stream(self, topic: bytes, upd: Update) -> None:
        try:
            payload = codec.encode_update(self.cluster.cluster_id, upd)
        except codec.EncodeError as e:
            log.error("cannot encode the %r update at index %d: %s", topic, upd.index, e)
            head = {**upd.result, "unencodable": True} if isinstance(upd.result, dict) else None
            payload = codec.encode_update(self.cluster.cluster_id, Update(
                upd.index, upd.term, upd.machine, upd.client_id, upd.seq, head, []))
        self.publisher.send(topic, payload)

    def _publish_info(self) -> None:
        info = ClusterInfo(self.id, self.raft.term, self.raft.role.value, self.raft.leader_id,
                           self.raft.commit, self.last_applied, self._peer_view())
        self.publisher.send(codec.CLUSTER_TOPIC,
                            codec.encode_cluster_info(self.cluster.cluster_id, info))

    def _peer_view(self) -> dict[str, dict]:
        cfg = self.raft.config
        view = {}
        for nid in sorted(set(self.addresses) | cfg.members()):
            a = self.addresses.get(nid)
            view[nid] = {
                "connected": True if nid == self.id else self.transport.connected.get(nid, False),
                "voter": nid in cfg.voters,
                "learner": nid in cfg.learners,
                "client": a.client if a else None,
                "pub": a.pub if a else None,
            }
        return view

    def status(self) -> dict:
        s = self.raft.status()
        s.update({
            "cluster_id": self.cluster.cluster_id,
            "applied": self.last_applied,
            "address": self.me.client,
            "pid": os.getpid(),
            "nodes": self._peer_view(),
            "blocked": sorted(self.transport.blocked),
            "uptime_s": round(time.time() - self.started_at, 3),
            "counters": {
                "proposals": self.counters.proposals,
                "applied": self.counters.applied,
                "reads": self.counters.reads,
                "fsyncs": self.counters.fsyncs,
                "updates_published": self.counters.updates_published,
                "updates_unwatched": self.counters.updates_unwatched,
                "stream_updates_published": self.counters.stream_updates_published,
                "stream_updates_unwatched": self.counters.stream_updates_unwatched,
                "peer_sent": self.transport.sent,
                "peer_received": self.transport.received,
                "peer_dropped": dict(self.transport.dropped),
                "client_deferred_turns": self.counters.client_deferred_turns,
                "subscription_bytes": self.publisher.held_bytes,
                "subscriptions_refused": self.publisher.refused,
                "publish_resets": self.publisher.resets,
                "client_errors": dict(self.counters.client_errors),
                "client_dropped": dict(self.counters.client_dropped),
                "auth_admitted": dict(self.zap.admitted) if self.zap else {},
                "auth_denied": dict(self.zap.denied) if self.zap else {},
            },
            "curve": self.keys is not None,
        })
        return s

    def close(self) -> None:
        log.info("node %s stopping (term %d, commit %d)", self.id, self.raft.term, self.raft.commit)
        self.transport.close()
        self.clients.close(0)
        self.publisher.close()
        if self.zap is not None:
            self.zap.close()
        try:
            self.storage.close()
        except OSError as e:  # e.g. a full disk: what is not fsynced was never acknowledged
            log.error("node %s: closing its storage failed: %s", self.id, e)
        self.ctx.term()


def poll_timeout_ms(next_tick: float, now: float) -> int:
    """How long to poll until the tick at ``next_tick`` (seconds): whole milliseconds,
    rounded up. ZeroMQ truncates a float timeout, so 0.4 ms would poll with 0 and spin
    a core until the tick is due (about a tenth of a core per node at a 10 ms tick)."""
    return max(0, math.ceil((next_tick - now) * 1000))


def _request_cost(req: Request) -> int:
    """What a request costs against the rate limit: its commands (a batch carries many)."""
    if req.kind == "submit" and req.body.get("machine") == BATCH_MACHINE:
        cmd = req.body.get("cmd")
        items = cmd.get("batch") if isinstance(cmd, dict) else None
        return max(1, len(items)) if isinstance(items, list) else 1
    return 1
