"""Many matches at once: rooms in the replicated state (issue 12, the rule side).

A room is one of today's tables (``game.state``) plus what a table does not
know: a name, public or private (with a join code), whether bots may join, when
it was created, and its seats (who may come back after a disconnect). Commands
for a room's game are handed to today's ``game.rules.apply`` unchanged, on that
room's table only; the room layer adds who sits where, reconnects, timers and a
leaderboard across rooms. Like the rules, nothing here reads a clock or a
random source: time is the leader's timestamp of the entry, codes and tokens
come from the secret the leader committed into this state.

Rules the room layer adds:

- A session (client id) holds at most one seat in all rooms (``in_room``).
- A room's members never exceed its ``max_players``: joins are judged in log
  order against the state the previous entries left, so quick plays submitted
  at the same moment fill a room up and then open another.
- Quick play joins the public lobby with the most members that still has a
  seat (and allows bots, for a bot; and has nobody of that name), the oldest
  on a tie; with none, it creates a public room with the default settings.
- A seat is away after ``disconnect`` or after ``idle_ms`` of silence (see
  ``game.seats``); it keeps name, points and host role. Any accepted command
  from the seat's session brings it back; a new session brings it back with
  ``reclaim`` and the seat's token; ``grace_ms`` (default 30 s) after going
  away the seat is freed as if its holder had left (``player_left`` with
  reason ``grace``), and the name may join as new.
- A room without members is closed ``close_ms`` (default 60 s) after it
  emptied, unless someone joins first.
- Every finished game (``game_over``) is folded into one leaderboard across
  rooms (``state["leaderboard"]``, as ``game.scoring.record_game``).
- A rejected command changes nothing; commands naming room A never change
  room B (quick play and create may add a room).

## Commands (``{"type": ..., ...}``, to the state machine ``rooms``)

| command | fields | accepted result (``ok: true`` plus) |
|---|---|---|
| `create` | `name`; optional `private` (false), `bots` (true), `max_players` (1-16, 8), `rounds` (1-20, 3), `round_ms` (1000-600000, 20000), `player` (a name: join it at once), `bot` | `room`, `code` (private rooms, else null); with `player` also the join fields |
| `join` | `room` (id) or `code` (private rooms need it), `name`, optional `bot` | `room`, `name`, `spectator`, `host`, `token` |
| `quick_play` | `name`, optional `bot` | the join fields and `created` (bool) |
| `leave` | `room` | `room`, `name` |
| `disconnect` | `room` | `room`, `name`, `until_ms` (the seat is freed then) |
| `reclaim` | `room`, `name`, `token` | the join fields with a new `token`, and `score` (null outside a game) |
| `ready`, `start`, `hit`, `rematch`, `ping`, `tick` | `room` and today's fields | `room` and today's result fields |
| `close` | `room`; from the room's host or an ``@`` client id (the server's admin) | `room` |
| `timers` | `rooms` (ids) | `rooms`: the listed ids that are open (the leader proposes it; never rejected) |
| `set_secret` | `secret` (str) | `secret_set` (false if one was already set); leader (`@` client ids) only |

Errors are today's codes (``game.errors``) plus ``no_such_room``,
``private_room``, ``in_room``, ``not_in_room``, ``bots_not_allowed``,
``bad_room_config``, ``too_many_rooms``, ``bad_token``, ``rooms_starting``
(create, join, quick play and reclaim before the secret is committed: retry
in a moment). ``drop_idle`` is not a rooms command: ``timers`` marks idle
seats away instead of removing them, so a live client pings its room as
today (``game.view.needs_ping`` on the room's table).

## Events, and the topics they belong on

Every event carries ``room`` (the room id) except ``leaderboard``. Today's
game events (``player_joined``, ``phase``, ``target_hit``, ``game_over``, ...)
keep their shape, with ``room`` added. The room layer adds::

    room_created {room, listed, row}     room_row {room, listed, row}
    room_closed {room, listed, reason: "empty" | "closed"}
    seat_away {room, name, until_ms, reason: "disconnect" | "idle"}
    seat_back {room, name}               seat_reclaimed {room, name}
    leaderboard {rows}                   (the rows a game over changed)

``sync {room, op}`` records every change to what ``public_room`` shows, in
order: ``rules`` (today's command on the table: ``cmd``, ``client_id``,
``index``, ``now_ms``), ``seat`` (``name``, ``bot``), ``away`` (``name``,
``away_ms``), ``back`` (``name``), ``rebind`` (``name``, ``client_id``,
``now_ms``) and ``free`` (``names``). A client keeps a room as the Clone
pattern does: read ``{op: "room", room}`` (the room at some index), then apply
with ``apply_sync`` the ``sync`` events of later entries; the other events are
for animation and the room list. No sync carries a token, a code or the secret.

``row`` is a listing row: ``{room, name, phase, players, max_players, bots,
private, created_ms, leader}``; ``leader`` is always None here, for the server
to fill with the node (or group) that leads the room. ``topics(event)`` says
where an event is published: ``room/<id>`` carries every event of that room;
``rooms`` (the room list) carries ``room_created``, ``room_row`` and
``room_closed`` of public rooms (``listed``) and ``leaderboard``. A private
room never appears on ``rooms``. Room-list subscribers start from the query
``{op: "rooms"}``, room subscribers from ``{op: "room", room}`` (see
``game.rooms_machine``), then apply the events of higher index.

A client cannot keep a room by replaying rooms commands as it does the single
table (quick play reads every room, reclaim needs the secret): it replays the
room's ``sync`` records instead, which need neither.

## Tokens, codes and the trust model (for the server session)

Tokens and codes are HMACs under ``state["secret"]`` (``game.seats``). The
secret enters the state through the log, once: the first leader proposes
``set_secret`` with 128 random bits drawn on the leader (``RoomsMachine``'s
``entropy``, given by the composer in ``nodes/node_main.py``), so every
replica, including one that replays the log from the start, holds the same
secret, and no client can derive it from anything it can read (the cluster id
and the seed are public). Only ``@`` client ids, which the server reserves for
its own timers, may set it.

The nodes are trusted: the secret is in the log, the full snapshot and the
disk. Clients are not: everything a client can read must leave out the secret,
the tokens and the private codes. The machine never puts them in events,
listings, queries or ``public_snapshot()``; but results and commands travel in
published updates, so **the server must filter, for the machine ``rooms``**:

- commands: publish no ``set_secret`` command, drop ``token`` from published
  ``reclaim`` commands and ``code`` from published ``join`` commands (simplest:
  publish no rooms commands at all, clients do not replay them, see above);
- results: drop ``token`` and ``code`` from the result in every published
  update; only the submitter's own reply carries them;
- snapshots and reads: answer a client's ``snapshot`` request (today it sends
  every machine's ``snapshot()``) with ``public_snapshot()`` for ``rooms``;
  ``snapshot()`` is for Raft only.

A token is single use: every reclaim issues a new one, so a token seen once
(e.g. in a log line) is worthless after its owner used it. A private code is
30 bits: guessing one takes about 5e8 joins, which the server's per-client rate
limit makes impractical. Without ``--secure`` client ids are not
authenticated, so anyone can already act as any session; the token matters in
a secure cluster, where sessions are bound to keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from game import lobby, rules, seats, timeline
from game.config import GameConfig
from game.errors import Rejected
from game.guards import valid_name
from game.scoring import record_game
from game.state import LOBBY, check_invariants, find_name, members_by_join_order
from game.state import new_state as new_table

Events = list[dict[str, Any]]
Handled = tuple[dict[str, Any], Events]
Handler = Callable[[dict[str, Any], dict[str, Any], str, int, int], Handled]

LIST_TOPIC = "rooms"
ROOM_NAME_MAX_LEN = 32
_ROOM_NAME = re.compile(r"[A-Za-z0-9 _'-]+")
# Settings a room creator may choose: (smallest, largest) accepted value.
ROOM_LIMITS: dict[str, tuple[int, int]] = {
    "max_players": (1, 16),
    "rounds": (1, 20),
    "round_ms": (1_000, 600_000),
}
DELEGATED = frozenset({"ready", "start", "hit", "rematch", "ping", "tick"})
TIMER_CLIENT = "@rooms"  # the non-member a timer's table tick runs as
SECRET_MAX_CHARS = 256


def _valid_secret(secret: Any) -> bool:
    return isinstance(secret, str) and 0 < len(secret) <= SECRET_MAX_CHARS


def new_state(
    table_config: GameConfig | None = None,
    seed: int = 0,
    secret: str | None = None,
    grace_ms: int = 30_000,
    close_ms: int = 60_000,
    max_rooms: int = 10_000,
) -> dict[str, Any]:
    """No rooms yet. ``table_config`` is what a room gets for settings not chosen.

    ``secret`` None: the leader commits one with ``set_secret`` (see the module
    docstring); until then commands that issue or check tokens are refused."""
    if secret is not None and not _valid_secret(secret):
        raise ValueError(f"secret must be a str of 1-{SECRET_MAX_CHARS} chars, got {secret!r:.20}")
    for name, value in (("grace_ms", grace_ms), ("close_ms", close_ms), ("max_rooms", max_rooms)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int of at least 1, got {value!r}")
    new_table(table_config, seed)  # validates the seed exactly as a table does
    return {
        "seed": seed,
        "secret": secret,
        "now_ms": 0,
        "next_room": 1,
        "tokens_issued": 0,
        "config": {
            "grace_ms": grace_ms,
            "close_ms": close_ms,
            "max_rooms": max_rooms,
            "table": (table_config or GameConfig()).to_dict(),
        },
        "rooms": {},  # id -> room (see _open_room)
        "clients": {},  # client id -> [room id, seat name]
        "codes": {},  # private join code -> room id
        "leaderboard": {},
    }


def apply(state: dict[str, Any], command: Any, ctx: rules.Context) -> tuple[dict[str, Any], Events]:
    """Apply one committed rooms command in place; ``(result, events)`` as ``rules.apply``."""
    now_ms = max(state["now_ms"], int(ctx.timestamp_ms))
    try:
        handler = _handler_for(command)
        fields, events = handler(state, command, ctx.client_id, ctx.index, now_ms)
    except Rejected as rejection:
        return rejection.result(), []
    state["now_ms"] = now_ms
    return {"ok": True, **fields}, events


# --- creating and joining ------------------------------------------------------------


def create(state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int) -> Handled:
    _check_secret(state)
    name = _room_name(command.get("name"))
    private = _opt_bool(command, "private", False)
    bots = _opt_bool(command, "bots", True)
    table_config = _room_config(state, command)
    player = command.get("player")
    bot = _opt_bool(command, "bot", False)
    if player is not None:
        player = valid_name(player)
        _check_unseated(state, client_id)
        if bot and not bots:
            raise Rejected("bots_not_allowed", "a room without bots cannot seat its creator bot")
    _check_room_capacity(state)

    room = _open_room(state, name, private, bots, table_config, now_ms)
    events: Events = [_row_event("room_created", room)]
    fields: dict[str, Any] = {"room": room["id"], "code": room["code"]}
    if player is not None:
        joined, more = _seat(state, room, client_id, player, bot, index, now_ms)
        fields.update(joined)
        events += _tag(state, room, more)
        events.append(_row_event("room_row", room))
    return fields, events


def join(state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int) -> Handled:
    _check_secret(state)
    bot = _opt_bool(command, "bot", False)
    room = _room_to_join(state, command)
    seated = state["clients"].get(client_id)
    if seated is not None:
        same = seated[0] == room["id"] and isinstance(command.get("name"), str) and \
            seated[1].casefold() == command["name"].strip().casefold()
        if same:  # a duplicated join must not fail the session that got in
            return _seat_fields(state, room, seated[1]), []
        _check_unseated(state, client_id)
    if bot and not room["bots"]:
        raise Rejected("bots_not_allowed", f"room {room['id']} does not allow bots")
    before = listing_row(room)
    fields, events = _seat(state, room, client_id, command.get("name"), bot, index, now_ms)
    return fields, _after(state, room, before, events)


def quick_play(
    state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int
) -> Handled:
    _check_secret(state)
    name = valid_name(command.get("name"))
    bot = _opt_bool(command, "bot", False)
    _check_unseated(state, client_id)
    room = best_open_room(state, name, bot)
    events: Events = []
    if room is None:
        _check_room_capacity(state)
        number = state["next_room"]
        config = GameConfig.from_dict(state["config"]["table"])
        room = _open_room(state, f"Room {number}", False, True, config, now_ms)
        events.append(_row_event("room_created", room))
    before = listing_row(room)
    fields, more = _seat(state, room, client_id, name, bot, index, now_ms)
    return {**fields, "created": bool(events)}, events + _after(state, room, before, more)


def best_open_room(state: dict[str, Any], name: str, bot: bool) -> dict[str, Any] | None:
    """Quick play's choice: the fullest public lobby with a seat, oldest on a tie. O(rooms)."""
    best, best_key = None, None
    for room in state["rooms"].values():
        table = room["table"]
        members = len(table["players"])
        if (
            room["private"]
            or table["game_state"]["phase"] != LOBBY
            or members >= table["config"]["max_players"]
            or (bot and not room["bots"])
            or find_name(table, name) is not None
        ):
            continue
        key = (members, -room["number"])
        if best_key is None or key > best_key:
            best, best_key = room, key
    return best


