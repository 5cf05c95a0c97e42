"""Properties of the rooms over random command sequences (hypothesis).

- Rooms never interfere: a command naming room A leaves every other room
  byte-identical; create and quick play touch only the room they seat in.
- A rejected command changes nothing (the whole state, byte for byte, and the
  leader's timer).
- Quick play never overfills a room and is never refused for lack of a seat,
  under any interleaving with joins, leaves, games and timers.
- Determinism: the same commands give the same bytes on two replicas, and a
  replica restored from a snapshot taken midway ends byte-identical.
- A client that read a room once and applies the room's ``sync`` records holds
  exactly what ``public_room`` shows after every command (the Clone pattern per room).
- ``check_rooms_invariants`` holds after every command (RoomsLog checks it).
"""

from __future__ import annotations

import copy

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rooms_helpers import RoomsLog

from game import rooms
from game.config import GameConfig
from game.errors import ERROR_CODES
from game.rooms_machine import RoomsMachine

# Short phases, small rooms and short graces so random sequences reach every case.
CONFIG = GameConfig(
    rounds=1,
    targets_per_round=2,
    round_ms=300,
    countdown_ms=20,
    intermission_ms=30,
    min_players=2,
    max_players=3,
    idle_ms=400,
)
OPTIONS = {"grace_ms": 500, "close_ms": 700}
CLIENTS = st.sampled_from([f"c{n}" for n in range(1, 8)])
NAMES = st.sampled_from(["ann", "bob", "cy", "dee", "Ann", ""])
# "$mine": the room the sending session sits in (most commands a client sends go there).
ROOMS = st.sampled_from(["$mine", "$mine", "$mine", "$mine", "r1", "r2", "r3", "r9"])

_room_commands = st.one_of(
    st.builds(lambda r, n: {"type": "join", "room": r, "name": n}, ROOMS, NAMES),
    st.builds(lambda r, n: {"type": "join", "code": f"$code:{r}", "name": n}, ROOMS, NAMES),
    st.builds(lambda r: {"type": "leave", "room": r}, ROOMS),
    st.builds(lambda r: {"type": "disconnect", "room": r}, ROOMS),
    st.builds(
        lambda r, n, t: {"type": "reclaim", "room": r, "name": n, "token": t},
        st.sampled_from(["$seat", "$seat", "r1"]),
        st.sampled_from(["$held", "$held", "ann"]),
        st.sampled_from(["$token", "$token", "0" * 32]),
    ),
    st.builds(lambda r, v: {"type": "ready", "room": r, "ready": v}, ROOMS, st.booleans()),
    st.builds(lambda r: {"type": "start", "room": r}, ROOMS),
    st.builds(
        lambda r, t: {"type": "hit", "room": r, "round": 1, "target": t}, ROOMS, st.integers(0, 2)
    ),
    st.builds(
        lambda r, k: {"type": k, "room": r},
        ROOMS,
        st.sampled_from(["ping", "ping", "rematch", "tick", "close"]),
    ),
)
_other_commands = st.one_of(
    st.builds(lambda n, b: {"type": "quick_play", "name": n, "bot": b}, NAMES, st.booleans()),
    st.builds(
        lambda p, m, b, pl: {
            "type": "create",
            "name": "room",
            "private": p,
            "max_players": m,
            "bots": b,
            **({"player": pl} if pl else {}),
        },
        st.booleans(),
        st.integers(0, 3),
        st.booleans(),
        st.sampled_from([None, "ann", "eve"]),
    ),
    st.sampled_from([{"type": "dance"}, {"type": "drop_idle"}, {}, {"type": "timers", "rooms": 1}]),
)
# Purely random traffic rarely seats anyone or starts a game, so every plan opens with a few
# quick plays, and half of them start the games and shoot once.
_opening = st.integers(2, 7).map(
    lambda k: [("cmd", f"c{n}", {"type": "quick_play", "name": f"p{n}"}) for n in range(1, k + 1)]
)
_body = st.lists(
    st.one_of(
        st.tuples(st.just("cmd"), CLIENTS, _room_commands),
        st.tuples(st.just("cmd"), CLIENTS, _room_commands),
        st.tuples(st.just("cmd"), CLIENTS, _room_commands),
        st.tuples(st.just("cmd"), CLIENTS, _other_commands),
        # a negative wait: the next leader's clock is behind (the rules keep time monotonic)
        st.tuples(st.just("wait"), st.sampled_from([0, 10, 50, 200, 450, 800, -300])),
        st.tuples(st.just("wait"), st.sampled_from([30, 100])),
        st.tuples(st.just("timers")),
        st.tuples(st.just("timers")),
        st.tuples(
            st.sampled_from(
                ["ready_all", "start_all", "hit_all", "hit_all", "ping_all", "host_closes"]
            )
        ),
    ),
    min_size=5,
    max_size=60,
)
_game_start = [("ready_all",), ("start_all",), ("wait", 30), ("timers",), ("hit_all",)]
steps = st.builds(
    lambda a, play, b: a + (_game_start if play else []) + b, _opening, st.booleans(), _body
)


