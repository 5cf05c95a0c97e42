"""Many bots in one process, spread over many rooms: ``arena bots --count N --rooms M``.

One poll loop drives every bot; nothing here is a thread or a process per bot.
What the bots share, so that 800 of them fit in one process on two cores:

- **Lanes, not a link per bot.** A lane is one DEALER per node; each request
  names its own client id (the protocol allows it), so up to ``ids_per_lane``
  bots share a lane. Not one lane for all: the server's per-connection rate
  limit (``[options] rate_limit``, e.g. 200 requests/s under ``--secure``)
  counts a connection's requests whatever their client ids, and 800 bots at
  1-2 actions/s would be throttled as one client. ``ids_per_lane`` (50) keeps a
  lane near 100 requests/s at human pace.
- **One subscription per room.** One SUB socket follows one node (a follower
  first) with a topic per room; each room's view is kept once, by the Clone
  pattern (a read at that node, then the ``room/<id>/`` stream chained by
  ``prev``, as ``client.rooms.RoomsClient`` does) and read by its four bots.
- **Bots wake when something concerns them**: their room changed, their
  command was answered, or their own timer (think time, lobby wait) is due.

Each bot is ``client.bots.Bot`` (the same policy as ``arena bots``) over a
``_SeatSession`` that sends its commands to its room. Exactly once as in
``client.link``: every bot has its own client id and sequence numbers, one
command in flight at a time, resent with the same seq after a failover.

Measured (``FarmStats``): commands acknowledged, hits accepted, and the
hit -> broadcast latency: from sending a hit to seeing the room's stream
update that carries it (the ``sync`` record of the hit), on the node the farm
follows. The live line's ``failovers`` counts the times the farm's requests
moved to another node after losing one (its connection dropped, or a request
went unanswered for ``request_timeout``: on a loaded machine that happens
without any node dying).
"""

from __future__ import annotations

import itertools
import math
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from nodes import codec, security
from nodes.clusterfile import ClusterFile
from nodes.codec import ErrorInfo, Request, Update
from nodes.rooms_feed import room_topic

from .bots import Bot

MACHINE = "rooms"
IDS_PER_LANE = 50
RETRYABLE = {"not_leader", "transfer_in_progress", "unavailable", "timeout", "rate_limited",
             "rooms_starting"}
THROTTLE_PAUSE = (0.05, 1.0)
SUB_SILENT_S = 1.0
WAKE_EVERY_S = 0.25  # a bot with nothing new still looks this often (lobby wait, pings)
TIMEOUT_CHECK_S = 0.02


@dataclass(slots=True, eq=False)
class FarmCall:
    """One request in flight (the attributes ``client.bots.Bot`` reads: done, result, error)."""

    kind: str
    body: dict
    client_id: str
    lane: int
    on_done: Callable[[FarmCall], None] | None = None
    session_key: str | None = None
    pinned: str = ""  # a node this call must go to (reads of the followed node)
    req_id: int = 0
    node: str = ""
    sent_at: float = 0.0
    created_at: float = 0.0
    retry_at: float = 0.0
    throttled: int = 0
    done: bool = False
    ok: bool = False
    result: Any = None
    index: int = 0
    error: ErrorInfo | None = None