# --- leaving, going away and coming back ------------------------------------------------


def leave(state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int) -> Handled:
    room, name = _my_seat(state, command, client_id)
    before = listing_row(room)
    _, events = _delegate(room, {"type": "leave"}, client_id, index, now_ms)
    _free_seats(state, room, {name: client_id}, now_ms)
    return {"room": room["id"], "name": name}, _after(state, room, before, events)


def disconnect(
    state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int
) -> Handled:
    room, name = _my_seat(state, command, client_id)
    seat = room["seats"][name]
    events: Events = []
    if seat["away_ms"] is None:
        seat["away_ms"] = now_ms
        until_ms = now_ms + state["config"]["grace_ms"]
        events += [{"type": "seat_away", "name": name, "until_ms": until_ms, "reason": "disconnect"},
                   _sync({"op": "away", "name": name, "away_ms": now_ms})]
    until_ms = seat["away_ms"] + state["config"]["grace_ms"]
    return {"room": room["id"], "name": name, "until_ms": until_ms}, _tag(state, room, events)


def reclaim(state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int) -> Handled:
    """A new session takes back an existing seat (away or not) with the seat's token."""
    _check_secret(state)
    room = _room_by_id(state, command.get("room"))
    raw_name = command.get("name")
    name = find_name(room["table"], raw_name) if isinstance(raw_name, str) else None
    seat = room["seats"].get(name) if name is not None else None
    if seat is None or not seats.token_matches(
        state["secret"], room["id"], name, seat["epoch"], command.get("token")
    ):
        raise Rejected(
            "bad_token",
            f"room {room['id']} has no seat {raw_name!r} with that token (its grace period may "
            "have ended): join as a new player",
        )
    seated = state["clients"].get(client_id)
    if seated is not None and seated != [room["id"], name]:
        _check_unseated(state, client_id)

    before = listing_row(room)
    table = room["table"]
    events = _table_tick(room, index, now_ms)
    player = table["players"][name]
    del state["clients"][player["client_id"]]
    state["clients"][client_id] = [room["id"], name]
    player["client_id"] = client_id
    player["last_seen_ms"] = now_ms
    seat["away_ms"] = None
    seat["epoch"] = _next_epoch(state)
    events += [{"type": "seat_reclaimed", "name": name},
               _sync({"op": "rebind", "name": name, "client_id": client_id, "now_ms": now_ms})]
    fields = _seat_fields(state, room, name)
    fields["score"] = table["scores"].get(name)
    return fields, _after(state, room, before, events)


