"""The client's connection to a cluster: non-blocking, polled.

One DEALER per node (so switching node costs no reconnect), requests with ids
(pipelining allowed), and the rules a production client needs:

- follow the leader: a ``not_leader`` answer names the leader; the request is
  resent there at once;
- fail over: a request unanswered within ``request_timeout`` moves the link to
  the next node and is resent; after ``deadline`` it fails with ``Timeout``;
- back off: a request answered ``rate_limited`` is resent to the same node after
  a pause that doubles each time (``THROTTLE_PAUSE``), until ``deadline``;
- exactly once: every command carries (client_id, seq), fixed when it is made,
  so a resend after a failover is applied once by the cluster's session table.
  The first command (seq 1) opens the session and is sent alone; later ones may
  pipeline. Every command also carries ``first_outstanding``, the lowest seq this
  link has no answer for yet (thesis 6.3): the cluster keeps the results of all
  seqs from there on, so a command that failed on its way (a follower, a dead
  node) while a later one committed is still applied, once, when it is resent.

``poll()`` never blocks unless given a timeout; the pygame window calls it once
per frame, the blocking ``Client`` in a loop.

Security (``nodes.security``): when the cluster file turns CURVE on, every
socket is a CURVE client with the clients' key pair and each node's public key.
A link that makes its own client id binds it to a fresh session key, sent in
every request body (``session_key``) and never published, so no other client
can act under this id.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import parse_monitor_message

from nodes import codec, security
from nodes.clusterfile import ClusterFile
from nodes.codec import ClusterInfo, ErrorInfo, Request, Response, Update
from nodes.statemachine import BATCH_MACHINE

MAX_BATCH = 256  # commands per batch (one log entry)
RETRYABLE = {"not_leader", "transfer_in_progress", "unavailable", "timeout", "rate_limited"}
THROTTLE_PAUSE = (0.05, 1.0)  # s: the first pause after rate_limited, doubling up to the second


class ClientError(Exception):
    """Base class of the client's errors."""


class NotLeaderError(ClientError):
    def __init__(self, message: str, leader_id: str | None = None) -> None:
        super().__init__(message)
        self.leader_id = leader_id