class FarmLink:
    """Requests of many client ids over a few lanes, following the leader."""

    def __init__(self, cluster: ClusterFile, lanes: int, request_timeout: float = 0.5,
                 deadline: float = 15.0, ctx: zmq.Context | None = None) -> None:
        self.cluster = cluster
        self.cluster_id = cluster.cluster_id
        self.ctx = ctx or zmq.Context.instance()
        self.curve = security.client_keys(cluster)
        self.request_timeout = request_timeout
        self.deadline = deadline
        self.nodes = {n.id: n for n in cluster.nodes}
        self.ids = list(self.nodes)
        self.lanes: list[dict[str, zmq.Socket]] = []
        self.owner: dict[zmq.Socket, str] = {}  # dealer -> node id
        self.monitors: dict[zmq.Socket, str] = {}
        self.down: set[str] = set()
        for k in range(max(1, lanes)):
            lane = {}
            for nid, n in self.nodes.items():
                d = self.ctx.socket(zmq.DEALER)
                d.setsockopt(zmq.LINGER, 0)
                d.setsockopt(zmq.SNDHWM, 10_000)
                if k == 0:  # one monitor per node tells a dead node at once
                    mon = d.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
                    self.monitors[mon] = nid
                self.connect(d, nid, n.client)
                lane[nid] = d
                self.owner[d] = nid
            self.lanes.append(lane)
        self.info_sub = self.ctx.socket(zmq.SUB)
        self.info_sub.setsockopt(zmq.LINGER, 0)
        self.info_sub.setsockopt(zmq.SUBSCRIBE, codec.CLUSTER_TOPIC)
        for nid, n in self.nodes.items():
            self.connect(self.info_sub, nid, n.pub)
        self.leader = self.ids[0]
        self.leader_term = -1
        self.failovers = 0
        self.throttled = 0  # rate_limited answers (each resent after a pause)
        self.inflight: dict[int, FarmCall] = {}
        self.paused: list[FarmCall] = []
        self._req_ids = itertools.count(1)
        self._checked_at = 0.0
        self.extra: dict[zmq.Socket, Callable[[], None]] = {}
        self.poller = zmq.Poller()
        self.rebuild_poller()

    def connect(self, sock: zmq.Socket, nid: str, addr: str) -> None:
        if self.curve is not None:
            security.make_client(sock, self.curve, self.cluster.security.server_public_keys[nid])
        sock.connect(addr)

    def rebuild_poller(self) -> None:
        self.poller = zmq.Poller()
        for sock in [*self.owner, *self.monitors, self.info_sub, *self.extra]:
            self.poller.register(sock, zmq.POLLIN)

    def call(self, kind: str, body: dict, client_id: str, lane: int,
             on_done: Callable[[FarmCall], None] | None = None, session_key: str | None = None,
             node: str = "") -> FarmCall:
        c = FarmCall(kind, body, client_id, lane % len(self.lanes), on_done, session_key, node,
                     created_at=time.monotonic())
        self._send(c)
        return c

    def _send(self, c: FarmCall) -> None:
        self.inflight.pop(c.req_id, None)
        c.req_id = next(self._req_ids)
        c.node = c.pinned or self.leader
        c.sent_at = time.monotonic()
        self.inflight[c.req_id] = c
        body = c.body if c.session_key is None else {**c.body,
                                                     security.SESSION_KEY_FIELD: c.session_key}
        frame = codec.encode_request(self.cluster_id, Request(c.req_id, c.client_id, c.kind, body))
        try:
            self.lanes[c.lane][c.node].send(frame, zmq.NOBLOCK)
        except zmq.Again:
            pass  # the timeout path resends

    def poll(self, timeout_ms: float) -> None:
        events = dict(self.poller.poll(timeout_ms))
        for sock in events:
            if sock in self.owner:
                self._drain_dealer(sock)
            elif sock in self.monitors:
                self._drain_monitor(sock)
            elif sock is self.info_sub:
                self._drain_info()
            elif sock in self.extra:
                self.extra[sock]()
        now = time.monotonic()
        if self.paused:
            due = [c for c in self.paused if c.retry_at <= now]
            if due:
                self.paused = [c for c in self.paused if c.retry_at > now]
                for c in due:
                    self._send(c)
        if now - self._checked_at >= TIMEOUT_CHECK_S:
            self._checked_at = now
            self._check_timeouts(now)

    def _drain_dealer(self, d: zmq.Socket) -> None:
        nid = self.owner[d]
        while True:
            try:
                frame = d.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                resp = codec.decode_response(frame, self.cluster_id)
            except codec.ProtocolError:
                continue
            c = self.inflight.get(resp.req_id)
            if c is None:
                continue  # a late answer to a request already resent
            if resp.ok:
                del self.inflight[resp.req_id]
                result = resp.result
                if (isinstance(result, dict) and result.get("error") == "rooms_starting"
                        and time.monotonic() - c.created_at < self.deadline):
                    c.retry_at = time.monotonic() + 0.05  # the secret is being committed
                    self.paused.append(c)
                    continue
                self._finish(c, True, result, resp.index, None)
                continue
            self._on_error(c, nid, resp.error or ErrorInfo("unavailable", "empty error"))

    def _on_error(self, c: FarmCall, nid: str, err: ErrorInfo) -> None:
        now = time.monotonic()
        if err.code not in RETRYABLE or now - c.created_at >= self.deadline:
            del self.inflight[c.req_id]
            self._finish(c, False, None, 0, err)
            return
        if err.code == "rate_limited":
            self.throttled += 1
            del self.inflight[c.req_id]
            low, high = THROTTLE_PAUSE
            c.retry_at = now + min(high, low * 2 ** c.throttled)
            c.throttled += 1
            self.paused.append(c)
            return
        if c.pinned:
            c.sent_at = now - self.request_timeout + 0.02  # ask the same node again soon
            return
        if err.code == "not_leader" and err.leader_id in self.nodes and err.leader_id != nid \
                and err.leader_id not in self.down:
            self._switch(err.leader_id, lost=False)
            self._send(c)
            return
        c.sent_at = now - self.request_timeout + 0.02  # no leader known yet: retry in 20 ms
        if nid == self.leader:
            self._rotate()

    def _drain_monitor(self, mon: zmq.Socket) -> None:
        nid = self.monitors[mon]
        while True:
            try:
                event = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_CONNECTED:
                self.down.discard(nid)
                continue
            self.down.add(nid)
            if nid == self.leader:
                self._rotate()
            for c in list(self.inflight.values()):
                if c.node == nid and not c.pinned:
                    self._send(c)

    def _drain_info(self) -> None:
        while True:
            try:
                parts = self.info_sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                continue
            try:
                info = codec.decode_cluster_info(parts[1], self.cluster_id)
            except codec.ProtocolError:
                continue
            if (info.role == "leader" and info.node_id in self.nodes
                    and info.term > self.leader_term and info.node_id not in self.down):
                self.leader_term = info.term
                self._switch(info.node_id, lost=info.node_id != self.leader and self.leader_term > 0)

    def _check_timeouts(self, now: float) -> None:
        rotated = False
        for c in list(self.inflight.values()):
            if now - c.sent_at < self.request_timeout:
                continue
            if now - c.created_at >= self.deadline:
                del self.inflight[c.req_id]
                self._finish(c, False, None, 0, ErrorInfo(
                    "timeout", f"no answer within {self.deadline:g}s from any node; the command "
                    "may or may not have been applied"))
                continue
            if not c.pinned and c.node == self.leader and not rotated:
                self._rotate()
                rotated = True
            self._send(c)

    def _rotate(self) -> None:
        k = self.ids.index(self.leader)
        order = self.ids[k + 1:] + self.ids[:k + 1]
        self._switch(next((n for n in order if n not in self.down), order[0]), lost=True)

    def _switch(self, nid: str, lost: bool) -> None:
        if nid != self.leader:
            self.leader = nid
            if lost:
                self.failovers += 1

    def _finish(self, c: FarmCall, ok: bool, result: Any, index: int,
                error: ErrorInfo | None) -> None:
        c.done, c.ok, c.result, c.index, c.error = True, ok, result, index, error
        if c.on_done is not None:
            c.on_done(c)

    def close(self) -> None:
        for sock in self.extra:
            sock.close(0)
        for mon in self.monitors:
            mon.close(0)
        for d in self.lanes[0].values():
            d.disable_monitor()
        for lane in self.lanes:
            for d in lane.values():
                d.close(0)
        self.info_sub.close(0)