# --- the game's own commands, and time --------------------------------------------------


def delegated(
    state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int
) -> Handled:
    """Today's command on the caller's room's table; an away seat that speaks is back."""
    room, name = _my_seat(state, command, client_id)
    before = listing_row(room)
    inner = {key: value for key, value in command.items() if key != "room"}
    fields, events = _delegate(room, inner, client_id, index, now_ms)
    seat = room["seats"].get(name)
    if seat is not None and seat["away_ms"] is not None:
        seat["away_ms"] = None
        events += [{"type": "seat_back", "name": name}, _sync({"op": "back", "name": name})]
    return {"room": room["id"], **fields}, _after(state, room, before, events)


def timers(state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int) -> Handled:
    """Everything due in the listed rooms at ``now_ms``: phase ends, seats going away,
    seats freed after the grace period, empty rooms closed. Unknown ids are skipped."""
    ids = command.get("rooms")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise Rejected("bad_command", "timers needs 'rooms': a list of room ids")
    events: Events = []
    done: list[str] = []
    for room_id in dict.fromkeys(ids):  # each once, in the order given
        room = state["rooms"].get(room_id)
        if room is not None:
            done.append(room_id)
            events += _room_timers(state, room, index, now_ms)
    return {"rooms": done}, events


def _room_timers(state: dict[str, Any], room: dict[str, Any], index: int, now_ms: int) -> Events:
    config = state["config"]
    table = room["table"]
    before = listing_row(room)
    events: Events = _table_tick(room, index, now_ms) if timeline.transition_due(table, now_ms) else []
    idle_ms = table["config"]["idle_ms"]
    for name in members_by_join_order(table):
        seat = room["seats"][name]
        since = seats.idle_since(table["players"][name], idle_ms)
        if seat["away_ms"] is None and now_ms >= since:
            seat["away_ms"] = since
            until_ms = since + config["grace_ms"]
            events += [{"type": "seat_away", "name": name, "until_ms": until_ms, "reason": "idle"},
                       _sync({"op": "away", "name": name, "away_ms": since})]
    expired = [
        name
        for name in members_by_join_order(table)
        if room["seats"][name]["away_ms"] is not None
        and now_ms >= room["seats"][name]["away_ms"] + config["grace_ms"]
    ]
    if expired:
        clients = {name: table["players"][name]["client_id"] for name in expired}
        events += lobby.remove_members(table, expired, reason="grace")
        events.append(_sync({"op": "free", "names": expired}))
        _free_seats(state, room, clients, now_ms)
    empty_since = room["empty_since_ms"]
    if empty_since is not None and now_ms >= empty_since + config["close_ms"]:
        tagged = _tag(state, room, events)
        _close_room(state, room)
        return tagged + [{"type": "room_closed", "room": room["id"], "listed": not room["private"],
                          "reason": "empty"}]
    return _after(state, room, before, events)


