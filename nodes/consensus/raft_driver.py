"""``mechanism="raft"``: the sans-I/O core (``nodes.raft``) driven from asyncio.

The Ready contract (``nodes.raft.ready``) is followed to the letter in
``_drain``: persist -> send -> apply -> advance, and the driver asserts that no
vote or acknowledgement leaves before what it speaks about was saved. Time
enters the core only as ticks.

State machines: ``Replicated([KeyValue(), Directory()])``; commands carry
client sessions (thesis 6.3), so a proposal retried after a failover (same
client id and sequence number) is applied at most once. Every proposal uses a
"lane": a client session with at most one command in flight, so retries never
reorder a session's sequence numbers.

Application messages (``wire.App``) the driver exchanges:

- ``fwd {rid, c, s, m, cmd}``: a follower's proposal, for the leader to
  propose with its own timestamp; answered by ``res``.
- ``admin {rid, action, id, address}``: a membership change (add, remove) or a
  leadership transfer for the leader to do; answered by ``res``.
- ``read {rid}``: ReadIndex for a follower (thesis 6.4); answered by ``res``
  with the index to wait for before reading locally.
- ``res {rid, status, ...}``: ``status`` is ``applied`` (with ``result``,
  ``for``, ``total``, ``index``), ``ok`` (a read: ``index``), ``retry`` (not
  the leader, or leadership changed: ask again, same sequence number) or
  ``error`` (with ``error``, ``message``).
- ``ping {role, term, leader}``: liveness.
- ``removed {}``: the leader tells a node its removal committed. A removed
  node never receives that entry itself (the leader stops replicating to it at
  once), so without this it would campaign in vain forever (thesis 4.2.3). It
  stops ticking its core until a leader replicates to it again (re-added).
- ``cfg?`` / ``cfg {voters, learners}``: a node started with ``join=True``
  asks any member for the cluster's *initial* configuration before it builds
  its core. Membership entries in the log are changes relative to that
  configuration, so a joiner replaying the log from index 1 must start from
  the same one (from a snapshot it would get the absolute configuration anyway).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from random import Random
from typing import Any

from nodes.raft.core import RaftConfig, RaftNode, decode_config_change
from nodes.raft.errors import (
    ConfigChangeInProgress,
    InvalidConfigChange,
    NotLeader,
    TransferInProgress,
)
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ChangeKind,
    ClusterConfig,
    ConfigChange,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
)
from nodes.raft.ready import Role, SoftState
from nodes.raft.storage import MemoryStorage, Storage
from nodes.statemachine import BadCommand, Replicated, encode_command

from .directory import Directory
from .driver import Driver, Options
from .events import EventBus
from .types import ConsensusError, NodeInfo, ProposalResult, Votes
from .wire import App, Packet, is_raft

log = logging.getLogger("arena.consensus.raft")

MAX_LANES = 64
RETRY_PAUSE = 0.02  # between attempts when no leader is known yet, in seconds
SESSION_RESTART_ERRORS = frozenset({"session_expired", "stale_sequence"})


def now_ms() -> int:
    """The leader's timestamp for a command (wall clock: locks expire on it)."""
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Pending:
    """A proposal in the leader's log, waiting to be applied."""

    term: int
    future: asyncio.Future[dict[str, Any]] | None = None
    reply_to: tuple[str, int] | None = None  # (node, rid) of a forwarded request


@dataclass(slots=True)
class _Lane:
    client_id: str
    last_seq: int = 0


@dataclass(slots=True)
class _Lanes:
    """Client sessions, one command in flight each (see module docstring)."""

    prefix: str
    free: list[_Lane] = field(default_factory=list)
    count: int = 0
    generation: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)

    def _new_id(self) -> str:
        self.generation += 1
        return f"{self.prefix}/{self.generation}"

    async def acquire(self) -> _Lane:
        while not self.free and self.count >= MAX_LANES:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter
        if self.free:
            return self.free.pop()
        self.count += 1
        return _Lane(self._new_id())

    def release(self, lane: _Lane) -> None:
        self.free.append(lane)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def rotate(self, lane: _Lane) -> None:
        """Abandon a session whose last command has an unknown fate."""
        lane.client_id, lane.last_seq = self._new_id(), 0


