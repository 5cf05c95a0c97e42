"""What a raft node does for the other nodes' requests (usually as the leader).

Application messages (``wire.AppPacket``) of the raft mechanism:

- ``fwd {rid, c, s, m, cmd}``: a proposal made on another node, for the leader
  to propose with its own timestamp (locks expire on the leader's clock);
  answered by ``res``.
- ``admin {rid, action, id, address}``: a membership change (add, remove) or a
  leadership transfer for the leader to do; answered by ``res``.
- ``read {rid}``: ReadIndex for a follower (thesis 6.4); answered by ``res``
  with the index to wait for before reading locally.
- ``res {rid, status, ...}``: ``status`` is ``applied`` (with ``result``,
  ``for``, ``total``, ``index``), ``ok`` (a read: ``index``), ``retry`` (not
  the leader, or leadership changed: ask again with the same sequence number)
  or ``error`` (with ``error``, ``message``).
- ``ping {role, term, leader}``: liveness (``driver``).
- ``removed {}``: the leader tells a node its removal committed. A removed
  node never receives that entry itself (the leader stops replicating to it at
  once), so without this it would campaign in vain forever (thesis 4.2.3). It
  stops ticking its core until a leader replicates to it again (re-added).
- ``cfg?`` / ``cfg {voters, learners}``: a node started with ``join=True``
  asks any member for the cluster's *initial* configuration before it builds
  its core. Membership entries in the log are changes relative to that
  configuration, so a joiner replaying the log from index 1 must start from
  the same one (from a snapshot it would get the absolute configuration anyway).

A proposal the leader appended is ``_Pending`` on its index until applied:
answered then if the entry there is still ours (same term), else "retry"; all
of them are answered "retry" when the node stops being the leader (they may
still commit: the retry carries the same client session and sequence number,
so it is applied at most once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nodes.raft.core import RaftNode
from nodes.raft.errors import (
    ConfigChangeInProgress,
    InvalidConfigChange,
    NotLeader,
    TransferInProgress,
)
from nodes.raft.messages import ChangeKind, ClusterConfig, ConfigChange, Entry
from nodes.raft.ready import Role
from nodes.statemachine import BadCommand, encode_command

from .events import EventBus
from .peer_links import Link
from .types import Votes
from .wire import AppPacket, Packet

log = logging.getLogger("arena.consensus.raft")


def now_ms() -> int:
    """The leader's timestamp for a command (wall clock: locks expire on it)."""
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Pending:
    """A proposal in the leader's log, waiting to be applied."""

    term: int
    future: asyncio.Future[dict[str, Any]] | None = None
    reply_to: tuple[str, int] | None = None  # (node, rid) of a forwarded request


class LeaderService:
    """Mixed into ``RaftDriver``: serving ``fwd``, ``admin``, ``read``, ``cfg?``,
    and answering what is pending once applied."""

    id: str
    bus: EventBus
    link: Link | None
    raft: RaftNode | None
    addresses: dict[str, str | None]
    _pending: dict[int, _Pending]
    _reads: dict[tuple[str, Any, int], asyncio.Future[dict[str, Any]] | None]
    _initial: ClusterConfig | None
    _join_config: ClusterConfig | None
    _linked: set[str]
    _removed_notice: bool
    counters: dict[str, int]

    if TYPE_CHECKING:  # provided by the other parts of RaftDriver (declared for readers)
        def send_app(self, to: str, kind: str, body: dict[str, Any]) -> None: ...
        def _drain(self) -> None: ...
        def _schedule_drain(self) -> None: ...
        def _ensure_core(self) -> RaftNode | None: ...
        def _ask_config(self, peer: str, now: float) -> None: ...
        def _voters(self) -> frozenset[str]: ...
        def _on_response(self, packet: AppPacket) -> None: ...
        @property
        def leader_id(self) -> str | None: ...

    def _receive_app(self, packet: AppPacket) -> None:
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
        if isinstance(packet, AppPacket) and packet.kind == "cfg":
            voters, learners = packet.body.get("voters"), packet.body.get("learners")
            if not (isinstance(voters, list) and isinstance(learners, list)
                    and all(isinstance(v, str) for v in [*voters, *learners])):
                raise ValueError("malformed cfg")
            self._join_config = ClusterConfig(frozenset(voters), frozenset(learners))
            self._ensure_core()
            return
        if isinstance(packet, AppPacket) and packet.kind in ("fwd", "admin", "read"):
            self.send_app(packet.sender, "res", {"rid": request_id(packet), "status": "retry",
                                                 "leader": None})
        elif isinstance(packet, AppPacket) and packet.kind == "res":
            self._on_response(packet)
        if packet.sender not in self._linked and self.link is not None:
            self.link.add_peer(packet.sender, self.addresses.get(packet.sender))
        self._ask_config(packet.sender, now)

    def _on_removed(self, packet: AppPacket) -> None:
        raft = self.raft
        assert raft is not None
        if raft.role is not Role.LEADER and packet.sender == raft.leader_id:
            self._removed_notice = True
            log.info("node %s: removed from the cluster by leader %s", self.id, packet.sender)

    def _on_config_request(self, packet: AppPacket) -> None:
        initial = self._initial
        if initial is not None:
            self.send_app(packet.sender, "cfg", {"voters": sorted(initial.voters),
                                                 "learners": sorted(initial.learners)})

    def _leader_or_retry(self, packet: AppPacket) -> RaftNode | None:
        raft = self.raft
        assert raft is not None
        if raft.role is Role.LEADER and raft.lead_transferee is None:
            return raft
        self.send_app(packet.sender, "res", {"rid": request_id(packet), "status": "retry",
                                             "leader": raft.leader_id})
        return None

    def _on_forward(self, packet: AppPacket) -> None:
        raft = self._leader_or_retry(packet)
        if raft is None:
            return
        body, rid = packet.body, request_id(packet)
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

    def _on_admin(self, packet: AppPacket) -> None:
        if self._leader_or_retry(packet) is None:
            return
        body = packet.body
        address = body.get("address")
        outcome = self._admin(str(body.get("action")), str(body.get("id")),
                              address if isinstance(address, str) else None,
                              reply_to=(packet.sender, request_id(packet)))
        if outcome is not None:
            self.send_app(packet.sender, "res", {"rid": request_id(packet), **outcome})

    def _on_read(self, packet: AppPacket) -> None:
        raft = self.raft
        assert raft is not None
        if raft.role is not Role.LEADER:
            self.send_app(packet.sender, "res", {"rid": request_id(packet), "status": "retry",
                                                 "leader": raft.leader_id})
            return
        ctx = ("remote", packet.sender, request_id(packet))
        self._reads[ctx] = None
        raft.read_index(ctx)
        self._drain()

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


def request_id(packet: AppPacket) -> int:
    rid = packet.body.get("rid")
    if type(rid) is not int:
        raise ValueError(f"{packet.kind} without an int rid")
    return rid