def close(state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int) -> Handled:
    """Close a room now, its seats with it (the host's or an admin's call)."""
    room = _room_by_id(state, command.get("room"))
    table = room["table"]
    if not client_id.startswith("@"):
        seated = state["clients"].get(client_id)
        if seated is None or seated[0] != room["id"] or table["game_state"]["host"] != seated[1]:
            raise Rejected("not_host", f"only room {room['id']}'s host (or an admin) may close it")
    for player in table["players"].values():
        del state["clients"][player["client_id"]]
    _close_room(state, room)
    return {"room": room["id"]}, [{"type": "room_closed", "room": room["id"],
                                   "listed": not room["private"], "reason": "closed"}]


def set_secret(
    state: dict[str, Any], command: dict, client_id: str, index: int, now_ms: int
) -> Handled:
    """The leader's one-time secret for tokens and codes; later ones change nothing."""
    if not client_id.startswith("@"):
        raise Rejected("bad_command", "set_secret is proposed by the leader only")
    if not _valid_secret(command.get("secret")):
        raise Rejected("bad_command", f"set_secret needs 'secret': a str of 1-{SECRET_MAX_CHARS} chars")
    if state["secret"] is not None:
        return {"secret_set": False}, []
    state["secret"] = command["secret"]
    return {"secret_set": True}, []


