"""The client's connection to a cluster: non-blocking, polled.

One DEALER per node (so switching node costs no reconnect), requests with ids
(pipelining allowed), and the rules a production client needs:

- follow the leader: a ``not_leader`` answer names the leader; the request is
  resent there at once;
- fail over: a request unanswered within ``request_timeout`` moves the link to
  the next node and is resent; after ``deadline`` it fails with ``Timeout``;
- exactly once: every command carries (client_id, seq), fixed when it is made,
  so a resend after a failover is applied once by the cluster's session table.
  The first command (seq 1) opens the session and is sent alone; later ones may
  pipeline.

``poll()`` never blocks unless given a timeout; the pygame window calls it once
per frame, the blocking ``Client`` in a loop.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from nodes import codec
from nodes.clusterfile import ClusterFile
from nodes.codec import ClusterInfo, ErrorInfo, Request, Response, Update

RETRYABLE = {"not_leader", "transfer_in_progress", "unavailable", "timeout"}


class ClientError(Exception):
    """Base class of the client's errors."""


class NotLeaderError(ClientError):
    def __init__(self, message: str, leader_id: str | None = None) -> None:
        super().__init__(message)
        self.leader_id = leader_id


class TimeoutError_(ClientError):
    """No node answered in time; the command may or may not have been applied
    (retrying the same call is safe: it carries the same sequence number)."""


