"""This raft node's own requests: proposals, linearizable reads, membership.

Each is asked of the leader -- ourselves (propose to the core directly) or
another node (forwarded, see ``raft_service``) -- until a final answer or the
deadline: a lost request or answer is resent, a leadership change resends to
the new leader at once, "not me" waits a little for news. Resending is safe
because every proposal travels in a "lane": a client session (thesis 6.3)
with at most one command in flight, so a resend carries the same client id and
sequence number, is applied at most once, and never overtakes a later command
of its session. A lane whose command has an unknown fate (timeout) is given up
for a new session.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nodes.raft.core import RaftNode
from nodes.raft.errors import NotLeader, TransferInProgress
from nodes.raft.ready import Role
from nodes.statemachine import BadCommand, encode_command

from .driver import Options
from .raft_service import _Pending, now_ms, request_id
from .types import ConsensusError, ProposalResult, Votes
from .wire import AppPacket

MAX_LANES = 64
RETRY_PAUSE = 0.02  # between attempts when no leader is known yet, in seconds
SESSION_RESTART_ERRORS = frozenset({"session_expired", "stale_sequence"})


@dataclass(slots=True)
class _Lane:
    client_id: str
    last_seq: int = 0


@dataclass(slots=True)
class _Lanes:
    """Client sessions, one command in flight each (see the module docstring)."""

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


class LeaderClient:
    """Mixed into ``RaftDriver``: the API's requests, asked of the leader."""

    id: str
    opts: Options
    loop: asyncio.AbstractEventLoop | None
    raft: RaftNode | None
    started: bool
    stopped: bool
    addresses: dict[str, str | None]
    counters: dict[str, int]
    last_applied: int
    _pending: dict[int, _Pending]
    _reads: dict[tuple[str, Any, int], asyncio.Future[dict[str, Any]] | None]
    _apply_waiters: list[tuple[int, asyncio.Future[None]]]
    _epoch: asyncio.Future[None] | None

    def _init_client(self) -> None:
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._rid = 0
        self._lanes = _Lanes(f"{self.id}/{secrets.token_hex(4)}")

    if TYPE_CHECKING:  # provided by the other parts of RaftDriver (declared for readers)
        def send_app(self, to: str, kind: str, body: dict[str, Any]) -> None: ...
        def not_running_error(self) -> str: ...
        def _drain(self) -> None: ...
        def _schedule_drain(self) -> None: ...
        def _ensure_core(self) -> RaftNode | None: ...
        def _voters(self) -> frozenset[str]: ...
        def _admin(self, action: str, node_id: str, address: str | None,
                   reply_to: tuple[str, int] | None = None,
                   future: asyncio.Future[dict[str, Any]] | None = None
                   ) -> dict[str, Any] | None: ...

    def _on_response(self, packet: AppPacket) -> None:
        fut = self._waiting.pop(request_id(packet), None)
        if fut is not None and not fut.done():
            fut.set_result(packet.body)

    def _next_rid(self) -> int:
        self._rid += 1
        return self._rid

    def _require_running(self) -> RaftNode | None:
        if not self.started or self.loop is None:
            raise ConsensusError(f"node {self.id} is not started: call start() first")
        if self.stopped:
            raise ConsensusError(self.not_running_error())
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
                    # read-your-writes: the answer came from the leader; make the
                    # change visible here too before returning
                    index = outcome.get("index")
                    if isinstance(index, int):
                        await self._applied_here(index, deadline)
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
        if not await self._applied_here(index, deadline):
            raise ConsensusError(f"node {self.id}: timed out applying up to {index} for a read")

    async def _applied_here(self, index: int, deadline: float) -> bool:
        """Wait until this node applied ``index`` (False if not by the deadline)."""
        if index <= self.last_applied:
            return True
        loop = self.loop
        assert loop is not None
        fut: asyncio.Future[None] = loop.create_future()
        self._apply_waiters.append((index, fut))
        await _wait_for(fut, deadline - loop.time())
        return fut.done() and not fut.cancelled()

    async def change_membership(self, action: str, node_id: str, address: str | None,
                                timeout: float, metadata: dict[str, Any] | None = None
                                ) -> ProposalResult:
        self._require_running()
        loop = self.loop
        assert loop is not None
        deadline = loop.time() + timeout
        if action == "add" and (address or metadata):
            record: dict[str, Any] = {"op": "set", "id": node_id}
            if address:
                self.addresses[node_id] = address
                record["address"] = address
            if metadata:
                record["metadata"] = metadata
            recorded = await self.submit(record, node_id, address, timeout, machine="members")
            if not recorded:
                return recorded

        def local() -> Any:
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            outcome = self._admin(action, node_id, address, future=fut)
            return fut if outcome is None else outcome

        body = {"action": action, "id": node_id, "address": address}
        outcome = await self._ask_leader("admin", body, deadline, local)
        return self._result(f"{self.id}/{action}/{node_id}", node_id, address, outcome)


async def _wait_for(fut: asyncio.Future[Any], timeout: float) -> Any:
    """The future's result, or None when it is not done within ``timeout``."""
    if not fut.done():
        await asyncio.wait([fut], timeout=max(0.0, timeout))
    if fut.done() and not fut.cancelled():
        return fut.result()
    return None