# --- reading --------------------------------------------------------------------------


def listing_row(room: dict[str, Any]) -> dict[str, Any]:
    """What the room browser shows of a room (never its code)."""
    table = room["table"]
    return {
        "room": room["id"],
        "name": room["name"],
        "phase": table["game_state"]["phase"],
        "players": len(table["players"]),
        "max_players": table["config"]["max_players"],
        "bots": room["bots"],
        "private": room["private"],
        "created_ms": room["created_ms"],
        "leader": None,  # filled by the server: the node (or group) leading this room
    }


def public_room(room: dict[str, Any]) -> dict[str, Any]:
    """A room as any client may see it: the table, the row, which seats are away."""
    return {
        "row": listing_row(room),
        "table": room["table"],
        "away": {name: seat["away_ms"] for name, seat in room["seats"].items()
                 if seat["away_ms"] is not None},
        "bots": sorted(name for name, seat in room["seats"].items() if seat["bot"]),
    }


def apply_sync(view: dict[str, Any], op: dict[str, Any]) -> None:
    """Bring a client's copy of ``public_room`` forward by one ``sync`` record, in place.

    Applying a room's ``sync`` events in order to the ``public_room`` read at an
    earlier index gives exactly the ``public_room`` at the later one (the
    property tests check it): the Clone pattern per room."""
    table = view["table"]
    kind = op["op"]
    if kind == "rules":
        rules.apply(table, op["cmd"], rules.Context(op["index"], op["now_ms"], op["client_id"]))
    elif kind == "seat" and op["bot"]:
        view["bots"] = sorted({*view["bots"], op["name"]})
    elif kind == "away":
        view["away"][op["name"]] = op["away_ms"]
    elif kind in ("back", "rebind"):
        view["away"].pop(op["name"], None)
        if kind == "rebind":
            player = table["players"][op["name"]]
            player["client_id"] = op["client_id"]
            player["last_seen_ms"] = op["now_ms"]
    elif kind == "free":
        lobby.remove_members(table, op["names"], reason="grace")
    players = table["players"]
    view["away"] = {name: ms for name, ms in view["away"].items() if name in players}
    view["bots"] = [name for name in view["bots"] if name in players]
    view["row"]["phase"] = table["game_state"]["phase"]
    view["row"]["players"] = len(players)


