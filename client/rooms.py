"""The rooms from a client: list, quick play, create, join, play, drop and reclaim.

``RoomsClient`` is polled like ``client.session.NetworkSession`` (``poll()`` never
blocks unless given a timeout), so a window calls it once per frame and a bot
loop calls it between actions. Every command method returns the link's ``Call``
at once; its result also updates ``seat`` (room, name, token).

Views, each kept by the Clone pattern on one node's publish socket (see
docs/PROTOCOL.md, "Rooms"):

- ``rooms``: the room list (public rooms by id, each a listing row), from the
  read ``{op: "rooms"}`` plus the ``rooms`` stream;
- ``room``: this client's room as ``game.rooms.public_room`` shows it (row,
  table, away seats, bots), from ``{op: "room"}`` plus the ``room/<id>/`` stream,
  brought forward with ``game.rooms.apply_sync``;
- ``leaderboard``: name -> row, from the ``leaderboard`` events seen.

The subscription is made first, confirmed (the node's next cluster info on the
same socket proves the node applied it), then the reads are made; stream updates
that arrive meanwhile are held and applied after the read if newer. Each stream
update says the index of the previous one on its topic (``prev``): an update
whose ``prev`` is newer than the view, or unknown, means something was missed,
and the view is read again. The subscription moves to another node when its
node goes down, and is made again (new socket) whenever the room changes.

The seat's token is kept in ``token_file`` (if given) so that a client that
crashed can ``reclaim()`` its seat within the grace period.

``RoomTableSession`` lets today's ``client.bots.Bot`` play in a room unchanged.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from game import rooms as room_rules
from game.state import new_state as new_table
from game.view import needs_ping
from nodes import codec
from nodes.clusterfile import ClusterFile
from nodes.codec import Update
from nodes.rooms_feed import LIST_WIRE_TOPIC, room_topic

from .link import Call, ClusterLink

MACHINE = "rooms"
SUB_SILENT_S = 1.0  # no cluster info from the subscribed node this long: move elsewhere


def default_token_file(cluster_id: str, name: str) -> Path:
    """Where a player's seat token is kept between runs (under the user's state dir)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "arena" / f"seat-{cluster_id}-{name.casefold()}.json"


class _Stream:
    """One view kept from a read plus a stream: ``index`` is what it reflects."""

    def __init__(self) -> None:
        self.index = -1  # -1: not read yet (updates are held)
        self.held: list[Update] = []
        self.reading: Call | None = None
        self.resyncs = 0

    def reset(self) -> None:
        self.index, self.held, self.reading = -1, [], None


