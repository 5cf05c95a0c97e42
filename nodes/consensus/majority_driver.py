"""``mechanism="simple_majority"``: ``MajorityCore`` driven from asyncio.

The driver moves the core's messages as ``AppPacket`` packets (kinds ``propose``,
``vote``, ``decide``, plus ``ping``), asks the vote policy (a plain function or
a coroutine function; one that raises votes no), applies accepted proposals to
this node's own ``KeyValue`` machine and resolves the proposer's futures.

Members are each node's own list (``add_node`` / ``remove_node`` change it
locally): give every node the same peers. Lock expiry is judged by the
proposer's timestamp, carried in the proposal.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from random import Random
from typing import Any

from nodes.statemachine import ApplyContext

from .driver import Driver, Options
from .events import EventBus
from .majority import Decision, MajorityCore, Proposal, quorum_required
from .types import ConsensusError, NodeInfo, ProposalResult, Votes, describe_command
from .wire import AppPacket, Packet

log = logging.getLogger("arena.consensus.majority")

VotePolicy = Callable[[Proposal], Any]


def default_vote_policy(proposal: Proposal) -> bool:
    """Yes, unless this node promised its vote to a conflicting pending proposal
    (same key, different value)."""
    return not proposal.conflicting


class MajorityDriver(Driver):
    mechanism = "simple_majority"

    def __init__(self, node_id: str, opts: Options, bus: EventBus, rng: Random,
                 peers: dict[str, str | None], vote_policy: VotePolicy | None) -> None:
        super().__init__(node_id, opts, bus, rng)
        self.addresses = {p: a for p, a in peers.items() if p != node_id}
        self.core = MajorityCore(node_id, set(self.addresses), opts.quorum, opts.timeout, rng,
                                 retry_interval=max(opts.timing.ping_interval, 0.05))
        self.vote_policy: VotePolicy = vote_policy or default_vote_policy
        self._futures: dict[str, asyncio.Future[Decision]] = {}
        self._results: dict[str, object] = {}
        self._policy_tasks: set[asyncio.Task[Any]] = set()

    # --- membership -------------------------------------------------------------------

    def bootstrap_peer(self, node_id: str, address: str | None,
                       metadata: dict[str, Any] | None = None) -> bool:
        self._add(node_id, address, metadata)
        return True

    def _add(self, node_id: str, address: str | None,
             metadata: dict[str, Any] | None = None) -> None:
        if metadata:
            self.metadata[node_id] = dict(metadata)
        if node_id == self.id:
            return
        if address is not None or node_id not in self.addresses:
            self.addresses[node_id] = address
        self.core.add_member(node_id)
        if self.link is not None:
            self.link.add_peer(node_id, address)
        if self.loop is not None:
            self.liveness.track(node_id, self.loop.time())

    async def change_membership(self, action: str, node_id: str, address: str | None,
                                timeout: float, metadata: dict[str, Any] | None = None
                                ) -> ProposalResult:
        if action == "add":
            self._add(node_id, address, metadata)
        elif action == "remove":
            self.core.remove_member(node_id)
            self.addresses.pop(node_id, None)
            self.metadata.pop(node_id, None)
            self.liveness.forget(node_id)
            if self.link is not None:
                self.link.remove_peer(node_id)
        else:
            raise ConsensusError(f"simple_majority has no {action!r}: there is no leader")
        total = len(self.core.members)
        return ProposalResult(f"{self.id}/{action}/{node_id}", True, node_id,
                              Votes(1, 0, total), quorum_required(self.opts.quorum, total),
                              value=address)

    def _voters(self) -> frozenset[str]:
        return frozenset(self.core.members)

    # --- inputs ---------------------------------------------------------------------------

    def _on_first_run(self, now: float) -> None:
        for peer in sorted(self.core.members - {self.id}):
            if self.link is not None:
                self.link.add_peer(peer, self.addresses.get(peer))
            self.liveness.track(peer, now)

    def _on_ticks(self, ticks: int, now: float) -> None:
        self.core.tick(now)
        self._process()

    def _receive(self, packet: Packet, now: float) -> None:
        if not isinstance(packet, AppPacket):
            raise ValueError(f"simple_majority got a raft message {type(packet).__name__}")
        if packet.kind == "ping":
            return
        if packet.sender not in self.core.members:
            raise ValueError(f"{packet.kind} from {packet.sender}, not a member here")
        self.core.step(packet.sender, packet.kind, packet.body, now)
        self._process()

    def _process(self) -> None:
        """Do what the core asks, until it asks nothing more."""
        assert self.loop is not None
        while out := self.core.take():
            for to, kind, body in out.messages:
                self.send_app(to, kind, body)
            for proposal in out.votes_needed:
                self._ask_policy(proposal)
            for decision in out.to_apply:
                self._apply(decision)
            for decision in out.decisions:
                fut = self._futures.pop(decision.proposal.proposal_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(decision)
            for name, args, details in out.events:
                self.bus.emit(name, *args, **details)

    def _ask_policy(self, proposal: Proposal) -> None:
        assert self.loop is not None
        try:
            vote = self.vote_policy(proposal)
        except Exception:
            log.exception("node %s: the vote policy failed on %s; voting no", self.id,
                          proposal.proposal_id)
            vote = False
        if inspect.isawaitable(vote):
            task = asyncio.ensure_future(vote)
            self._policy_tasks.add(task)
            task.add_done_callback(lambda t, pid=proposal.proposal_id: self._policy_done(pid, t))
            return
        self.core.cast_vote(proposal.proposal_id, bool(vote), self.loop.time())

    def _policy_done(self, pid: str, task: asyncio.Task[Any]) -> None:
        self._policy_tasks.discard(task)
        if self.stopped or self.loop is None:
            return
        granted = False
        if not task.cancelled() and task.exception() is None:
            granted = bool(task.result())
        elif not task.cancelled():
            log.error("node %s: the vote policy failed on %s; voting no", self.id, pid,
                      exc_info=task.exception())
        self.core.cast_vote(pid, granted, self.loop.time())
        self._process()
        self.bus.flush()

    def _apply(self, decision: Decision) -> None:
        p = decision.proposal
        index = decision.index or 0
        ctx = ApplyContext(index, 0, p.timestamp_ms, p.proposer)
        result, events = self.kv.apply(p.command, ctx)
        self._results[p.proposal_id] = result
        self.bus.emit("log:appended", index, 0, key=p.key, op=p.command.get("op"),
                      first_index=index, count=1)
        for event in events:
            if event.get("type") == "state:changed":
                self.bus.emit("state:changed", event["key"], event["new"], event["old"],
                              version=event.get("version"), index=index, optimistic=False,
                              rolled_back=False)
            elif event.get("type") == "lock:changed":
                self.bus.emit("lock:changed", event["lock"], action=event["action"],
                              holder=event["holder"], token=event["token"],
                              expires_ms=event["expires_ms"])
        if isinstance(result, dict) and result.get("ok"):
            key, value = describe_command(p.command, result)
            self.bus.emit("consensus:accepted", key, value, proposal_id=p.proposal_id,
                          index=index, op=p.command.get("op"), result=result,
                          votes=Votes(decision.for_, decision.against, p.total))

    # --- the API ---------------------------------------------------------------------------

    async def submit(self, command: dict[str, Any], key: str | None, value: Any,
                     timeout: float) -> ProposalResult:
        if not self.started or self.loop is None:
            raise ConsensusError(f"node {self.id} is not started: call start() first")
        if self.stopped:
            raise ConsensusError(self.not_running_error())
        loop = self.loop
        pid = self.core.propose(key, value if key is not None else command, command,
                                loop.time(), int(time.time() * 1000), timeout)
        fut: asyncio.Future[Decision] = loop.create_future()
        self._futures[pid] = fut
        self._process()
        self.bus.flush()
        # the core times the proposal out itself; this bound only guards a stopped loop
        await asyncio.wait([fut], timeout=timeout + 1.0)
        if not fut.done() or fut.cancelled():
            self._futures.pop(pid, None)
            total = len(self.core.members)
            return ProposalResult(pid, False, key, Votes(0, 0, total),
                                  quorum_required(self.opts.quorum, total),
                                  "stopped" if self.stopped else "timeout", value)
        decision = fut.result()
        p = decision.proposal
        votes = Votes(decision.for_, decision.against, p.total)
        result = self._results.pop(pid, None)
        error = decision.error
        accepted = decision.accepted
        if accepted and not (isinstance(result, dict) and result.get("ok")):
            accepted = False  # voted in, but the machine refused (e.g. a failed CAS)
            error = result.get("error") if isinstance(result, dict) else "failed"
        if error is None and not accepted:
            error = "rejected"
        return ProposalResult(pid, accepted, key, votes, p.quorum_required, error, value,
                              decision.index, result)

    async def read_barrier(self, timeout: float) -> None:
        """No log to catch up with: a local read is all simple_majority offers."""

    def nodes(self) -> dict[str, NodeInfo]:
        return {nid: self.node_info(nid, "peer", True, False)
                for nid in sorted(self.core.members)}

    def debug_state(self) -> dict[str, Any]:
        return {
            "node_id": self.id,
            "mechanism": self.mechanism,
            "current_term": 0,
            "role": self.role,
            "leader_id": None,
            "commit_index": self.core.applied_index,
            "log_length": self.core.applied_index,
            "applied_index": self.core.applied_index,
            "members": sorted(self.core.members),
            "quorum": self.opts.quorum,
            "pending_own": len(self.core.own),
            "promised": len(self.core.my_votes),
        }

    @property
    def role(self) -> str:
        return "peer"

    def _on_stop(self) -> None:
        for task in self._policy_tasks:
            task.cancel()
        for fut in self._futures.values():
            fut.cancel()
        self._futures.clear()