class Rejected(ClientError):
    """The cluster answered: no (the reason is in the message and ``code``)."""

    def __init__(self, code: str, message: str, result: object = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.result = result


class Unavailable(ClientError):
    """No node of the cluster could be reached."""


@dataclass(slots=True)
class Call:
    """One request in flight; ``done`` once answered or failed."""

    kind: str
    body: dict
    on_done: Callable[[Call], None] | None = None
    req_id: int = 0
    node: str = ""
    sent_at: float = 0.0
    created_at: float = 0.0
    attempts: int = 0
    done: bool = False
    ok: bool = False
    result: object = None
    index: int = 0
    error: ErrorInfo | None = None
    answered_by: str = ""

    def raise_for_error(self) -> object:
        if self.ok:
            return self.result
        e = self.error or ErrorInfo("unavailable", "no answer")
        if e.code == "timeout":
            raise TimeoutError_(e.message)
        if e.code == "unavailable":
            raise Unavailable(e.message)
        if e.code == "not_leader":
            raise NotLeaderError(e.message, e.leader_id)
        raise Rejected(e.code, e.message)


@dataclass(slots=True)
class NodeState:
    id: str
    client_addr: str
    pub_addr: str
    info: ClusterInfo | None = None
    info_at: float = 0.0
    failures: int = 0


@dataclass(slots=True)
class LinkStats:
    rtts_ms: list[float] = field(default_factory=list)
    failovers: list[tuple[float, str, str, float]] = field(default_factory=list)  # (at, from, to, ms)


class ClusterLink:
    def __init__(
        self,
        cluster: ClusterFile,
        client_id: str | None = None,
        request_timeout: float = 0.5,
        deadline: float = 10.0,
        ctx: zmq.Context | None = None,
        prefer: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.cluster_id = cluster.cluster_id
        self.client_id = client_id or f"c-{uuid.uuid4().hex[:12]}"
        self.request_timeout = request_timeout
        self.deadline = deadline
        self.ctx = ctx or zmq.Context.instance()
        self.nodes = {n.id: NodeState(n.id, n.client, n.pub) for n in cluster.nodes}
        self.dealers: dict[str, zmq.Socket] = {}
        for n in self.nodes.values():
            self._dealer(n.id)
        self.info_sub = self.ctx.socket(zmq.SUB)
        self.info_sub.setsockopt(zmq.LINGER, 0)
        self.info_sub.setsockopt(zmq.SUBSCRIBE, codec.CLUSTER_TOPIC)
        for n in self.nodes.values():
            self.info_sub.connect(n.pub_addr)
        self.poller = zmq.Poller()
        self._rebuild_poller()
        self.current = prefer if prefer in self.nodes else next(iter(self.nodes))
        self._req_ids = itertools.count(1)
        self.inflight: dict[int, Call] = {}
        self.queued: list[Call] = []
        self.seq = 0
        self.session_open = False
        self.stats = LinkStats()
        self._lost_at: float | None = None
        self._lost_node = ""
        self.on_update: Callable[[str, Update], None] | None = None
        self.on_switch: Callable[[str, str], None] | None = None
        self.update_sub: zmq.Socket | None = None
        self.update_node = ""

    def _dealer(self, nid: str) -> zmq.Socket:
        d = self.ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.LINGER, 0)
        d.setsockopt(zmq.SNDHWM, 10_000)
        d.connect(self.nodes[nid].client_addr)
        self.dealers[nid] = d
        return d

    def _rebuild_poller(self) -> None:
        self.poller = zmq.Poller()
        for d in self.dealers.values():
            self.poller.register(d, zmq.POLLIN)
        self.poller.register(self.info_sub, zmq.POLLIN)
        if getattr(self, "update_sub", None) is not None:
            self.poller.register(self.update_sub, zmq.POLLIN)

    # --- the update stream (Clone pattern: subscribe first, then snapshot) -------------

    def follow_updates(self, nid: str) -> None:
        """Subscribe to ``nid``'s applied updates (replacing any other subscription)."""
        if self.update_sub is not None:
            self.update_sub.close(0)
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 100_000)
        s.setsockopt(zmq.SUBSCRIBE, codec.UPDATE_TOPIC)
        s.connect(self.nodes[nid].pub_addr)
        self.update_sub = s
        self.update_node = nid
        self._rebuild_poller()

    # --- requests -------------------------------------------------------------------

    def call(self, kind: str, body: dict, on_done: Callable[[Call], None] | None = None,
             node: str | None = None) -> Call:
        c = Call(kind, body, on_done, created_at=time.monotonic())
        if node is not None:
            c.node = node
        if kind == "submit" and not self.session_open and (self.inflight_submits() or self.queued):
            self.queued.append(c)  # the session's first command goes alone
            return c
        self._send(c)
        return c

    def submit(self, machine: str, cmd: dict, on_done: Callable[[Call], None] | None = None) -> Call:
        """A command, with the next sequence number (kept across resends)."""
        self.seq += 1
        return self.call("submit", {"machine": machine, "seq": self.seq, "cmd": cmd}, on_done)

    def inflight_submits(self) -> int:
        return sum(1 for c in self.inflight.values() if c.kind == "submit")

    def _send(self, c: Call) -> None:
        now = time.monotonic()
        target = c.node or self.current
        if c.req_id:
            self.inflight.pop(c.req_id, None)
        c.req_id = next(self._req_ids)
        c.node = target if c.node else ""
        c.answered_by = target
        c.sent_at = now
        c.attempts += 1
        self.inflight[c.req_id] = c
        frame = codec.encode_request(self.cluster_id, Request(c.req_id, self.client_id, c.kind, c.body))
        try:
            self.dealers[target].send(frame, zmq.NOBLOCK)
        except zmq.Again:
            pass  # the timeout path resends elsewhere

    def poll(self, timeout_ms: float = 0) -> None:
        events = dict(self.poller.poll(timeout_ms))
        for nid, d in self.dealers.items():
            if d not in events:
                continue
            while True:
                try:
                    frame = d.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    resp = codec.decode_response(frame, self.cluster_id)
                except codec.ProtocolError:
                    continue
                self._on_response(nid, resp)
        if self.info_sub in events:
            self._drain_info()
        if self.update_sub is not None and self.update_sub in events:
            self._drain_updates()
        self._check_timeouts()

    def _drain_info(self) -> None:
        while True:
            try:
                _topic, payload = self.info_sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue
            try:
                info = codec.decode_cluster_info(payload, self.cluster_id)
            except codec.ProtocolError:
                continue
            n = self.nodes.get(info.node_id)
            if n is not None:
                n.info, n.info_at = info, time.monotonic()

    def _drain_updates(self) -> None:
        assert self.update_sub is not None
        while True:
            try:
                parts = self.update_sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                continue
            try:
                upd = codec.decode_update(parts[1], self.cluster_id)
            except codec.ProtocolError:
                continue
            if self.on_update is not None:
                self.on_update(self.update_node, upd)

    def _on_response(self, nid: str, resp: Response) -> None:
        c = self.inflight.get(resp.req_id)
        if c is None:
            return  # a late answer to a request already resent
        now = time.monotonic()
        self.nodes[nid].failures = 0
        if resp.ok:
            self.inflight.pop(resp.req_id)
            self.stats.rtts_ms.append((now - c.sent_at) * 1000)
            del self.stats.rtts_ms[:-100]
            if c.kind == "submit":
                self.session_open = True
                self._flush_queue()
            if self._lost_at is not None and c.kind == "submit":
                self.stats.failovers.append((time.time(), self._lost_node, nid,
                                             (now - self._lost_at) * 1000))
                self._lost_at = None
            self._finish(c, True, resp.result, resp.index, None)
            return
        err = resp.error or ErrorInfo("unavailable", "empty error")
        if err.code in RETRYABLE and now - c.created_at < self.deadline and not c.node:
            self.inflight.pop(resp.req_id)
            if err.code == "not_leader" and err.leader_id in self.nodes and err.leader_id != nid:
                self._switch(err.leader_id)
                self._send(c)
            else:
                # no leader known yet: wait a little, then retry (the timeout path)
                c.sent_at = now - self.request_timeout + min(0.05, self.request_timeout / 2)
                self.inflight[c.req_id] = c
                if err.leader_id is None and nid == self.current:
                    self._rotate()
            return
        self.inflight.pop(resp.req_id)
        if c.kind == "submit" and err.code not in RETRYABLE:
            self.session_open = True
            self._flush_queue()
        self._finish(c, False, None, 0, err)

    def _flush_queue(self) -> None:
        queued, self.queued = self.queued, []
        for c in queued:
            self._send(c)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for c in list(self.inflight.values()):
            if now - c.sent_at < self.request_timeout:
                continue
            if now - c.created_at >= self.deadline:
                self.inflight.pop(c.req_id, None)
                self._finish(c, False, None, 0, ErrorInfo(
                    "timeout", f"no answer within {self.deadline:.1f}s from any node; the "
                    "command may or may not have been applied (retrying is safe)"))
                continue
            if c.node:
                self._send(c)
                continue
            if c.answered_by == self.current:
                self.nodes[self.current].failures += 1
                self._mark_lost(self.current)
                self._rotate()
            self._send(c)

    def _mark_lost(self, nid: str) -> None:
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            self._lost_node = nid

    def _rotate(self) -> None:
        """Move to the node most likely to lead: one that says it leads, else the next."""
        ids = list(self.nodes)
        fresh = [n for n in self.nodes.values()
                 if n.info and n.id != self.current and time.monotonic() - n.info_at < 1.0]
        for n in sorted(fresh, key=lambda n: -(n.info.term if n.info else 0)):
            if n.info and n.info.leader_id in self.nodes and n.info.leader_id != self.current:
                self._switch(n.info.leader_id)
                return
        k = ids.index(self.current)
        self._switch(ids[(k + 1) % len(ids)])

    def _switch(self, nid: str) -> None:
        if nid == self.current:
            return
        old, self.current = self.current, nid
        if self.on_switch is not None:
            self.on_switch(old, nid)

    def _finish(self, c: Call, ok: bool, result: object, index: int, error: ErrorInfo | None) -> None:
        c.done, c.ok, c.result, c.index, c.error = True, ok, result, index, error
        if c.on_done is not None:
            c.on_done(c)

    def wait(self, c: Call) -> Call:
        while not c.done:
            self.poll(10)
        return c

    def close(self) -> None:
        for d in self.dealers.values():
            d.close(0)
        self.info_sub.close(0)
        if self.update_sub is not None:
            self.update_sub.close(0)