def topics(event: dict[str, Any]) -> tuple[str, ...]:
    """The publish topics of one event: ``room/<id>`` and/or the room list ``rooms``."""
    if event["type"] == "leaderboard":
        return (LIST_TOPIC,)
    own = f"room/{event['room']}"
    if event["type"] in ("room_created", "room_row", "room_closed") and event["listed"]:
        return (own, LIST_TOPIC)
    return (own,)


def check_rooms_invariants(state: dict[str, Any]) -> None:
    """Assert the cross-room invariants (and every table's); for tests."""
    seen_clients: dict[str, list[str]] = {}
    codes = {}
    for room_id, room in state["rooms"].items():
        table = room["table"]
        check_invariants(table)
        assert room_id == f"r{room['number']}" and room["number"] < state["next_room"], room_id
        assert set(room["seats"]) == set(table["players"]), (room_id, room["seats"])
        assert (room["empty_since_ms"] is None) == bool(table["players"]), room_id
        assert room["private"] == (room["code"] is not None), room_id
        if room["code"] is not None:
            codes[room["code"]] = room_id
        for name, player in table["players"].items():
            assert player["client_id"] not in seen_clients, player["client_id"]
            seen_clients[player["client_id"]] = [room_id, name]
            away = room["seats"][name]["away_ms"]
            assert away is None or away <= state["now_ms"], (room_id, name, away)
    assert seen_clients == state["clients"], (seen_clients, state["clients"])
    assert codes == state["codes"], (codes, state["codes"])


# --- helpers ----------------------------------------------------------------------------


COMMANDS: dict[str, Handler] = {
    "create": create,
    "join": join,
    "quick_play": quick_play,
    "leave": leave,
    "disconnect": disconnect,
    "reclaim": reclaim,
    "close": close,
    "timers": timers,
    "set_secret": set_secret,
    **{kind: delegated for kind in sorted(DELEGATED)},
}


def _handler_for(command: Any) -> Handler:
    if not isinstance(command, dict):
        raise Rejected(
            "bad_command", f"a command must be a map with a 'type', got {type(command).__name__}"
        )
    kind = command.get("type")
    handler = COMMANDS.get(kind) if isinstance(kind, str) else None
    if handler is None:
        known = ", ".join(COMMANDS)
        raise Rejected("unknown_command", f"unknown rooms command type {kind!r}; known: {known}")
    return handler