# --- the rooms' views: one subscription, a topic per room ------------------------------------


@dataclass(slots=True)
class RoomFeed:
    """One room's view as ``public_room`` shows it, kept from a read plus its stream."""

    room: str
    view: dict[str, Any] | None = None
    index: int = -1  # -1: not read yet (updates are held)
    held: list[Update] = field(default_factory=list)
    reading: FarmCall | None = None
    resyncs: int = 0
    min_index: int = 0  # the room exists from this index on (its create's answer)


class RoomFeeds:
    """Every room the farm plays in, on one SUB socket following one node."""

    def __init__(self, link: FarmLink, reader_id: str,
                 on_update: Callable[[str, Update, float], None]) -> None:
        self.link = link
        self.reader_id = reader_id
        self.on_update = on_update  # (room, update, now) after it was applied
        self.on_read: Callable[[str], None] | None = None
        self.rooms: dict[str, RoomFeed] = {}
        self.sub: zmq.Socket | None = None
        self.node = ""
        self.live = False
        self.heard = 0.0
        self.moves = 0
        self.clock_offset_ms = 0

    def watch(self, room: str, min_index: int = 0) -> None:
        """Keep ``room``'s view; ``min_index``: the room exists from that index on (a node
        that answers an older state has not applied its creation yet)."""
        if room in self.rooms:
            return
        self.rooms[room] = RoomFeed(room, min_index=min_index)
        if self.sub is None:
            self.subscribe()
            return
        self.sub.setsockopt(zmq.SUBSCRIBE, room_topic(room))
        if self.live:
            self._read(self.rooms[room])

    def view(self, room: str) -> dict[str, Any] | None:
        feed = self.rooms.get(room)
        return feed.view if feed is not None and feed.index >= 0 else None

    def pick_node(self) -> str:
        up = [n for n in self.link.ids if n not in self.link.down]
        followers = [n for n in up if n != self.link.leader]
        if self.node in followers and len(followers) > 1:
            followers.remove(self.node)  # moving: try another one first
        return (followers or up or self.link.ids)[0]

    def subscribe(self, node: str | None = None) -> None:
        if self.sub is not None:
            self.link.extra.pop(self.sub, None)
            self.sub.close(0)
            self.moves += 1
        node = node or self.pick_node()
        s = self.link.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 1_000_000)
        for room in self.rooms:
            s.setsockopt(zmq.SUBSCRIBE, room_topic(room))
        s.setsockopt(zmq.SUBSCRIBE, codec.CLUSTER_TOPIC)  # last: hearing it confirms the rest
        self.link.connect(s, node, self.link.nodes[node].pub)
        self.sub, self.node, self.live, self.heard = s, node, False, time.monotonic()
        for feed in self.rooms.values():
            feed.index, feed.held, feed.reading = -1, [], None
        self.link.extra[s] = self.drain
        self.link.rebuild_poller()

    def check(self) -> None:
        if self.sub is None:
            return
        if self.node in self.link.down or time.monotonic() - self.heard > SUB_SILENT_S:
            self.subscribe()

    def drain(self) -> None:
        assert self.sub is not None
        sub = self.sub
        for _ in range(100_000):
            try:
                topic, payload = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue
            if topic == codec.CLUSTER_TOPIC:
                self.heard = time.monotonic()
                if not self.live:
                    self.live = True
                    for feed in self.rooms.values():
                        self._read(feed)
                continue
            feed = self.rooms.get(topic[5:-1].decode(errors="replace"))
            if feed is None:
                continue
            try:
                upd = codec.decode_update(payload, self.link.cluster_id)
            except codec.ProtocolError:
                continue
            self._on_stream(feed, upd)

    def _on_stream(self, feed: RoomFeed, upd: Update) -> None:
        if feed.index < 0:
            feed.held.append(upd)
            return
        if upd.index <= feed.index:
            return
        prev = upd.result.get("prev") if isinstance(upd.result, dict) else None
        if prev is None or prev > feed.index:
            feed.resyncs += 1  # missed one: read the room again
            feed.index, feed.held = -1, [upd]
            self._read(feed)
            return
        self._apply(feed, upd)
        feed.index = upd.index

    def _apply(self, feed: RoomFeed, upd: Update) -> None:
        from game import rooms as room_rules

        if feed.view is None:
            return
        now = time.monotonic()
        self.clock_offset_ms = max(self.clock_offset_ms, upd.clock_ms - int(time.time() * 1000))
        for event in upd.events:
            if event.get("type") == "sync":
                room_rules.apply_sync(feed.view, event["op"])
            elif event.get("type") == "room_row":
                feed.view["row"] = event["row"]
            elif event.get("type") == "room_closed":
                feed.view = None
                break
        self.on_update(feed.room, upd, now)

    def _read(self, feed: RoomFeed) -> None:
        if feed.reading is not None and not feed.reading.done:
            return
        feed.reading = self.link.call(
            "read", {"machine": MACHINE, "query": {"op": "room", "room": feed.room},
                     "linearizable": False},
            self.reader_id, 0, on_done=lambda c, f=feed: self._on_read(f, c), node=self.node)

    def _on_read(self, feed: RoomFeed, call: FarmCall) -> None:
        if call is not feed.reading or call.pinned != self.node:
            return
        feed.reading = None
        result = call.result if isinstance(call.result, dict) else {}
        if not call.ok or not result.get("ok"):
            # no_such_room from a node behind the room's creation (the followed node may
            # apply it after the leader answered the create): ask again; from one at or
            # past it, the room was closed
            if result.get("error") != "no_such_room" or call.index < feed.min_index:
                self._read(feed)
            return
        feed.view = result["room"]
        feed.index = call.index
        held, feed.held = sorted(feed.held, key=lambda u: u.index), []
        for upd in held:
            if feed.index >= 0:
                self._on_stream(feed, upd)
            else:
                feed.held.append(upd)
        if self.on_read is not None:
            self.on_read(feed.room)