class RoomsClient:
    def __init__(
        self,
        cluster: ClusterFile,
        client_id: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        request_timeout: float = 0.4,
        deadline: float = 10.0,
        bot: bool = False,
        auto_ping: bool = True,
        link: ClusterLink | None = None,
    ) -> None:
        self.link = link or ClusterLink(cluster, client_id, request_timeout=request_timeout,
                                        deadline=deadline)
        self.cluster = cluster
        self.client_id = self.link.client_id
        self.bot = bot
        self.auto_ping = auto_ping
        self.token_file = Path(token_file) if token_file is not None else None
        self.seat: dict[str, Any] | None = None  # {room, name, token} once seated
        self.rooms: dict[str, dict[str, Any]] = {}
        self.room: dict[str, Any] | None = None
        self.leaderboard: dict[str, dict[str, Any]] = {}
        self.on_event: Callable[[dict[str, Any]], None] | None = None  # each room/list event
        self.last_error: dict[str, Any] | None = None
        self._list = _Stream()
        self._room = _Stream()
        self._sub: zmq.Socket | None = None
        self._sub_node = ""
        self._sub_room: str | None = None
        self._sub_live = False
        self._sub_heard = 0.0
        self._ping: Call | None = None
        self._prefer: str | None = None
        self._leader_ms_offset = 0
        self._subscribe()

    # --- commands (each returns the Call; results update ``seat``) -----------------------

    def list_rooms(self) -> list[dict[str, Any]]:
        """The live room list, oldest first (empty until the first read answers)."""
        return sorted(self.rooms.values(), key=lambda r: (r["created_ms"], r["room"]))

    def quick_play(self, name: str) -> Call:
        return self._command({"type": "quick_play", "name": name, "bot": self.bot})

    def create(self, name: str, player: str | None = None, **settings: Any) -> Call:
        """A room named ``name`` (settings: private, bots, max_players, rounds,
        round_ms); with ``player``, seated in it at once as that name."""
        cmd: dict[str, Any] = {"type": "create", "name": name, **settings}
        if player is not None:
            cmd.update(player=player, bot=self.bot)
        return self._command(cmd)

    def join(self, name: str, room: str | None = None, code: str | None = None) -> Call:
        cmd: dict[str, Any] = {"type": "join", "name": name, "bot": self.bot}
        if room is not None:
            cmd["room"] = room
        if code is not None:
            cmd["code"] = code
        return self._command(cmd)

    def leave(self) -> Call:
        return self._command({"type": "leave", "room": self._seat_room()})

    def disconnect(self) -> Call:
        """Keep the seat for the grace period, starting now (a polite drop)."""
        return self._command({"type": "disconnect", "room": self._seat_room()})

    def reclaim(self, token: str | None = None, room: str | None = None,
                name: str | None = None) -> Call:
        """Take back a seat: from the arguments, else from ``token_file``."""
        saved = self.saved_seat() or {}
        cmd = {"type": "reclaim", "room": room or saved.get("room"),
               "name": name or saved.get("name"), "token": token or saved.get("token")}
        return self._command(cmd)

    def act(self, kind: str, **fields: Any) -> Call:
        """A game command in this client's room: ready, start, hit, rematch, ping."""
        return self._command({"type": kind, "room": self._seat_room(), **fields})

    def _seat_room(self) -> str | None:
        return self.seat["room"] if self.seat else None

    def _command(self, cmd: dict[str, Any]) -> Call:
        return self.link.submit(MACHINE, cmd, on_done=self._on_result)

    def _on_result(self, call: Call) -> None:
        result = call.result if isinstance(call.result, dict) else {}
        if not call.ok or not result.get("ok"):
            self.last_error = {"command": call.body.get("cmd"), "error": result.get("error")
                               or (call.error.code if call.error else "unavailable"),
                               "message": result.get("message")
                               or (call.error.message if call.error else "")}
            return
        kind = (call.body.get("cmd") or {}).get("type")
        if "token" in result and result.get("name"):
            self._set_seat({"room": result["room"], "name": result["name"],
                            "token": result["token"]})
        elif kind == "leave":
            self._set_seat(None)

    def _set_seat(self, seat: dict[str, Any] | None) -> None:
        self.seat = seat
        if self.token_file is not None:
            if seat is None:
                self.token_file.unlink(missing_ok=True)
            else:
                self.token_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.token_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"cluster_id": self.cluster.cluster_id, **seat}))
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.token_file)
        if (seat or {}).get("room") != self._sub_room:
            self._subscribe()

    def saved_seat(self) -> dict[str, Any] | None:
        """The seat kept in ``token_file`` for this cluster, if any."""
        if self.token_file is None or not self.token_file.exists():
            return None
        try:
            data = json.loads(self.token_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("cluster_id") != self.cluster.cluster_id:
            return None
        return data

    # --- the loop --------------------------------------------------------------------------

    def poll(self, timeout_ms: float = 0) -> None:
        self.link.poll(timeout_ms)
        if self._sub is not None:
            self._drain_sub()
        self._check_sub_node()
        if self.auto_ping:
            self._maybe_ping()

    def run_until(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll until ``cond()`` is truthy; raises TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            self.poll(10)

    def wait(self, call: Call, timeout: float = 15.0) -> dict[str, Any]:
        """Poll until ``call`` is answered; its result (or an error dict)."""
        self.run_until(lambda: call.done, timeout, f"the answer to {call.body.get('cmd')}")
        if call.ok:
            return call.result  # type: ignore[return-value]
        e = call.error
        return {"ok": False, "error": e.code if e else "unavailable",
                "message": e.message if e else "no answer"}

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close(0)
            self._sub = None
        self.link.close()

    @property
    def synced(self) -> bool:
        """The list (and the room, when seated) reflect a read plus the stream since."""
        room_ok = self.seat is None or self._room.index >= 0
        return self._sub_live and self._list.index >= 0 and room_ok

    @property
    def resyncs(self) -> int:
        return self._list.resyncs + self._room.resyncs

    def my_name(self) -> str | None:
        return self.seat["name"] if self.seat else None

    # --- subscription (Clone pattern) ------------------------------------------------------

    def follow(self, node: str | None) -> None:
        """Follow ``node``'s streams while it is up (None: any live node, a follower
        first); the views are read again from there."""
        if node is not None and node not in self.link.nodes:
            raise ValueError(f"no node {node!r} in the cluster file ({', '.join(self.link.nodes)})")
        self._prefer = node
        self._subscribe(node)

    @property
    def following(self) -> str:
        """The node whose streams this client follows now."""
        return self._sub_node

    def _pick_node(self) -> str:
        nodes = [n for n in self.link.nodes if n not in self.link.down]
        if self._prefer in nodes:
            return self._prefer
        leader = next((n.info.leader_id for n in self.link.nodes.values()
                       if n.info is not None and n.info.leader_id in nodes), None)
        # any live node does; prefer a follower's (the leader has enough to do)
        followers = [n for n in nodes if n != leader]
        if self._sub_node in followers:
            followers.remove(self._sub_node)
            followers.append(self._sub_node)
        return (followers or nodes or list(self.link.nodes))[0]

    def _subscribe(self, node: str | None = None) -> None:
        if self._sub is not None:
            self._sub.close(0)
        node = node or self._pick_node()
        s = self.link.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 100_000)
        self._sub_room = self.seat["room"] if self.seat else None
        s.setsockopt(zmq.SUBSCRIBE, LIST_WIRE_TOPIC)
        if self._sub_room is not None:
            s.setsockopt(zmq.SUBSCRIBE, room_topic(self._sub_room))
        s.setsockopt(zmq.SUBSCRIBE, codec.CLUSTER_TOPIC)  # last: hearing it confirms the rest
        self.link._connect(s, node, self.link.nodes[node].pub_addr)
        self._sub, self._sub_node, self._sub_live = s, node, False
        self._sub_heard = time.monotonic()
        self._list.reset()
        self._room.reset()
        if self._sub_room is None:
            self.room = None

    def _check_sub_node(self) -> None:
        silent = time.monotonic() - self._sub_heard > SUB_SILENT_S
        if self._sub_node in self.link.down or silent:
            self._subscribe(self._pick_node() if len(self.link.nodes) > 1 else None)

    def _drain_sub(self) -> None:
        assert self._sub is not None
        for _ in range(10_000):
            try:
                parts = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                continue
            topic, payload = parts
            if topic == codec.CLUSTER_TOPIC:
                self._sub_heard = time.monotonic()
                if not self._sub_live:
                    self._sub_live = True
                    self._read_list()
                    self._read_room()
                continue
            try:
                upd = codec.decode_update(payload, self.link.cluster_id)
            except codec.ProtocolError:
                continue
            if topic == LIST_WIRE_TOPIC:
                self._on_stream(self._list, upd, self._read_list, self._apply_list)
            elif self._sub_room is not None and topic == room_topic(self._sub_room):
                self._on_stream(self._room, upd, self._read_room, self._apply_room)

    def _on_stream(self, stream: _Stream, upd: Update, read: Callable[[], None],
                   apply: Callable[[Update], None]) -> None:
        if stream.index < 0:
            stream.held.append(upd)
            return
        if upd.index <= stream.index:
            return  # already in the view
        prev = upd.result.get("prev") if isinstance(upd.result, dict) else None
        if prev is None or prev > stream.index:
            stream.resyncs += 1  # missed one: read it again
            stream.index = -1
            stream.held = [upd]
            read()
            return
        apply(upd)
        stream.index = upd.index

    def _caught_up(self, stream: _Stream, index: int, read: Callable[[], None],
                   apply: Callable[[Update], None]) -> None:
        stream.index = index
        held, stream.held = stream.held, []
        for upd in sorted(held, key=lambda u: u.index):
            if stream.index >= 0:
                self._on_stream(stream, upd, read, apply)
            else:
                stream.held.append(upd)

    def _read_list(self) -> None:
        if self._list.reading is not None and not self._list.reading.done:
            return
        self._list.reading = self.link.call(
            "read", {"machine": MACHINE, "query": {"op": "rooms"}}, on_done=self._on_list_read)

    def _on_list_read(self, call: Call) -> None:
        if call is not self._list.reading:
            return
        self._list.reading = None
        if not call.ok or not isinstance(call.result, dict) or not call.result.get("ok"):
            self._read_list()  # the link already retried until its deadline: try again
            return
        self.rooms = {row["room"]: row for row in call.result["rooms"]}
        self._caught_up(self._list, call.index, self._read_list, self._apply_list)

    def _read_room(self) -> None:
        room_id = self._sub_room
        if room_id is None or (self._room.reading is not None and not self._room.reading.done):
            return
        self._room.reading = self.link.call(
            "read", {"machine": MACHINE, "query": {"op": "room", "room": room_id}},
            on_done=self._on_room_read)

    def _on_room_read(self, call: Call) -> None:
        if call is not self._room.reading:
            return
        self._room.reading = None
        if call.body["query"]["room"] != self._sub_room:
            return
        result = call.result if isinstance(call.result, dict) else {}
        if call.ok and result.get("error") == "no_such_room":
            self.room = None  # closed: the seat is gone with it
            self._set_seat(None)
            return
        if not call.ok or not result.get("ok"):
            self._read_room()
            return
        self.room = result["room"]
        self._caught_up(self._room, call.index, self._read_room, self._apply_room)

    def _apply_list(self, upd: Update) -> None:
        for event in upd.events:
            kind = event.get("type")
            if kind in ("room_created", "room_row"):
                self.rooms[event["room"]] = event["row"]
            elif kind == "room_closed":
                self.rooms.pop(event["room"], None)
            elif kind == "leaderboard":
                for row in event["rows"]:
                    self.leaderboard[row["name"].casefold()] = row
            self._emit(event)

    def _apply_room(self, upd: Update) -> None:
        view = self.room
        if view is None:
            return
        self._leader_ms_offset = max(self._leader_ms_offset,
                                     upd.clock_ms - int(time.time() * 1000))
        for event in upd.events:
            kind = event.get("type")
            if kind == "sync":
                room_rules.apply_sync(view, event["op"])
            elif kind in ("room_created", "room_row"):
                view["row"] = event["row"]
            elif kind == "room_closed":
                self.room = None
                if self.seat is not None and self.seat["room"] == event["room"]:
                    self._set_seat(None)
                return
            self._emit(event)
        if self.seat is not None and self.seat["room"] == view["row"]["room"]:
            mine = view["table"]["players"].get(self.seat["name"])
            if mine is None or mine["client_id"] != self.client_id:
                self._set_seat(None)  # freed (grace over), left, or reclaimed by another session

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def leader_time_ms(self) -> int:
        """The leader's clock as this client estimates it (from its room's updates)."""
        return int(time.time() * 1000) + self._leader_ms_offset

    def _maybe_ping(self) -> None:
        if self.seat is None or self.room is None or (self._ping and not self._ping.done):
            return
        if needs_ping(self.room["table"], self.client_id, self.leader_time_ms()):
            self._ping = self.act("ping")


class RoomTableSession:
    """A ``RoomsClient`` seen as the single-table session ``client.bots.Bot`` drives:
    ``state`` is the room's table, game commands get the room added, and ``join``
    becomes a quick play (or a join of ``room``, when given)."""

    def __init__(self, rooms: RoomsClient, room: str | None = None) -> None:
        self.rooms = rooms
        self.client_id = rooms.client_id
        self.room = room
        self._joining: Call | None = None
        self._empty = new_table()

    def poll(self) -> None:
        self.rooms.poll()

    @property
    def state(self) -> dict | None:
        if self.rooms.seat is None:  # a table without us: the bot's next move is to join
            return None if self._joining is not None and not self._joining.done else self._empty
        return self.rooms.room["table"] if self.rooms.room is not None else None

    def submit(self, cmd: dict) -> Call:
        kind = cmd.get("type")
        if kind == "join":
            name = cmd.get("name", "")
            call = (self.rooms.join(name, room=self.room) if self.room
                    else self.rooms.quick_play(name))
            self._joining = call
            return call
        if kind == "leave":
            return self.rooms.leave()
        return self.rooms.act(str(kind), **{k: v for k, v in cmd.items() if k != "type"})

    def leader_time_ms(self) -> int:
        return self.rooms.leader_time_ms()