def _resolve(log: RoomsLog, client: str, command: dict) -> dict:
    """Fill in what a client would know at run time: its room, a room's code, a seat's token."""
    command = dict(command)
    if command.get("room") == "$mine":
        command["room"] = log.state["clients"].get(client, ["r1"])[0]
    if command.get("name") == "$held":  # a seat some other session holds (last taken first)
        held = [name for c, (_, name) in log.state["clients"].items() if c != client]
        command["name"] = held[-1] if held else "ann"
    if command.get("room") == "$seat":
        name = command["name"]
        held = [rid for rid, room in log.state["rooms"].items() if name in room["seats"]]
        command["room"] = held[0] if held else "r1"
    if str(command.get("code", "")).startswith("$code:"):
        room = log.state["rooms"].get(command["code"][6:])
        command["code"] = room["code"] if room and room["code"] else "ZZZZZZ"
    if command.get("token") == "$token":
        room = log.state["rooms"].get(command["room"])
        seat = room["seats"].get(command["name"]) if room else None
        command["token"] = log.token(command["room"], command["name"]) if seat else "f" * 32
    return command


def _expand(log: RoomsLog, step: tuple) -> list[tuple[str, dict]]:
    """A step as the (client, command) pairs it sends now; "ready_all", "start_all" and
    "hit_all" get every seated session ready / every host starting / everyone shooting at
    the running round, so random plans reach running and finished games; "ping_all" has
    every seated session speak (accepted in any phase, often while another room is due);
    "host_closes" has one host close its room."""
    if step[0] == "cmd":
        return [(step[1], _resolve(log, step[1], step[2]))]
    seated = sorted(log.state["clients"].items())
    if step[0] == "ready_all":
        return [(c, {"type": "ready", "room": rid, "ready": True}) for c, (rid, _) in seated]
    if step[0] == "host_closes":  # one host (the first by client id) closes its room
        return [
            (c, {"type": "close", "room": rid})
            for c, (rid, name) in seated
            if log.table(rid)["game_state"]["host"] == name
        ][:1]
    if step[0] == "ping_all":
        return [(c, {"type": "ping", "room": rid}) for c, (rid, _) in seated]
    if step[0] == "hit_all":
        return [
            (
                c,
                {
                    "type": "hit",
                    "room": rid,
                    "target": int(c[1:]) % 2,
                    "round": log.table(rid)["current_round"]["number"],
                },
            )
            for c, (rid, _) in seated
        ]
    return [
        (c, {"type": "start", "room": rid})
        for c, (rid, name) in seated
        if log.table(rid)["game_state"]["host"] == name
    ]