class TimeoutError_(ClientError):
    """No node answered in time; the command may or may not have been applied.
    The link has given up on its sequence number: a copy still in flight is
    refused once a later command of this link commits, so it cannot be applied
    behind your back after that; submitting it again is a new command (check the
    state first if applying it twice would matter)."""


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
    throttled: int = 0  # rate_limited answers so far
    retry_at: float = 0.0  # while paused after rate_limited: when to resend
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
        session_key: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.cluster_id = cluster.cluster_id
        if client_id is None:  # a fresh id, bound to a session key only this link knows
            if session_key is None:
                client_id, session_key = security.new_session()
            else:
                client_id = security.session_client_id(session_key)
        self.client_id: str = client_id
        self.session_key = session_key  # None: a hand-picked, unbound id
        self.server_keys = cluster.security.server_public_keys
        self.curve = security.client_keys(cluster)  # None: plaintext
        self.request_timeout = request_timeout
        self.deadline = deadline
        self.ctx = ctx or zmq.Context.instance()
        self.nodes = {n.id: NodeState(n.id, n.client, n.pub) for n in cluster.nodes}
        self.dealers: dict[str, zmq.Socket] = {}
        self.monitors: dict[zmq.Socket, str] = {}
        self.down: set[str] = set()  # nodes whose connection dropped (until it is back)
        for n in self.nodes.values():
            self._dealer(n.id)
        self.info_sub = self.ctx.socket(zmq.SUB)
        self.info_sub.setsockopt(zmq.LINGER, 0)
        self.info_sub.setsockopt(zmq.SUBSCRIBE, codec.CLUSTER_TOPIC)
        for n in self.nodes.values():
            self._connect(self.info_sub, n.id, n.pub_addr)
        self.poller = zmq.Poller()
        self._rebuild_poller()
        self.current = prefer if prefer in self.nodes else next(iter(self.nodes))
        self._req_ids = itertools.count(1)
        self.inflight: dict[int, Call] = {}
        self.queued: list[Call] = []
        self.paused: list[Call] = []  # rate limited: resent at their retry_at
        self.seq = 0
        self.unanswered: set[int] = set()  # seqs handed out and not answered yet
        self.session_open = False
        self.batching = True
        self._batch: list[Call] = []
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
        # a killed node's TCP connection closes at once: watching for it lets the
        # link resend elsewhere now instead of after a request timeout
        mon = d.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
        self.monitors[mon] = nid
        self._connect(d, nid, self.nodes[nid].client_addr)
        self.dealers[nid] = d
        return d

    def _drain_monitors(self) -> None:
        for mon, nid in self.monitors.items():
            while True:
                try:
                    event = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if event["event"] == zmq.EVENT_CONNECTED:
                    self.down.discard(nid)
                else:
                    self._on_disconnect(nid)

    def _on_disconnect(self, nid: str) -> None:
        """``nid`` dropped its connection (crashed or stopped): what waits on it goes
        elsewhere at once (a resend is safe: commands carry their sequence number),
        and a stale "the leader is nid" from another node is not followed back."""
        self.down.add(nid)
        self.nodes[nid].failures += 1
        if nid == self.current:
            self._mark_lost(nid)
            self._rotate()
        for c in list(self.inflight.values()):
            if c.answered_by == nid and not c.node:
                self._send(c)

    def _connect(self, sock: zmq.Socket, nid: str, addr: str) -> None:
        if self.curve is not None:
            key = self.server_keys.get(nid)
            if key is None:
                raise security.SecurityError(f"no [security] server_public_keys entry for {nid}")
            security.make_client(sock, self.curve, key)
        sock.connect(addr)

    def _rebuild_poller(self) -> None:
        self.poller = zmq.Poller()
        for d in self.dealers.values():
            self.poller.register(d, zmq.POLLIN)
        for mon in self.monitors:
            self.poller.register(mon, zmq.POLLIN)
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
        self._connect(s, nid, self.nodes[nid].pub_addr)
        self.update_sub = s
        self.update_node = nid
        self._rebuild_poller()

    # --- requests -------------------------------------------------------------------

    def call(self, kind: str, body: dict, on_done: Callable[[Call], None] | None = None,
             node: str | None = None) -> Call:
        c = Call(kind, body, on_done, created_at=time.monotonic())
        if node is not None:
            c.node = node
        if kind == "submit" and type(body.get("seq")) is int:
            self.unanswered.add(body["seq"])
        if kind == "submit" and not self.session_open and (self.inflight_submits() or self.queued):
            self.queued.append(c)  # the session's first command goes alone
            return c
        self._send(c)
        return c

    def submit(self, machine: str, cmd: dict, on_done: Callable[[Call], None] | None = None) -> Call:
        """A command, with the next sequence number (kept across resends).

        Batching without delay: a command made while others are in flight waits
        for the next ``poll()``, which sends everything waiting as one batch under
        one sequence number (one log entry, one answer); a command made when
        nothing is in flight goes at once, alone."""
        if self.session_open and self.batching and self.inflight_submits():
            c = Call("submit", {"machine": machine, "cmd": cmd}, on_done,
                     created_at=time.monotonic())
            self._batch.append(c)
            return c
        self.seq += 1
        return self.call("submit", {"machine": machine, "seq": self.seq, "cmd": cmd}, on_done)

    def _flush_batch(self) -> None:
        """Send the commands waiting since the last poll: alone, or as one batch."""
        while self._batch:
            group, self._batch = self._batch[:MAX_BATCH], self._batch[MAX_BATCH:]
            self.seq += 1
            if len(group) == 1:
                c = group[0]
                c.body = {**c.body, "seq": self.seq}
                self.unanswered.add(self.seq)
                self._send(c)
                continue
            items = [{"m": c.body["machine"], "cmd": c.body["cmd"]} for c in group]

            def split(batch: Call, group: list[Call] = group) -> None:
                results = batch.result.get("results") if batch.ok and isinstance(
                    batch.result, dict) else None
                for k, c in enumerate(group):
                    if isinstance(results, list) and k < len(results):
                        self._finish(c, True, results[k], batch.index, None)
                    else:
                        self._finish(c, False, None, 0, batch.error or ErrorInfo(
                            "unavailable", "the batch failed"))

            self.call("submit", {"machine": BATCH_MACHINE, "seq": self.seq,
                                 "cmd": {"batch": items}}, split)

    def inflight_submits(self) -> int:
        """Submits sent and not answered, or paused to be sent again."""
        return sum(1 for c in [*self.inflight.values(), *self.paused] if c.kind == "submit")

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
        body = c.body
        if c.kind == "submit" and self.unanswered:
            # recomputed at every resend: the floor only rises as answers arrive
            body = {**body, "first_outstanding": min(self.unanswered)}
        if self.session_key is not None:
            body = {**body, security.SESSION_KEY_FIELD: self.session_key}
        frame = codec.encode_request(self.cluster_id, Request(c.req_id, self.client_id, c.kind, body))
        try:
            self.dealers[target].send(frame, zmq.NOBLOCK)
        except zmq.Again:
            pass  # the timeout path resends elsewhere

    def poll(self, timeout_ms: float = 0) -> None:
        if self._batch:
            self._flush_batch()
        events = dict(self.poller.poll(timeout_ms))
        if any(m in events for m in self.monitors):
            self._drain_monitors()
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
        if self.paused:
            self._resume_paused()
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
            if err.code == "rate_limited":
                # nothing was done: pause, then resend (to the node the link talks to)
                low, high = THROTTLE_PAUSE
                c.retry_at = now + min(high, low * 2 ** c.throttled)
                c.throttled += 1
                self.paused.append(c)
                return
            if (err.code == "not_leader" and err.leader_id in self.nodes
                    and err.leader_id != nid and err.leader_id not in self.down):
                self._switch(err.leader_id)
                self._send(c)
            else:
                # no leader known yet: wait a little, then retry (the timeout path)
                c.sent_at = now - self.request_timeout + min(0.02, self.request_timeout / 2)
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

    def _resume_paused(self) -> None:
        now = time.monotonic()
        due = [c for c in self.paused if c.retry_at <= now]
        if not due:
            return
        self.paused = [c for c in self.paused if c.retry_at > now]
        for c in due:
            c.retry_at = 0.0
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
                    "command may or may not have been applied; check before sending it again"))
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
            lead = n.info.leader_id if n.info else None
            if lead in self.nodes and lead != self.current and lead not in self.down:
                self._switch(lead)
                return
        k = ids.index(self.current)
        # the next node, skipping the ones whose connection is down
        order = ids[k + 1 :] + ids[: k + 1]
        self._switch(next((n for n in order if n not in self.down), order[0]))

    def _switch(self, nid: str) -> None:
        if nid == self.current:
            return
        old, self.current = self.current, nid
        if self.on_switch is not None:
            self.on_switch(old, nid)

    def _finish(self, c: Call, ok: bool, result: object, index: int, error: ErrorInfo | None) -> None:
        c.done, c.ok, c.result, c.index, c.error = True, ok, result, index, error
        if c.kind == "submit":
            # answered, or given up on: a late copy of it that commits after this
            # link's next command gets stale_sequence, never an application
            self.unanswered.discard(c.body.get("seq"))  # type: ignore[arg-type]
        if c.on_done is not None:
            c.on_done(c)

    def wait(self, c: Call) -> Call:
        while not c.done:
            self.poll(10)
        return c

    def close(self) -> None:
        for mon in self.monitors:
            mon.close(0)
        for d in self.dealers.values():
            d.disable_monitor()
            d.close(0)
        self.info_sub.close(0)
        if self.update_sub is not None:
            self.update_sub.close(0)