# --- bots ---------------------------------------------------------------------------------


class _SeatSession:
    """What a ``Bot`` sees: its room's table, and commands sent to its room."""

    def __init__(self, farm: BotFarm, index: int, lane: int) -> None:
        self.farm = farm
        self.lane = lane
        if farm.link.curve is not None:
            self.client_id, self.session_key = security.new_session()
        else:
            self.client_id, self.session_key = f"{farm.id_prefix}-{index}", None
        self.seq = 0
        self.room: str | None = None
        self.hit_at: float | None = None  # a hit in flight: when it was sent
        self.seen_index = 0  # the bot acts again once its room's view shows this index
        self.hit_game = 0
        self.acked_points: dict[tuple[str, int], int] = {}  # (room, game) -> hits won

    def poll(self) -> None:
        pass

    @property
    def state(self) -> dict | None:
        view = self.farm.feeds.view(self.room) if self.room is not None else None
        return view["table"] if view is not None else None

    def leader_time_ms(self) -> int:
        return int(time.time() * 1000) + self.farm.feeds.clock_offset_ms

    def submit(self, cmd: dict) -> FarmCall:
        return self.send({**cmd, "room": self.room})

    def send(self, cmd: dict) -> FarmCall:
        self.seq += 1
        self.farm.stats.sent[cmd.get("type")] += 1
        if cmd.get("type") == "hit":
            self.hit_at = time.monotonic()
            table = self.state
            self.hit_game = table["game_state"]["game_number"] if table else 0
            self.farm.hits_in_flight[self.client_id] = self
        body = {"machine": MACHINE, "seq": self.seq, "cmd": cmd, "first_outstanding": self.seq}
        return self.farm.link.call("submit", body, self.client_id, self.lane,
                                   on_done=self._answered, session_key=self.session_key)

    def _answered(self, call: FarmCall) -> None:
        farm = self.farm
        farm.wake(self)
        if call.ok and isinstance(call.result, dict) and call.result.get("ok"):
            # a refused command changed nothing and publishes nothing: no view to wait for
            self.seen_index = max(self.seen_index, call.index)
        if call.ok and farm.on_ack is not None:
            farm.on_ack(self, call)
        if not call.ok:
            farm.stats.failed += 1
            farm.stats.refused[call.error.code if call.error else "unavailable"] += 1
            return
        farm.stats.acked += 1
        cmd = call.body["cmd"]
        result = call.result if isinstance(call.result, dict) else {}
        if not result.get("ok"):
            farm.stats.refused[f"{cmd.get('type')}:{result.get('error')}"] += 1
        if cmd.get("type") == "hit":
            # an accepted hit stays in hits_in_flight until its broadcast is seen (the
            # answer from the leader usually comes first)
            if not result.get("ok"):
                farm.hits_in_flight.pop(self.client_id, None)
            else:
                farm.stats.hits += 1
                farm.stats.ack_ms.append((time.monotonic() - call.created_at) * 1000)
                key = (result.get("room") or self.room or "", self.hit_game)
                self.acked_points[key] = self.acked_points.get(key, 0) + 1
        if result.get("ok") and cmd.get("type") in ("create", "join", "quick_play"):
            self.room = result["room"]
            farm.seated(self, result["room"])