def _packed(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _run(log: RoomsLog, plan: list) -> None:
    for step in plan:
        if step[0] == "wait":
            log.wait(step[1])
        elif step[0] == "timers":
            log.timers()
        else:
            for client, command in _expand(log, step):
                log.submit(client, command)


def _check_step(log: RoomsLog, client: str, command: dict) -> dict:
    before = _packed(log.machine.snapshot())
    rooms_before = {rid: log.room_bytes(rid) for rid in log.state["rooms"]}
    due_before = dict(log.machine._due)
    result = log.submit(client, command)
    if not result["ok"]:
        assert result["error"] in ERROR_CODES and result["message"]
        assert _packed(log.machine.snapshot()) == before, (command, result)
        assert log.machine._due == due_before
        assert log.events == []
        return result
    if command["type"] == "timers":
        touched = set(command["rooms"])
    elif isinstance(command.get("room"), str):
        touched = {command["room"]}
    else:  # create, quick play, join by code: only the room they seat in (or made)
        touched = {result["room"]}
    for rid, packed in rooms_before.items():
        if rid not in touched:
            assert log.room_bytes(rid) == packed, (rid, command)
    return result


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_rooms_never_interfere_and_a_rejected_command_changes_nothing(plan: list) -> None:
    log = RoomsLog(CONFIG, **OPTIONS)
    for step in plan:
        if step[0] == "wait":
            log.wait(step[1])
            continue
        if step[0] == "timers":
            command = log.machine.due_command(log.clock_ms)
            if command is not None:
                _check_step(log, "@rooms/n1/1", command)
            continue
        for client, command in _expand(log, step):
            _check_step(log, client, command)


quick_steps = st.lists(
    st.one_of(
        st.tuples(st.just("quick"), st.integers(0, 11), st.booleans()),
        st.tuples(st.just("leave"), st.integers(0, 11)),
        st.tuples(st.just("start"), st.integers(0, 11)),
        st.tuples(st.just("wait"), st.sampled_from([0, 0, 100, 500])),
        st.tuples(st.just("create"), st.integers(1, 3), st.booleans()),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=quick_steps)
def test_quick_play_never_overfills_a_room_under_any_interleaving(plan: list) -> None:
    log = RoomsLog(CONFIG, **OPTIONS)
    for step in plan:
        kind = step[0]
        if kind == "wait":
            log.wait(step[1])
            log.timers()
        elif kind == "create":
            log.do("maker", "create", name="made", max_players=step[1], bots=step[2])
        else:
            client = f"p{step[1]}"
            seated = log.state["clients"].get(client)
            if kind == "quick":
                result = log.do(client, "quick_play", name=f"n{step[1]}", bot=step[2])
                # quick play finds or makes a seat: refused only to a session already seated
                assert result["ok"] or (seated and result["error"] == "in_room"), result
                if result["ok"]:
                    table = log.table(result["room"])
                    assert table["game_state"]["phase"] == "lobby" and not result["spectator"]
            elif seated:
                command = "leave" if kind == "leave" else "start"
                log.do(client, command, room=seated[0])
        for room in log.state["rooms"].values():
            table = room["table"]
            assert len(table["players"]) <= table["config"]["max_players"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps, cut=st.integers(0, 60))
def test_replicas_applying_the_same_commands_end_byte_identical_even_from_a_snapshot(
    plan: list, cut: int
) -> None:
    one, two = RoomsLog(CONFIG, **OPTIONS), RoomsLog(CONFIG, **OPTIONS)
    _run(one, plan)
    _run(two, plan)
    assert _packed(one.machine.snapshot()) == _packed(two.machine.snapshot())

    first = RoomsLog(CONFIG, **OPTIONS)
    _run(first, plan[:cut])
    restored = RoomsLog(CONFIG, **OPTIONS)
    restored.machine = RoomsMachine()
    restored.machine.restore(msgpack.unpackb(_packed(first.machine.snapshot())))
    restored.index, restored.clock_ms = first.index, first.clock_ms
    _run(first, plan[cut:])
    _run(restored, plan[cut:])
    assert _packed(restored.machine.snapshot()) == _packed(first.machine.snapshot())
    assert restored.machine.due_command(10**15) == first.machine.due_command(10**15)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_a_client_keeps_each_room_from_one_read_plus_the_rooms_sync_records(plan: list) -> None:
    log = RoomsLog(CONFIG, **OPTIONS)
    views: dict[str, dict] = {}  # room id -> a client's copy, read once when the room appeared

    def follow() -> None:
        for event in log.events:
            if event["type"] == "sync" and event["room"] in views:
                rooms.apply_sync(views[event["room"]], event["op"])
        for room_id, room in log.state["rooms"].items():
            if room_id not in views:
                views[room_id] = copy.deepcopy(rooms.public_room(room))
        for room_id in [r for r in views if r not in log.state["rooms"]]:
            del views[room_id]

    for step in plan:
        if step[0] == "wait":
            log.wait(step[1])
        elif step[0] == "timers":
            if log.timers() is not None:
                follow()
        else:
            for client, command in _expand(log, step):
                log.submit(client, command)
                follow()
        for room_id, room in log.state["rooms"].items():
            assert views[room_id] == rooms.public_room(room), room_id