def _delegate(
    room: dict[str, Any], inner: dict[str, Any], client_id: str, index: int, now_ms: int
) -> Handled:
    """Today's ``rules.apply`` on the room's table; its rejection becomes ours (nothing changed)."""
    result, events = rules.apply(room["table"], inner, rules.Context(index, now_ms, client_id))
    if not result["ok"]:
        raise Rejected(result["error"], result["message"])
    sync = {"op": "rules", "cmd": inner, "client_id": client_id, "index": index, "now_ms": now_ms}
    return {k: v for k, v in result.items() if k != "ok"}, [*events, _sync(sync)]


def _table_tick(room: dict[str, Any], index: int, now_ms: int) -> Events:
    """Let the table's time pass to ``now_ms`` (a tick from no member: never rejected)."""
    _, events = _delegate(room, {"type": "tick"}, TIMER_CLIENT, index, now_ms)
    return events


def _sync(op: dict[str, Any]) -> dict[str, Any]:
    return {"type": "sync", "op": op}


def _seat(
    state: dict[str, Any], room: dict[str, Any], client_id: str, name: Any, bot: bool,
    index: int, now_ms: int,
) -> Handled:
    """Join the room's table; on success the session's seat and first token exist."""
    joined, events = _delegate(room, {"type": "join", "name": name, "bot": bot}, client_id, index,
                               now_ms)
    stored = joined["name"]
    room["seats"][stored] = {"epoch": _next_epoch(state), "bot": bot, "away_ms": None}
    events.append(_sync({"op": "seat", "name": stored, "bot": bot}))
    state["clients"][client_id] = [room["id"], stored]
    room["empty_since_ms"] = None
    return _seat_fields(state, room, stored), events


def _seat_fields(state: dict[str, Any], room: dict[str, Any], name: str) -> dict[str, Any]:
    player = room["table"]["players"][name]
    token = seats.token_for(state["secret"], room["id"], name, room["seats"][name]["epoch"])
    return {
        "room": room["id"],
        "name": name,
        "spectator": player["spectator"],
        "host": room["table"]["game_state"]["host"] == name,
        "token": token,
    }


def _free_seats(
    state: dict[str, Any], room: dict[str, Any], clients: dict[str, str], now_ms: int
) -> None:
    """Forget the seats (name -> client id) whose members the table has already removed."""
    for name, client_id in clients.items():
        del room["seats"][name]
        del state["clients"][client_id]
    if not room["table"]["players"]:
        room["empty_since_ms"] = now_ms


def _next_epoch(state: dict[str, Any]) -> int:
    state["tokens_issued"] += 1
    return state["tokens_issued"]


def _open_room(
    state: dict[str, Any], name: str, private: bool, bots: bool, config: GameConfig, now_ms: int
) -> dict[str, Any]:
    number = state["next_room"]
    state["next_room"] += 1
    room_id = f"r{number}"
    code = None
    if private:
        attempt = 0
        while (code := seats.code_for(state["secret"], room_id, attempt)) in state["codes"]:
            attempt += 1
        state["codes"][code] = room_id
    room = {
        "id": room_id,
        "number": number,
        "name": name,
        "private": private,
        "code": code,
        "bots": bots,
        "created_ms": now_ms,
        "empty_since_ms": now_ms,
        "seats": {},  # name -> {epoch, bot, away_ms}; the same names as table players
        "table": new_table(config, seats.table_seed(state["seed"], room_id)),
    }
    state["rooms"][room_id] = room
    return room


def _close_room(state: dict[str, Any], room: dict[str, Any]) -> None:
    del state["rooms"][room["id"]]
    if room["code"] is not None:
        del state["codes"][room["code"]]


def _tag(state: dict[str, Any], room: dict[str, Any], events: Events) -> Events:
    """Events of one room: add the room id; fold each game over into the leaderboard."""
    tagged: Events = []
    for event in events:
        tagged.append({**event, "room": room["id"]})
        if event["type"] == "game_over" and event["scores"]:
            record_game(state["leaderboard"], event["scores"], event["winners"])
            rows = [dict(state["leaderboard"][n.casefold()]) for n in sorted(event["scores"])]
            tagged.append({"type": "leaderboard", "rows": rows})
    return tagged


