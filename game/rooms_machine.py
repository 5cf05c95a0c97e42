"""The rooms (``game.rooms``) behind the node layer's ``StateMachine`` protocol.

Registered as the machine ``rooms`` beside ``game`` (the single table, which
today's window and server still use). Like ``GameMachine`` it is duck-typed:
nothing is imported from ``nodes``.

``snapshot()`` is the whole state, secret included: it is for Raft (node to
node, and the disk). Clients get ``public_snapshot()`` and the queries below,
which leave out the secret, the private codes and the token counters, and of
each applied entry what ``for_publication`` keeps (see the trust model in
``game.rooms``).

Queries (``{"op": ...}``)::

    rooms                     -> {ok, rooms: [row, ...]}   public rooms, oldest first
    room {room}               -> {ok, room: public_room}   or error no_such_room
    seat_of {client_id}       -> {ok, room, name}          (both None without a seat)
    leaderboard               -> {ok, rows}                most wins, points, then name
    state                     -> {ok, state: public_snapshot()}

The leader's timer (``due_command``) keeps a heap of each room's next due time
(``game.seats.room_due_ms``), refreshed for the rooms an applied command
touched, so a call costs O(due rooms * log rooms), not O(rooms).
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable
from typing import Any

from game import rooms, seats
from game.config import GameConfig
from game.machine import EntryContext
from game.rules import Context

SECRET_RESULT_FIELDS = frozenset({"token", "code"})
"""Result fields for the submitter's eyes only (see ``for_publication``)."""
MAX_TIMER_ROOMS = 64
"""Rooms one ``timers`` entry handles at most (bounds the entry and its apply time)."""


class RoomsMachine:
    """Holds the rooms state and applies committed rooms commands to it."""

    name = "rooms"

    def __init__(
        self,
        config: GameConfig | None = None,
        seed: int = 0,
        secret: str | None = None,
        grace_ms: int = 30_000,
        close_ms: int = 60_000,
        max_rooms: int = 10_000,
        entropy: Callable[[], str] | None = None,
    ) -> None:
        """``secret``: for tests and offline use; a cluster leaves it None and passes
        ``entropy`` (e.g. ``secrets.token_hex``), which the leader calls once to
        propose ``set_secret``. Replicas never call it while applying."""
        self.state: dict[str, Any] = rooms.new_state(
            config, seed, secret, grace_ms=grace_ms, close_ms=close_ms, max_rooms=max_rooms
        )
        self._entropy = entropy
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def apply(self, command: dict, ctx: EntryContext) -> tuple[object, list[dict]]:
        """``rooms.apply`` with the node's entry context; never raises for bad input."""
        result, events = rooms.apply(
            self.state, command, Context(ctx.index, ctx.timestamp_ms, ctx.client_id)
        )
        if result["ok"]:
            touched = {e["room"] for e in events if "room" in e}
            touched.update(result.get("rooms", ()))
            if "room" in result:
                touched.add(result["room"])
            for room_id in sorted(touched):
                self._refresh_due(room_id)
        return result, events

    # --- the leader's timer -------------------------------------------------------------

    def due_command(self, now_ms: int) -> dict | None:
        """``set_secret`` while the state has no secret (and ``entropy`` was given);
        else ``{"type": "timers", "rooms": [...]}`` for the rooms with something due
        at ``now_ms`` (at most ``MAX_TIMER_ROOMS``, earliest first); else None."""
        if self.state["secret"] is None and self._entropy is not None:
            return {"type": "set_secret", "secret": self._entropy()}
        due_rooms: list[str] = []
        kept: list[tuple[int, str]] = []
        while self._heap and self._heap[0][0] <= now_ms and len(due_rooms) < MAX_TIMER_ROOMS:
            item = heapq.heappop(self._heap)
            # else a stale entry (or a second copy of a current one): drop it
            if self._due.get(item[1]) == item[0] and item[1] not in due_rooms:
                due_rooms.append(item[1])
                kept.append(item)
        for item in kept:  # proposing is not applying: keep them until timers commits
            heapq.heappush(self._heap, item)
        return {"type": "timers", "rooms": due_rooms} if due_rooms else None

    def _refresh_due(self, room_id: str) -> None:
        room = self.state["rooms"].get(room_id)
        due = None
        if room is not None:
            config = self.state["config"]
            due = seats.room_due_ms(room, config["grace_ms"], config["close_ms"])
        if due is None:
            self._due.pop(room_id, None)
        elif self._due.get(room_id) != due:
            self._due[room_id] = due
            heapq.heappush(self._heap, (due, room_id))

    def _rebuild_due(self) -> None:
        self._due, self._heap = {}, []
        for room_id in self.state["rooms"]:
            self._refresh_due(room_id)

    # --- reads ----------------------------------------------------------------------------

    def query(self, query: dict) -> object:
        op = query.get("op") if isinstance(query, dict) else None
        if op == "rooms":
            rows = [rooms.listing_row(r) for r in self.state["rooms"].values() if not r["private"]]
            return {"ok": True, "rooms": rows}
        if op == "room":
            room = self.state["rooms"].get(query.get("room"))  # type: ignore[arg-type]
            if room is None:
                return {
                    "ok": False,
                    "error": "no_such_room",
                    "message": f"no open room {query.get('room')!r:.40}; query op 'rooms' lists them",
                }
            return {"ok": True, "room": copy.deepcopy(rooms.public_room(room))}
        if op == "seat_of" and isinstance(query.get("client_id"), str):
            room_id, name = self.state["clients"].get(query["client_id"], (None, None))
            return {"ok": True, "room": room_id, "name": name}
        if op == "leaderboard":
            rows = sorted(
                self.state["leaderboard"].values(),
                key=lambda r: (-r["wins"], -r["points"], r["name"].casefold()),
            )
            return {"ok": True, "rows": copy.deepcopy(rows)}
        if op == "state":
            return {"ok": True, "state": self.public_snapshot()}
        return {
            "ok": False,
            "error": "bad_query",
            "message": f"unknown rooms query {query!r:.80}; use op rooms, room, seat_of, "
            "leaderboard or state",
        }

    @staticmethod
    def for_publication(command: object, result: object) -> tuple[None, object]:
        """What the server may publish of an applied rooms entry: ``(command, result)``
        with no command at all (it may hold a token, a code or the secret, and clients
        follow rooms through ``sync`` events, not by replaying commands) and the result
        without ``token`` and ``code`` (only the submitter's own reply carries them)."""
        if isinstance(result, dict) and ("token" in result or "code" in result):
            result = {k: v for k, v in result.items() if k not in SECRET_RESULT_FIELDS}
        return None, result

    def public_snapshot(self) -> dict[str, Any]:
        """The state without the secret, the private codes and the token counters."""
        state = self.state
        return copy.deepcopy(
            {
                "now_ms": state["now_ms"],
                "config": state["config"],
                "rooms": {
                    room_id: rooms.public_room(room) for room_id, room in state["rooms"].items()
                },
                "leaderboard": state["leaderboard"],
            }
        )

    # --- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> object:
        """The whole state, secret included (for Raft, never for clients)."""
        return copy.deepcopy(self.state)

    def restore(self, data: object) -> None:
        """Replace the state with one from ``snapshot``; refuses data of another shape."""
        if not isinstance(data, dict) or set(data) != set(rooms.new_state()):
            raise ValueError("not a rooms snapshot: expected the keys of game.rooms.new_state")
        GameConfig.from_dict(data["config"]["table"])  # raises ValueError if invalid
        self.state = copy.deepcopy(data)
        self._rebuild_due()