@dataclass
class FarmStats:
    acked: int = 0  # commands answered (committed: accepted or refused by the rules)
    hits: int = 0  # hits accepted (points)
    failed: int = 0  # commands given up on (deadline)
    sent: Counter = field(default_factory=Counter)  # commands sent, by type
    refused: Counter = field(default_factory=Counter)  # "type:error" (or a link error code)
    latencies_ms: list[float] = field(default_factory=list)  # hit -> broadcast, every sample
    ack_ms: list[float] = field(default_factory=list)  # hit -> its answer (accepted hits)
    recent_ms: deque = field(default_factory=lambda: deque(maxlen=2000))


class BotFarm:
    """``count`` bots in ``rooms`` rooms (the first bot of each creates it, the others
    join it; ``rooms`` 0: every bot quick-plays). ``turn()`` is one pass of the loop."""

    def __init__(self, cluster: ClusterFile, count: int, rooms: int, seed: int = 0,
                 prefix: str = "bot", strategy: str = "human", games: int = 0,
                 room_settings: dict[str, Any] | None = None,
                 ids_per_lane: int = IDS_PER_LANE, request_timeout: float = 0.5,
                 lobby_wait_s: float = 3.0) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        if rooms > count:
            raise ValueError(f"{rooms} rooms for {count} bots: a room needs a bot to create it; "
                             f"use --rooms {count} or fewer")
        per_room = math.ceil(count / rooms) if rooms else 0
        if per_room > 16:
            raise ValueError(f"{count} bots in {rooms} rooms is {per_room} a room; a room seats "
                             f"16 at most: use --rooms {math.ceil(count / 16)} or more")
        self.cluster = cluster
        self.seed = seed
        # fresh client ids every run (the seed repeats the bots' choices, not their sessions:
        # a second run under the same ids would start its sequence numbers over)
        self.id_prefix = f"farm-{secrets.token_hex(4)}"
        self.link = FarmLink(cluster, math.ceil(count / max(1, ids_per_lane)),
                             request_timeout=request_timeout)
        self.feeds = RoomFeeds(self.link, f"{self.id_prefix}-reader", self._on_room_update)
        self.feeds.on_read = self._on_room_read
        self.stats = FarmStats()
        self.hits_in_flight: dict[str, _SeatSession] = {}
        self.rooms_wanted = rooms
        self.settings = {"max_players": max(per_room, 4), **(room_settings or {})}
        self.sessions: list[_SeatSession] = []
        self.bots: list[Bot] = []
        for i in range(count):
            s = _SeatSession(self, i, i // max(1, ids_per_lane))
            name = f"{prefix}{i + 1}"
            self.sessions.append(s)
            self.bots.append(Bot(name, s, strategy, random.Random(f"{seed}:{name}"),
                                 games_to_play=games, people=self._people_of(s),
                                 may_start=self._room_full(i),
                                 lobby_wait_s=lobby_wait_s))
        self.assign = {i: (i % rooms if rooms else None) for i in range(count)}
        self.room_ids: dict[int, str] = {}  # room slot -> id
        self.by_room: dict[str, list[int]] = {}
        self._wake_at = [0.0] * count
        self._dirty: set[int] = set()
        self._index = {id(s): i for i, s in enumerate(self.sessions)}
        self._started = False
        self._creating: dict[int, FarmCall] = {}
        self._rate: deque[tuple[float, int, int]] = deque()
        self.acting = True  # False: the bots stay still (the loop still answers and follows)
        self.on_ack: Callable[[_SeatSession, FarmCall], None] | None = None

    # --- setting up --------------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        firsts = ([next(i for i in self.assign if self.assign[i] == slot)
                   for slot in range(self.rooms_wanted)] if self.rooms_wanted
                  else list(range(len(self.bots))))
        for i in firsts:
            self._creating[i] = self._creating_retry(i)

    def _create(self, slot: int, first: int) -> None:
        s = self.sessions[first]
        self._creating[first] = s.send({
            "type": "create", "name": f"{self.id_prefix[-6:]} {slot + 1}",
            "player": self.bots[first].name, "bot": True, **self.settings})

    def seated(self, s: _SeatSession, room: str) -> None:
        i = self._index[id(s)]
        if self._creating.pop(i, None) is None:
            return  # a join of the bot's own (its Bot sent it)
        self.by_room.setdefault(room, []).append(i)
        self.feeds.watch(room, s.seen_index)
        slot = self.assign[i]
        if slot is not None and slot not in self.room_ids:
            self.room_ids[slot] = room
            for j, other in enumerate(self.sessions):
                if self.assign[j] == slot and j != i:
                    other.room = room  # its Bot joins once the room's view is read
                    self.by_room[room].append(j)
        self._dirty.add(i)

    def _people_of(self, s: _SeatSession) -> Callable[[dict[str, Any]], list[str]]:
        def people(table: dict[str, Any]) -> list[str]:
            view = self.feeds.view(s.room) if s.room is not None else None
            bots = set(view["bots"]) if view is not None else set()
            return [name for name in table["players"] if name not in bots]
        return people

    def _room_full(self, i: int) -> Callable[[dict[str, Any]], bool]:
        def full(table: dict[str, Any]) -> bool:
            room = self.sessions[i].room
            return len(table["players"]) >= len(self.by_room.get(room, ())) if room else True
        return full

    def _find_seat(self, i: int) -> None:
        """Ask where bot ``i`` sits (its create or quick play was applied, its answer lost)."""
        s = self.sessions[i]

        def found(call: FarmCall) -> None:
            result = call.result if isinstance(call.result, dict) else {}
            if result.get("room"):
                s.room = result["room"]
                self.seated(s, result["room"])
            else:
                self._creating[i] = self._creating_retry(i)

        self._creating[i] = self.link.call(
            "read", {"machine": MACHINE, "query": {"op": "seat_of", "client_id": s.client_id}},
            self.feeds.reader_id, 0, on_done=found)

    def _creating_retry(self, i: int) -> FarmCall:
        slot = self.assign[i]
        if slot is None:
            return self.sessions[i].send({"type": "quick_play", "name": self.bots[i].name,
                                          "bot": True})
        self._create(slot, i)
        return self._creating[i]

    def wake(self, s: _SeatSession) -> None:
        self._dirty.add(self._index[id(s)])

    def _on_room_read(self, room: str) -> None:
        self._dirty.update(self.by_room.get(room, ()))

    def _on_room_update(self, room: str, upd: Update, now: float) -> None:
        for event in upd.events:
            if event.get("type") != "sync":
                continue
            op = event["op"]
            if op.get("op") == "rules" and op["cmd"].get("type") == "hit":
                s = self.hits_in_flight.pop(op["client_id"], None)
                if s is not None and s.hit_at is not None:
                    ms = (now - s.hit_at) * 1000
                    s.hit_at = None
                    self.stats.latencies_ms.append(ms)
                    self.stats.recent_ms.append(ms)
        self._dirty.update(self.by_room.get(room, ()))

    # --- the loop ------------------------------------------------------------------------

    def turn(self, timeout_ms: float = 5) -> None:
        if not self._started:
            self._start()
        # a failed create/quick play (e.g. a deadline during an election): try again
        for i, call in list(self._creating.items()):
            if call.done and not (call.ok and isinstance(call.result, dict)
                                  and call.result.get("ok")):
                if isinstance(call.result, dict) and call.result.get("error") == "in_room":
                    self._find_seat(i)  # the first try was applied after all
                else:
                    self._creating[i] = self._creating_retry(i)
        self.link.poll(timeout_ms)
        self.feeds.check()
        if not self.acting:
            return
        now = time.monotonic()
        due = {i for i, at in enumerate(self._wake_at) if at <= now}
        for i in due | self._dirty:
            s = self.sessions[i]
            feed = self.feeds.rooms.get(s.room) if s.room is not None else None
            if feed is None or i in self._creating or feed.index < s.seen_index:
                # not seated yet, or its last answer is not in the view yet (acting on an
                # older view would send the same command again)
                self._wake_at[i] = now + WAKE_EVERY_S
                continue
            self.bots[i].step()
            b = self.bots[i]
            timers = [t for t in (b._aim_at, b._next_action) if t is not None and t > now]
            self._wake_at[i] = min([now + WAKE_EVERY_S, *timers])
        self._dirty.clear()

    def run(self, duration: float | None = None, report: Callable[[str], None] | None = None,
            stop: Callable[[], bool] | None = None) -> None:
        end = time.monotonic() + duration if duration else None
        while end is None or time.monotonic() < end:
            if stop is not None and stop():
                return
            if self.bots and all(b.done() for b in self.bots):
                return
            self.turn(5)
            if report is not None:
                report(self.summary_line())

    # --- what it reports -----------------------------------------------------------------

    def seated_count(self) -> int:
        n = 0
        for s in self.sessions:
            table = s.state
            if table is not None and any(p["client_id"] == s.client_id
                                         for p in table["players"].values()):
                n += 1
        return n

    def games_finished(self) -> int:
        """Games over in the farm's rooms (each counted once, not once per bot)."""
        return sum(max((self.bots[i].games_seen for i in members), default=0)
                   for members in self.by_room.values())

    def summary(self) -> dict[str, Any]:
        recent = sorted(self.stats.recent_ms)
        now = time.monotonic()
        self._rate.append((now, self.stats.acked, self.stats.hits))
        while len(self._rate) > 2 and now - self._rate[0][0] > 5.0:
            self._rate.popleft()
        t0, a0, h0 = self._rate[0]
        span = max(1e-6, now - t0)
        games = self.games_finished()
        return {
            "rooms": len(self.by_room), "bots_seated": self.seated_count(), "bots": len(self.bots),
            "games_finished": games, "actions_per_s": round((self.stats.acked - a0) / span, 1),
            "hits_per_s": round((self.stats.hits - h0) / span, 1),
            "p50_ms": round(_nearest_rank(recent, 50), 1) if recent else None,
            "p99_ms": round(_nearest_rank(recent, 99), 1) if recent else None,
            "failovers": self.link.failovers, "feed_moves": self.feeds.moves,
            "throttled": self.link.throttled,
        }

    def summary_line(self) -> str:
        s = self.summary()
        lat = ("-" if s["p50_ms"] is None
               else f"p50 {s['p50_ms']:g} ms p99 {s['p99_ms']:g} ms")
        return (f"rooms {s['rooms']} | bots seated {s['bots_seated']}/{s['bots']} | "
                f"games {s['games_finished']} | {s['actions_per_s']:g} actions/s, "
                f"{s['hits_per_s']:g} hits/s | hit->broadcast {lat} | "
                f"failovers {s['failovers']}"
                + (f" | throttled {s['throttled']}" if s["throttled"] else ""))

    def leave_all(self, timeout: float = 3.0) -> None:
        """Every seated bot leaves its room (so a room empties and closes)."""
        calls = []
        for s in self.sessions:
            table = s.state
            if table is not None and any(p["client_id"] == s.client_id
                                         for p in table["players"].values()):
                calls.append(s.submit({"type": "leave"}))
        end = time.monotonic() + timeout
        while any(not c.done for c in calls) and time.monotonic() < end:
            self.link.poll(10)

    def close(self) -> None:
        self.link.close()


def run_farm(cluster: ClusterFile, count: int, rooms: int, seed: int, strategy: str = "human",
             prefix: str = "bot", games: int = 0, duration: float | None = None) -> BotFarm:
    """``arena bots --count N --rooms M``: run until Ctrl-C (or ``duration``, or every
    bot's ``games``), the summary line live; the bots leave their rooms at the end."""
    from .bots import ProgressPrinter

    farm = BotFarm(cluster, count, rooms, seed=seed, strategy=strategy, prefix=prefix,
                   games=games)
    progress = ProgressPrinter(every_s=1.0)
    try:
        farm.run(duration=duration, report=progress)
    except KeyboardInterrupt:
        pass
    finally:
        progress.close()
        farm.leave_all()
        farm.close()
    return farm


def _nearest_rank(sorted_samples: list[float], p: float) -> float:
    """The live line's percentile, by nearest rank as ``nodes.bench.stats.percentile``
    (which the client layer may not import: tests/test_layers.py)."""
    n = len(sorted_samples)
    return float(sorted_samples[min(max(math.ceil(p / 100.0 * n), 1), n) - 1])