def _after(state: dict[str, Any], room: dict[str, Any], before: dict[str, Any], events: Events) -> Events:
    tagged = _tag(state, room, events)
    if listing_row(room) != before:
        tagged.append(_row_event("room_row", room))
    return tagged


def _row_event(kind: str, room: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "room": room["id"], "listed": not room["private"], "row": listing_row(room)}


def _room_by_id(state: dict[str, Any], room_id: Any) -> dict[str, Any]:
    if not isinstance(room_id, str):
        raise Rejected("bad_command", f"the command needs a room id 'room', got {room_id!r:.40}")
    room = state["rooms"].get(room_id)
    if room is None:
        raise Rejected("no_such_room", f"no open room {room_id!r}; list the rooms and pick another")
    return room


def _room_to_join(state: dict[str, Any], command: dict) -> dict[str, Any]:
    """By ``code`` (any room, private ones only so) or by ``room`` id (public rooms)."""
    if command.get("code") is not None:
        code = seats.normal_code(command["code"])
        room_id = state["codes"].get(code) if code else None
        if room_id is None or command.get("room") not in (None, room_id):
            raise Rejected("no_such_room", f"no open room has the code {command['code']!r:.20}")
        return state["rooms"][room_id]
    room = _room_by_id(state, command.get("room"))
    if room["private"]:
        raise Rejected("private_room", f"room {room['id']} is private: join it with its code")
    return room


def _my_seat(state: dict[str, Any], command: dict, client_id: str) -> tuple[dict[str, Any], str]:
    room = _room_by_id(state, command.get("room"))
    seated = state["clients"].get(client_id)
    if seated is None or seated[0] != room["id"]:
        where = f"; it sits in {seated[0]}" if seated else ""
        raise Rejected("not_in_room", f"this session has no seat in room {room['id']}{where}")
    return room, seated[1]


def _check_unseated(state: dict[str, Any], client_id: str) -> None:
    seated = state["clients"].get(client_id)
    if seated is not None:
        raise Rejected(
            "in_room",
            f"this session already sits in room {seated[0]} as {seated[1]!r}; leave it first",
        )


def _check_secret(state: dict[str, Any]) -> None:
    if state["secret"] is None:
        raise Rejected(
            "rooms_starting", "the cluster is still setting up rooms (no secret committed yet); retry"
        )


def _check_room_capacity(state: dict[str, Any]) -> None:
    limit = state["config"]["max_rooms"]
    if len(state["rooms"]) >= limit:
        raise Rejected("too_many_rooms", f"the cluster holds its limit of {limit} rooms; use quick play or wait")


def _room_name(raw: Any) -> str:
    name = raw.strip() if isinstance(raw, str) else ""
    if not 1 <= len(name) <= ROOM_NAME_MAX_LEN or not _ROOM_NAME.fullmatch(name):
        raise Rejected(
            "bad_room_config",
            f"a room name is 1-{ROOM_NAME_MAX_LEN} letters, digits, spaces, _ ' or -; got {raw!r:.40}",
        )
    return name


def _opt_bool(command: dict, key: str, default: bool) -> bool:
    value = command.get(key, default)
    if not isinstance(value, bool):
        raise Rejected("bad_command", f"{command.get('type')}: {key!r} must be a boolean, got {value!r:.20}")
    return value


def _room_config(state: dict[str, Any], command: dict) -> GameConfig:
    """The base table config with the creator's choices, each checked against ROOM_LIMITS."""
    chosen = dict(state["config"]["table"])
    for key, (low, high) in ROOM_LIMITS.items():
        if key not in command:
            continue
        value = command[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise Rejected("bad_room_config", f"{key} must be an integer in {low}..{high}, got {value!r:.20}")
        chosen[key] = value
    chosen["min_players"] = min(chosen["min_players"], chosen["max_players"])
    try:
        return GameConfig.from_dict(chosen)
    except ValueError as exc:
        raise Rejected("bad_room_config", str(exc)) from exc
