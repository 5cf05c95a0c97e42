"""``mechanism="raft"``: the sans-I/O core (``nodes.raft``) driven from asyncio.

The Ready contract (``nodes.raft.ready``) is followed by the one driver,
``nodes.host.driver.ReadyDriver`` (persist -> send -> apply -> advance), which
asserts that no vote or acknowledgement leaves before what it speaks about was
saved; ``_drain`` supplies what persisting, sending and applying mean here. Time
enters the core only as ticks.

State machines: ``Replicated([KeyValue(), Directory()])``: the key-value store
and the replicated address book. Applied changes become events
(``state:changed``, ``consensus:accepted``, ``lock:changed``, ``log:appended``,
``vote:*``, ``leader:elected``). The transport links and the liveness watch
follow the configuration.

Responsibilities are split in three: this module drives the core;
``raft_service`` answers other nodes (as the leader); ``raft_client`` makes
this node's API requests of the leader.
"""

from __future__ import annotations

import asyncio
import logging
from random import Random
from typing import Any

from nodes.host.driver import ReadyDriver
from nodes.raft.core import RaftConfig, RaftNode, decode_config_change
from nodes.raft.messages import (
    AppendEntries,
    ChangeKind,
    ClusterConfig,
    Entry,
    EntryKind,
    InstallSnapshot,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
)
from nodes.raft.ready import Ready, Role, SoftState
from nodes.raft.storage import MemoryStorage, Storage
from nodes.statemachine import BadCommand, Replicated, decode_command

from .directory import Directory
from .driver import Driver, Options
from .events import EventBus
from .raft_client import LeaderClient
from .raft_service import LeaderService, _Pending
from .types import NodeInfo, describe_command
from .wire import AppPacket, Packet, is_raft

log = logging.getLogger("arena.consensus.raft")


class RaftDriver(LeaderService, LeaderClient, Driver):
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
                                      election_ticks_max=hi, lazy_commit_notify=True)
        self.raft: RaftNode | None = None
        self.storage: Storage | None = None
        self._initial: ClusterConfig | None = None  # the cluster's, once the core is built
        self._join_config: ClusterConfig | None = None  # a joiner's, learned from a member
        self._asked_config: dict[str, float] = {}
        self._removed_notice = False
        self.last_applied = 0
        self._driver: ReadyDriver | None = None
        self._pending: dict[int, _Pending] = {}
        self._reads: dict[tuple[str, Any, int], asyncio.Future[dict[str, Any]] | None] = {}
        self._apply_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._epoch: asyncio.Future[None] | None = None
        self._drain_handle: asyncio.TimerHandle | None = None
        self._linked: set[str] = set()
        self._leader_seen: tuple[str | None, int] = (None, 0)
        self.counters = {"proposals": 0, "forwarded": 0, "persists": 0, "applied": 0}
        self._init_client()

    # --- building the core ------------------------------------------------------------

    def bootstrap_peer(self, node_id: str, address: str | None,
                       metadata: dict[str, Any] | None = None) -> bool:
        if self.raft is None and metadata:
            self.metadata[node_id] = dict(metadata)  # a founder's: known here only
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
        if not is_raft(packet):
            assert isinstance(packet, AppPacket)
            self._receive_app(packet)
            return
        if isinstance(packet, AppendEntries | InstallSnapshot):
            self._removed_notice = False  # a leader replicates to us: a member again
        if isinstance(packet, RequestVote) and not packet.pre_vote and packet.recipient == self.id:
            self.bus.emit("vote:requested", packet.sender, term=packet.term)
        raft.step(packet)  # type: ignore[arg-type]
        self._drain()

    # --- the Ready contract --------------------------------------------------------------

    def _drain(self) -> None:
        """Handle every Ready through the one driver (``nodes.host.driver``), which
        asserts that no vote or acknowledgement leaves before it is persisted."""
        driver = self._driver
        if driver is None or driver.raft is not self.raft:
            raft, storage = self.raft, self.storage
            assert raft is not None and storage is not None
            driver = self._driver = ReadyDriver(
                raft, self._persist_ready, self._send_raft, self._apply_ready, self._after_ready)
        driver.drain()
        self._wake_appliers()

    def _persist_ready(self, rd: Ready) -> None:
        assert self.storage is not None
        self.storage.save(rd.hard_state, rd.entries, rd.snapshot)
        self.counters["persists"] += 1
        if rd.entries and self.bus.has_listeners("log:appended"):
            first, count = rd.entries[0].index, len(rd.entries)
            for entry in rd.entries:
                key, op = _entry_subject(entry)
                self.bus.emit("log:appended", entry.index, entry.term, key=key, op=op,
                              first_index=first, count=count)

    def _send_raft(self, m: Any) -> None:
        if isinstance(m, RequestVoteResponse) and m.granted and not m.pre_vote:
            self.bus.emit("vote:granted", m.recipient, term=m.term)
        if self.link is not None:
            self.link.send(m.recipient, m)

    def _apply_ready(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self._restore(rd.snapshot, emit=True)
        for entry in rd.committed_entries:
            self._apply(entry)
        for rs in rd.read_states:
            self._answer_read(rs.context, {"status": "ok", "index": rs.index})
        for ctx in rd.aborted_reads:
            self._answer_read(ctx, {"status": "retry", "leader": None})

    def _after_ready(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        self._maybe_snapshot()

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
            key, value = describe_command(applied.command, result)
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
            if "metadata" in event:
                self.metadata[node] = dict(event["metadata"])
            elif address is None:  # forgotten
                self.metadata.pop(node, None)
            if address is not None:
                self.addresses[node] = address
                if node in self._linked and self.link is not None:
                    self.link.add_peer(node, address)

    def _restore(self, snapshot: Snapshot, emit: bool) -> None:
        before = {k: (v, ver) for k, v, ver in self.kv.snapshot()["keys"]} if emit else {}
        self.sm.restore(snapshot.data)
        self.last_applied = snapshot.meta.index
        self.addresses.update(self.directory.as_dict())
        self.metadata.update(self.directory.metadata_dict())
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

    # --- views and stop ---------------------------------------------------------------------

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


def _entry_subject(entry: Entry) -> tuple[str | None, str]:
    """(key, op) of a log entry, for ``log:appended``."""
    if entry.kind is EntryKind.CONFIG:
        return None, "config"
    if not entry.data:
        return None, "noop"
    try:
        envelope = decode_command(entry.data)
    except BadCommand:
        return None, "unknown"
    cmd = envelope["cmd"]
    if envelope["m"] != "kv":
        return (cmd.get("id") if isinstance(cmd.get("id"), str) else None), str(envelope["m"])
    op = cmd.get("op")
    key = cmd.get("key", cmd.get("name"))
    return (key if isinstance(key, str) else None), str(op)