class RaftDriver(Driver):
    mechanism = "raft"

    def __init__(self, node_id: str, opts: Options, bus: EventBus, rng: Random,
                 peers: dict[str, str | None]) -> None:
        super().__init__(node_id, opts, bus, rng)
        self.directory = Directory()
        self.sm = Replicated([self.kv, self.directory])
        self.addresses = {p: a for p, a in peers.items() if p != node_id}
        self._static = set(self.addresses)  # peers given by the user: always linked
        self._founders: set[str] = set() if opts.join else {node_id, *self.addresses}
        hb, lo, hi = opts.timing.ticks()
        self.raft_config = RaftConfig(heartbeat_ticks=hb, election_ticks_min=lo,
                                      election_ticks_max=hi)
        self.raft: RaftNode | None = None
        self.storage: Storage | None = None
        self._initial: ClusterConfig | None = None  # the cluster's, once the core is built
        self._join_config: ClusterConfig | None = None  # a joiner's, learned from a member
        self._asked_config: dict[str, float] = {}
        self._removed_notice = False
        self.last_applied = 0
        self._persisted_hs = HardState()
        self._persisted_through = 0
        self._pending: dict[int, _Pending] = {}
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reads: dict[tuple[str, Any, int], asyncio.Future[dict[str, Any]] | None] = {}
        self._apply_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._rid = 0
        self._epoch: asyncio.Future[None] | None = None
        self._drain_handle: asyncio.TimerHandle | None = None
        self._lanes = _Lanes(f"{node_id}/{secrets.token_hex(4)}")
        self._linked: set[str] = set()
        self._leader_seen: tuple[str | None, int] = (None, 0)
        self.counters = {"proposals": 0, "forwarded": 0, "persists": 0, "applied": 0}

    # --- building the core ------------------------------------------------------------

    def bootstrap_peer(self, node_id: str, address: str | None) -> bool:
        if address is not None or node_id not in self.addresses:
            self.addresses[node_id] = address
        if self.link is not None:
            self.link.add_peer(node_id, address)
        if self.raft is not None:
            return False
        self._static.add(node_id)
        if not self.opts.join:
            self._founders.add(node_id)
        return True

    def _ensure_core(self) -> RaftNode | None:
        """Build the core on first need. None while a joiner does not know the
        cluster's initial configuration yet (see the module docstring)."""
        if self.raft is not None:
            return self.raft
        data_dir = self.opts.data_dir
        existing = data_dir is not None and (data_dir / "meta").exists()
        if self.opts.join:
            if self._join_config is None and not existing:
                return None
            initial = self._join_config
        else:
            initial = ClusterConfig(frozenset(self._founders))
        if data_dir is not None:
            from nodes.storage import DiskStorage

            self.storage = DiskStorage(
                data_dir, self.id, self.opts.cluster_id,
                initial_config=None if existing else initial,
                fsync=self.opts.fsync, compress_snapshots=self.opts.compression,
            )
        else:
            assert initial is not None
            self.storage = MemoryStorage(initial)
        self.raft = RaftNode(self.id, self.storage, self.rng, self.raft_config)
        persisted = self.storage.load()
        self._initial = persisted.initial_config
        self._persisted_hs = persisted.hard_state
        self._persisted_through = self.raft.log.last_index
        snap = self.storage.snapshot()
        if snap is not None:
            self._restore(snap, emit=False)
        self.last_applied = self.raft.applied
        self._sync_members()
        return self.raft

    def _on_first_run(self, now: float) -> None:
        assert self.loop is not None
        self._epoch = self.loop.create_future()
        if self._ensure_core() is None:  # a joiner: reach the peers we were given
            for peer in sorted(self._static):
                if self.link is not None:
                    self.link.add_peer(peer, self.addresses.get(peer))
                self.liveness.track(peer, now)
            self._linked = set(self._static)
        for peer in self.liveness.peers.values():
            peer.last_heard = now

    def _max_ticks_at_once(self) -> int:
        return self.raft_config.election_ticks_max

    # --- inputs ------------------------------------------------------------------------

    def _on_ticks(self, ticks: int, now: float) -> None:
        raft = self._ensure_core()
        if raft is None:
            for peer in sorted(self._static):
                self._ask_config(peer, now)
            return
        if self._removed_notice:
            return  # removed from the cluster: no campaigns (see "removed" above)
        for _ in range(ticks):
            raft.tick()
            self._drain()

    def _ask_config(self, peer: str, now: float) -> None:
        if now - self._asked_config.get(peer, -1e9) >= self.opts.timing.ping_interval:
            self._asked_config[peer] = now
            self.send_app(peer, "cfg?", {})

    def _receive(self, packet: Packet, now: float) -> None:
        raft = self._ensure_core()
        if raft is None:
            self._receive_joining(packet, now)
            return
        if is_raft(packet):
            if isinstance(packet, AppendEntries | InstallSnapshot):
                self._removed_notice = False  # a leader replicates to us: a member again
            if isinstance(packet, RequestVote) and not packet.pre_vote and packet.recipient == self.id:
                self.bus.emit("vote:requested", packet.sender, term=packet.term)
            raft.step(packet)  # type: ignore[arg-type]
            self._drain()
            return
        assert isinstance(packet, App)
        handler = {
            "fwd": self._on_forward,
            "admin": self._on_admin,
            "read": self._on_read,
            "res": self._on_response,
            "cfg?": self._on_config_request,
            "removed": self._on_removed,
        }.get(packet.kind)
        if handler is not None:
            handler(packet)
        elif packet.kind not in ("ping", "cfg"):
            raise ValueError(f"unknown application message {packet.kind!r}")

    def _receive_joining(self, packet: Packet, now: float) -> None:
        """Before a joiner's core exists: learn the initial configuration; ask
        whoever talks to us for it (the leader's AppendEntries will be resent)."""
        if isinstance(packet, App) and packet.kind == "cfg":
            voters, learners = packet.body.get("voters"), packet.body.get("learners")
            if not (isinstance(voters, list) and isinstance(learners, list)
                    and all(isinstance(v, str) for v in [*voters, *learners])):
                raise ValueError("malformed cfg")
            self._join_config = ClusterConfig(frozenset(voters), frozenset(learners))
            self._ensure_core()
            return
        if isinstance(packet, App) and packet.kind in ("fwd", "admin", "read"):
            self.send_app(packet.sender, "res", {"rid": _rid(packet), "status": "retry",
                                                 "leader": None})
        elif isinstance(packet, App) and packet.kind == "res":
            self._on_response(packet)
        if packet.sender not in self._linked and self.link is not None:
            self.link.add_peer(packet.sender, self.addresses.get(packet.sender))
        self._ask_config(packet.sender, now)

    def _on_removed(self, packet: App) -> None:
        raft = self.raft
        assert raft is not None
        if raft.role is not Role.LEADER and packet.sender == raft.leader_id:
            self._removed_notice = True
            log.info("node %s: removed from the cluster by leader %s", self.id, packet.sender)

    def _on_config_request(self, packet: App) -> None:
        initial = self._initial
        if initial is not None:
            self.send_app(packet.sender, "cfg", {"voters": sorted(initial.voters),
                                                 "learners": sorted(initial.learners)})

    # --- the Ready contract --------------------------------------------------------------

    def _drain(self) -> None:
        """Handle every Ready: persist -> send -> apply -> advance (``nodes.raft.ready``)."""
        raft = self.raft
        assert raft is not None
        storage = self.storage
        assert storage is not None
        while raft.has_ready():
            rd = raft.ready()
            # 0. a leader's replication may leave before its own write (thesis 10.2.1)
            if self.link is not None:
                for m in rd.early_messages:
                    self.link.send(m.recipient, m)
            # 1. persist: one group commit before anything that speaks of it leaves
            if rd.must_sync():
                storage.save(rd.hard_state, rd.entries, rd.snapshot)
                self.counters["persists"] += 1
                if rd.hard_state is not None:
                    self._persisted_hs = rd.hard_state
                self._persisted_through = raft.log.last_index
                if rd.entries:
                    last = rd.entries[-1]
                    self.bus.emit("log:appended", last.index, last.term,
                                  first_index=rd.entries[0].index, count=len(rd.entries))
            # 2. send
            for m in rd.messages:
                self._check_persisted_before_send(m)
                if isinstance(m, RequestVoteResponse) and m.granted and not m.pre_vote:
                    self.bus.emit("vote:granted", m.recipient, term=m.term)
                if self.link is not None:
                    self.link.send(m.recipient, m)
            # 3. apply
            if rd.snapshot is not None:
                self._restore(rd.snapshot, emit=True)
            for entry in rd.committed_entries:
                self._apply(entry)
            for rs in rd.read_states:
                self._answer_read(rs.context, {"status": "ok", "index": rs.index})
            for ctx in rd.aborted_reads:
                self._answer_read(ctx, {"status": "retry", "leader": None})
            # 4. advance
            raft.advance(rd)
            if rd.soft_state is not None:
                self._on_soft_state(rd.soft_state)
            self._maybe_snapshot()
        self._wake_appliers()

    def _check_persisted_before_send(self, m: Any) -> None:
        """The Ready contract, asserted: a vote or an acknowledgement speaks only
        about state that is already durable."""
        if isinstance(m, RequestVoteResponse) and m.granted and not m.pre_vote:
            hs = self._persisted_hs
            assert hs.term == m.term and hs.vote == m.recipient, (hs, m)
        elif isinstance(m, AppendEntriesResponse) and m.success:
            assert m.match_index <= self._persisted_through, (m, self._persisted_through)

    def _schedule_drain(self) -> None:
        """After a proposal: with ``batch_updates``, wait ``batch_window`` so that
        proposals arriving meanwhile share one persist and one AppendEntries."""
        assert self.loop is not None
        if not self.opts.batch_updates or self.opts.batch_window <= 0:
            self._drain()
            self.bus.flush()
        elif self._drain_handle is None:
            self._drain_handle = self.loop.call_later(self.opts.batch_window, self._batched_drain)

    def _batched_drain(self) -> None:
        self._drain_handle = None
        if not self.stopped and self.raft is not None:
            self._drain()
            self.bus.flush()

    # --- apply ---------------------------------------------------------------------------

    def _apply(self, entry: Entry) -> None:
        assert entry.index > self.last_applied, (entry.index, self.last_applied)
        self.last_applied = entry.index
        self.counters["applied"] += 1
        if entry.kind is EntryKind.CONFIG:
            change = decode_config_change(entry.data)
            raft = self.raft
            assert raft is not None
            if (change.kind is ChangeKind.REMOVE and change.node_id != self.id
                    and raft.role is Role.LEADER):
                self.send_app(change.node_id, "removed", {})
            self._sync_members()
            self._resolve(entry, {"ok": True})
            return
        applied = self.sm.apply_entry(entry.index, entry.term, entry.data)
        for event in applied.events:
            self._emit_machine_event(event, entry.index)
        result = applied.result
        if (applied.machine == "kv" and applied.command is not None and not applied.duplicate
                and isinstance(result, dict) and result.get("ok")):
            key, value = describe(applied.command, result)
            self.bus.emit("consensus:accepted", key, value,
                          proposal_id=f"{applied.client_id}#{applied.seq}", index=entry.index,
                          op=applied.command.get("op"), result=result, votes=self._votes(entry.index))
        self._resolve(entry, result)

    def _emit_machine_event(self, event: dict[str, Any], index: int) -> None:
        kind = event.get("type")
        if kind == "state:changed":
            self.bus.emit("state:changed", event["key"], event["new"], event["old"],
                          version=event.get("version"), index=index, optimistic=False,
                          rolled_back=False)
        elif kind == "lock:changed":
            self.bus.emit("lock:changed", event["lock"], action=event["action"],
                          holder=event["holder"], token=event["token"],
                          expires_ms=event["expires_ms"])
        elif kind == "member:address":
            node, address = event["id"], event["address"]
            if address is not None:
                self.addresses[node] = address
                if node in self._linked and self.link is not None:
                    self.link.add_peer(node, address)

    def _votes(self, index: int) -> Votes | None:
        """For the leader: voters holding ``index`` now that it is committed."""
        raft = self.raft
        assert raft is not None
        if raft.role is not Role.LEADER:
            return None
        voters = raft.config.voters
        held = sum(1 for v in voters if v in raft.progress and raft.progress[v].match >= index)
        return Votes(for_=held, against=0, total=len(voters))

    def _resolve(self, entry: Entry, result: object) -> None:
        pending = self._pending.pop(entry.index, None)
        if pending is None:
            return
        if pending.term != entry.term:
            # another leader's entry took that index: ours never committed
            outcome: dict[str, Any] = {"status": "retry", "leader": self.leader_id}
        else:
            votes = self._votes(entry.index)
            outcome = {"status": "applied", "result": result, "index": entry.index,
                       "for": votes.for_ if votes else 0,
                       "total": votes.total if votes else len(self._voters())}
        self._finish(pending, outcome)

    def _finish(self, pending: _Pending, outcome: dict[str, Any]) -> None:
        if pending.future is not None:
            if not pending.future.done():
                pending.future.set_result(outcome)
        elif pending.reply_to is not None:
            node, rid = pending.reply_to
            self.send_app(node, "res", {"rid": rid, **outcome})

    def _restore(self, snapshot: Snapshot, emit: bool) -> None:
        before = {k: (v, ver) for k, v, ver in self.kv.snapshot()["keys"]} if emit else {}
        self.sm.restore(snapshot.data)
        self.last_applied = snapshot.meta.index
        self.addresses.update(self.directory.as_dict())
        if emit:
            after = {k: (v, ver) for k, v, ver in self.kv.snapshot()["keys"]}
            for key in sorted(before.keys() | after.keys()):
                old, new = before.get(key), after.get(key)
                if old != new:
                    self.bus.emit("state:changed", key, new[0] if new else None,
                                  old[0] if old else None, version=new[1] if new else 0,
                                  index=snapshot.meta.index, optimistic=False, rolled_back=False)
        self._sync_members()

    def _maybe_snapshot(self) -> None:
        raft, storage = self.raft, self.storage
        assert raft is not None and storage is not None
        interval = self.opts.snapshot_interval
        if not interval or raft.applied - raft.log.offset_index < interval:
            return
        meta = raft.snapshot_meta(raft.applied)
        storage.compact(Snapshot(meta, self.sm.snapshot()))
        raft.compact(raft.applied)

    def _wake_appliers(self) -> None:
        if not self._apply_waiters:
            return
        still = []
        for index, fut in self._apply_waiters:
            if index <= self.last_applied:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((index, fut))
        self._apply_waiters = still

    # --- roles and membership -------------------------------------------------------------

    def _on_soft_state(self, soft: SoftState) -> None:
        if soft.leader_id is not None and (soft.leader_id, soft.term) != self._leader_seen:
            self._leader_seen = (soft.leader_id, soft.term)
            self.bus.emit("leader:elected", soft.leader_id, term=soft.term)
        if soft.role is not Role.LEADER and self._pending:
            # in flight: they may still commit under the next leader; the requester
            # asks that leader with the same sequence number (applied at most once)
            pending, self._pending = self._pending, {}
            for p in pending.values():
                self._finish(p, {"status": "retry", "leader": soft.leader_id})
        if soft.role is Role.LEADER:
            self._sync_members()
        if self._epoch is not None:
            self._epoch.set_result(None)
            assert self.loop is not None
            self._epoch = self.loop.create_future()

    def _sync_members(self) -> None:
        """Link and liveness follow the configuration. The peers the user gave stay
        linked (a joining node must answer the leader before it knows the
        configuration), and are watched until a configuration names members."""
        raft = self.raft
        if raft is None:
            return
        members = set(raft.config.members()) - {self.id}
        linked = members | self._static
        watched = members if raft.config.members() else set(self._static)
        if self.loop is not None:
            now = self.loop.time()
            for peer in watched:
                self.liveness.track(peer, now)
        for peer in list(self.liveness.peers):
            if peer not in watched:
                self.liveness.forget(peer)
        if self.link is not None:
            for peer in sorted(linked - self._linked):
                self.link.add_peer(peer, self.addresses.get(peer))
            if self.loop is not None:
                for peer in sorted(self._linked - linked):
                    # later: what we just sent it (e.g. "removed") must get out first
                    self.loop.call_later(self.opts.timing.failure_timeout,
                                         self._unlink_if_gone, peer)
        self._linked = linked

    def _unlink_if_gone(self, peer: str) -> None:
        if peer not in self._linked and self.link is not None and not self.stopped:
            self.link.remove_peer(peer)

    def _voters(self) -> frozenset[str]:
        if self.raft is None:
            return frozenset(self._founders) if not self.opts.join else frozenset()
        return self.raft.config.voters

    def _ping_body(self) -> dict[str, Any]:
        return {"role": self.role, "term": self.raft.term if self.raft else 0,
                "leader": self.leader_id}

    @property
    def leader_id(self) -> str | None:
        return self.raft.leader_id if self.raft is not None else None

    @property
    def role(self) -> str:
        raft = self.raft
        if raft is None:
            return "joining" if self.opts.join else "follower"
        if raft.role is Role.FOLLOWER:
            if self.id in raft.config.learners:
                return "learner"
            if self._removed_notice:
                return "removed"
            if self.id not in raft.config.voters:
                return "removed" if raft.removed or raft.config.voters else "joining"
        return raft.role.value

    # --- requests from other nodes (we may be the leader) -------------------------------------

    def _leader_or_retry(self, packet: App) -> RaftNode | None:
        raft = self.raft
        assert raft is not None
        if raft.role is Role.LEADER and raft.lead_transferee is None:
            return raft
        self.send_app(packet.sender, "res", {"rid": _rid(packet), "status": "retry",
                                             "leader": raft.leader_id})
        return None

    def _on_forward(self, packet: App) -> None:
        raft = self._leader_or_retry(packet)
        if raft is None:
            return
        body, rid = packet.body, _rid(packet)
        try:
            data = encode_command(body["c"], body["s"], now_ms(), body["m"], body["cmd"])
        except (KeyError, BadCommand) as exc:
            self.send_app(packet.sender, "res", {"rid": rid, "status": "error",
                                                 "error": "bad_command", "message": str(exc)})
            return
        index = raft.propose(data)
        self.counters["proposals"] += 1
        self._pending[index] = _Pending(raft.term, reply_to=(packet.sender, rid))
        self._schedule_drain()

    def _on_admin(self, packet: App) -> None:
        if self._leader_or_retry(packet) is None:
            return
        body = packet.body
        address = body.get("address")
        outcome = self._admin(str(body.get("action")), str(body.get("id")),
                              address if isinstance(address, str) else None,
                              reply_to=(packet.sender, _rid(packet)))
        if outcome is not None:
            self.send_app(packet.sender, "res", {"rid": _rid(packet), **outcome})

    def _on_read(self, packet: App) -> None:
        raft = self.raft
        assert raft is not None
        if raft.role is not Role.LEADER:
            self.send_app(packet.sender, "res", {"rid": _rid(packet), "status": "retry",
                                                 "leader": raft.leader_id})
            return
        ctx = ("remote", packet.sender, _rid(packet))
        self._reads[ctx] = None
        raft.read_index(ctx)
        self._drain()

    def _on_response(self, packet: App) -> None:
        fut = self._waiting.pop(_rid(packet), None)
        if fut is not None and not fut.done():
            fut.set_result(packet.body)

    def _answer_read(self, ctx: Any, outcome: dict[str, Any]) -> None:
        if ctx not in self._reads:
            return
        fut = self._reads.pop(ctx)
        if fut is not None:
            if not fut.done():
                fut.set_result(outcome)
        else:
            _, node, rid = ctx
            self.send_app(node, "res", {"rid": rid, **outcome})

    def _admin(self, action: str, node_id: str, address: str | None,
               reply_to: tuple[str, int] | None = None,
               future: asyncio.Future[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """Do a membership change or transfer as the leader. Returns an immediate
        outcome, or None when the answer comes once the change is applied."""
        raft = self.raft
        assert raft is not None
        members = raft.config.members()
        try:
            if action == "transfer":
                raft.transfer_leadership(node_id)
                self._drain()
                return {"status": "applied", "result": {"ok": True, "transferring_to": node_id}}
            if action == "add":
                if node_id in members:
                    return {"status": "applied", "result": {"ok": True, "already": True}}
                if address:
                    self.addresses[node_id] = address
                if self.link is not None:
                    self.link.add_peer(node_id, self.addresses.get(node_id))
                change = ConfigChange(ChangeKind.ADD_LEARNER, node_id)
            elif action == "remove":
                if node_id not in members:
                    return {"status": "applied", "result": {"ok": True, "already": True}}
                change = ConfigChange(ChangeKind.REMOVE, node_id)
            else:
                return {"status": "error", "error": "bad_request",
                        "message": f"unknown admin action {action!r} (add, remove, transfer)"}
            index = raft.propose_config_change(change)
        except (NotLeader, TransferInProgress, ConfigChangeInProgress):
            return {"status": "retry", "leader": raft.leader_id}
        except InvalidConfigChange as exc:
            return {"status": "error", "error": "invalid_config_change", "message": str(exc)}
        self._pending[index] = _Pending(raft.term, future=future, reply_to=reply_to)
        self._drain()
        return None

    # --- requests from this node's API ----------------------------------------------------------

    def _next_rid(self) -> int:
        self._rid += 1
        return self._rid

    def _require_running(self) -> RaftNode | None:
        if not self.started or self.loop is None:
            raise ConsensusError(f"node {self.id} is not started: call start() first")
        if self.stopped:
            raise ConsensusError(f"node {self.id} is stopped")
        return self._ensure_core()  # type: ignore[return-value]

    async def _pause(self, remaining: float) -> None:
        """Wait for a leadership change, at most ``RETRY_PAUSE`` (or ``remaining``)."""
        epoch = self._epoch
        timeout = max(0.0, min(remaining, RETRY_PAUSE))
        if epoch is None:
            await asyncio.sleep(timeout)
        else:
            await asyncio.wait([epoch], timeout=timeout)

    async def _ask_leader(self, kind: str, body: dict[str, Any], deadline: float,
                          local: Any) -> dict[str, Any]:
        """Ask the leader (``local()`` when that is us) until a final answer or the
        deadline. ``local`` returns a future, an immediate outcome, or None (retry)."""
        loop = self.loop
        assert loop is not None
        # a lost request or answer is resent after this long (same sequence number:
        # applied at most once), a leader change resends at once
        attempt_timeout = max(0.1, self.opts.timing.election_timeout[1])
        while True:
            remaining = deadline - loop.time()
            if self.stopped:
                return {"status": "stopped"}
            if remaining <= 0:
                return {"status": "timeout"}
            raft = self._ensure_core()
            epoch = self._epoch
            leader = raft.leader_id if raft is not None else None
            pause = leader is None
            if raft is not None and raft.role is Role.LEADER:
                started = local()
                if isinstance(started, dict):
                    outcome: dict[str, Any] | None = started
                elif started is None:
                    outcome, pause = None, True  # e.g. a leadership transfer is under way
                else:
                    outcome = await _wait_for(started, remaining)
            elif leader is not None and leader != self.id:
                rid = self._next_rid()
                fut: asyncio.Future[dict[str, Any]] = loop.create_future()
                self._waiting[rid] = fut
                self.counters["forwarded"] += 1
                self.send_app(leader, kind, {"rid": rid, **body})
                waiters: list[asyncio.Future[Any]] = [fut] if epoch is None else [fut, epoch]
                await asyncio.wait(waiters, timeout=min(remaining, attempt_timeout),
                                   return_when=asyncio.FIRST_COMPLETED)
                self._waiting.pop(rid, None)
                outcome = fut.result() if fut.done() else None
            else:
                outcome, pause = None, True
            if outcome is None or outcome.get("status") == "retry":
                # no answer in time, or leadership moved: ask again (a resend of the same
                # sequence number is applied at most once); wait a little when the
                # leader itself said "not me" or no leader is known
                if pause or outcome is not None:
                    await self._pause(deadline - loop.time())
                continue
            return outcome

    async def submit(self, command: dict[str, Any], key: str | None, value: Any,
                     timeout: float, machine: str = "kv") -> ProposalResult:
        self._require_running()
        loop = self.loop
        assert loop is not None
        deadline = loop.time() + timeout
        lane = await self._lanes.acquire()
        try:
            while True:
                seq = lane.last_seq + 1
                pid = f"{lane.client_id}#{seq}"
                try:
                    encode_command(lane.client_id, seq, 0, machine, command)  # fail early
                except BadCommand as exc:
                    return self._result(pid, key, value, {"status": "error", "error": "bad_command",
                                                          "message": str(exc)})

                def local(client_id: str = lane.client_id, seq: int = seq) -> Any:
                    raft = self.raft
                    assert raft is not None
                    try:
                        index = raft.propose(encode_command(client_id, seq, now_ms(), machine,
                                                            command))
                    except (NotLeader, TransferInProgress):
                        return None
                    self.counters["proposals"] += 1
                    fut: asyncio.Future[dict[str, Any]] = loop.create_future()
                    self._pending[index] = _Pending(raft.term, future=fut)
                    self._schedule_drain()
                    return fut

                body = {"c": lane.client_id, "s": seq, "m": machine, "cmd": command}
                outcome = await self._ask_leader("fwd", body, deadline, local)
                if outcome.get("status") == "applied":
                    result = outcome.get("result")
                    if isinstance(result, dict) and result.get("error") in SESSION_RESTART_ERRORS:
                        self._lanes.rotate(lane)  # not applied: start a new session, try again
                        continue
                    lane.last_seq = seq
                else:
                    self._lanes.rotate(lane)  # its fate is unknown: never reuse that session
                return self._result(pid, key, value, outcome)
        finally:
            self._lanes.release(lane)

    def _result(self, pid: str, key: str | None, value: Any,
                outcome: dict[str, Any]) -> ProposalResult:
        total = len(self._voters())
        status = outcome.get("status")
        if status == "applied":
            result = outcome.get("result")
            ok = isinstance(result, dict) and result.get("ok") is True
            error = None if ok else (result.get("error") if isinstance(result, dict) else "failed")
            total = int(outcome.get("total") or total)
            votes = Votes(for_=int(outcome.get("for") or 0), against=0, total=total)
            return ProposalResult(pid, ok, key, votes, total // 2 + 1, error, value,
                                  outcome.get("index"), result)
        error = str(outcome.get("error") or status or "failed")
        return ProposalResult(pid, False, key, Votes(0, 0, total), total // 2 + 1, error, value,
                              None, outcome.get("message"))

    async def read_barrier(self, timeout: float) -> None:
        self._require_running()
        loop = self.loop
        assert loop is not None
        deadline = loop.time() + timeout

        def local() -> Any:
            raft = self.raft
            assert raft is not None
            ctx = ("local", None, self._next_rid())
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._reads[ctx] = fut
            try:
                raft.read_index(ctx)
            except NotLeader:
                self._reads.pop(ctx, None)
                return None
            self._drain()
            return fut

        outcome = await self._ask_leader("read", {}, deadline, local)
        if outcome.get("status") != "ok":
            raise ConsensusError(
                f"node {self.id}: linearizable read failed ({outcome.get('status')}); no leader "
                "confirmed its leadership in time -- retry, or use get() for a local read")
        index = int(outcome["index"])
        if index > self.last_applied:
            fut: asyncio.Future[None] = loop.create_future()
            self._apply_waiters.append((index, fut))
            if await _wait_for(fut, deadline - loop.time()) is None and not fut.done():
                raise ConsensusError(f"node {self.id}: timed out applying up to {index} for a read")

    async def change_membership(self, action: str, node_id: str, address: str | None,
                                timeout: float) -> ProposalResult:
        self._require_running()
        loop = self.loop
        assert loop is not None
        deadline = loop.time() + timeout
        if action == "add" and address:
            self.addresses[node_id] = address
            recorded = await self.submit({"op": "set", "id": node_id, "address": address},
                                         node_id, address, timeout, machine="members")
            if not recorded:
                return recorded

        def local() -> Any:
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            outcome = self._admin(action, node_id, address, future=fut)
            return fut if outcome is None else outcome

        body = {"action": action, "id": node_id, "address": address}
        outcome = await self._ask_leader("admin", body, deadline, local)
        return self._result(f"{self.id}/{action}/{node_id}", node_id, address, outcome)

    # --- views ---------------------------------------------------------------------------

    def nodes(self) -> dict[str, NodeInfo]:
        raft = self.raft
        config = raft.config if raft is not None else ClusterConfig(frozenset(self._founders))
        ids = set(config.members()) | {self.id}
        out = {}
        for nid in sorted(ids):
            if nid == self.id:
                role: str | None = self.role
            elif nid == self.leader_id:
                role = "leader"
            elif nid in config.learners:
                role = "learner"
            else:
                role = self.liveness.role_of(nid)
            out[nid] = self.node_info(nid, role, nid in config.voters, nid in config.learners)
        return out

    def debug_state(self) -> dict[str, Any]:
        raft = self.raft
        if raft is None:
            return {"node_id": self.id, "mechanism": self.mechanism, "current_term": 0,
                    "role": self.role, "leader_id": None, "commit_index": 0, "log_length": 0,
                    "applied_index": 0, "voters": sorted(self._founders), "learners": []}
        return {
            "node_id": self.id,
            "mechanism": self.mechanism,
            "current_term": raft.term,
            "role": self.role,
            "leader_id": raft.leader_id,
            "commit_index": raft.commit,
            "log_length": raft.log.last_index,
            "applied_index": self.last_applied,
            "snapshot_index": raft.log.offset_index,
            "voted_for": raft.vote,
            "voters": sorted(raft.config.voters),
            "learners": sorted(raft.config.learners),
            "pending_proposals": len(self._pending),
            "counters": dict(self.counters),
        }

    # --- stop ------------------------------------------------------------------------------

    def _on_stop(self) -> None:
        if self._drain_handle is not None:
            self._drain_handle.cancel()
        stopped = {"status": "stopped"}
        for p in self._pending.values():
            if p.future is not None and not p.future.done():
                p.future.set_result(stopped)
        self._pending.clear()
        for fut in [*self._waiting.values(), *(f for f in self._reads.values() if f)]:
            if not fut.done():
                fut.set_result(stopped)
        self._waiting.clear()
        self._reads.clear()
        for _, fut in self._apply_waiters:
            if not fut.done():
                fut.cancel()
        if self._epoch is not None and not self._epoch.done():
            self._epoch.set_result(None)
        close = getattr(self.storage, "close", None)
        if close is not None:
            close()


def _rid(packet: App) -> int:
    rid = packet.body.get("rid")
    if type(rid) is not int:
        raise ValueError(f"{packet.kind} without an int rid")
    return rid


async def _wait_for(fut: asyncio.Future[Any], timeout: float) -> Any:
    """The future's result, or None when it is not done within ``timeout``."""
    if not fut.done():
        await asyncio.wait([fut], timeout=max(0.0, timeout))
    if fut.done() and not fut.cancelled():
        return fut.result()
    return None


def describe(command: dict[str, Any], result: dict[str, Any]) -> tuple[str | None, Any]:
    """(key, value) a command is about, for events and results."""
    op = command.get("op")
    if op in ("put", "cas"):
        return command.get("key"), command.get("value")
    if op == "delete":
        return command.get("key"), None
    if op in ("incr", "decr"):
        return command.get("key"), result.get("value")
    if op in ("lock", "unlock", "renew"):
        return command.get("name"), command.get("holder")
    if op == "batch":
        return None, command.get("ops")
    return command.get("key"), command.get("value")

