"""RoomsMachine: the rooms behind the node layer's StateMachine protocol, and the leader's timer."""

from __future__ import annotations

import msgpack
import pytest
from rooms_helpers import Entry, RoomsLog

from game.config import GameConfig
from game.machine import GameMachine
from game.rooms_machine import MAX_TIMER_ROOMS, RoomsMachine
from nodes.statemachine import Replicated, encode_command

CONFIG = GameConfig(rounds=1, countdown_ms=100, round_ms=5_000, idle_ms=15_000)


def test_the_machine_runs_inside_the_node_layers_replicated_composite() -> None:
    sm = Replicated([GameMachine(), RoomsMachine(secret="s")])
    applied = sm.apply_entry(
        1, 1, encode_command("c1", 1, 5_000, "rooms", {"type": "quick_play", "name": "ann"})
    )
    assert applied.result["ok"] and applied.result["room"] == "r1"
    assert {e["machine"] for e in applied.events} == {"rooms"}
    other = Replicated([GameMachine(), RoomsMachine(secret="s")])
    other.restore(sm.snapshot())
    assert other.snapshot() == sm.snapshot()


def test_a_snapshot_restored_on_another_node_gives_the_same_bytes_and_timers() -> None:
    log = RoomsLog(CONFIG)
    log.do("c1", "quick_play", name="ann")
    log.do("c2", "create", name="two", private=True, player="bob")
    copy_ = RoomsMachine()
    copy_.restore(msgpack.unpackb(msgpack.packb(log.machine.snapshot())))
    assert msgpack.packb(copy_.snapshot()) == msgpack.packb(log.machine.snapshot())
    later = log.clock_ms + CONFIG.idle_ms
    assert (
        copy_.due_command(later)
        == log.machine.due_command(later)
        == {"type": "timers", "rooms": ["r1", "r2"]}
    )


def test_restore_refuses_data_that_is_not_a_rooms_snapshot() -> None:
    with pytest.raises(ValueError, match="rooms snapshot"):
        RoomsMachine().restore({"players": {}})


def test_due_command_is_quiet_until_something_is_due_and_after_it_was_applied() -> None:
    log = RoomsLog(CONFIG, grace_ms=30_000, close_ms=60_000)
    assert log.machine.due_command(10**12) is None  # no rooms, nothing to do
    log.do("c1", "create", name="one")  # empty: closes 60 s after creation
    log.do("c2", "quick_play", name="bob")  # r1 again: bob goes idle 15 s from now
    assert log.machine.due_command(log.clock_ms + CONFIG.idle_ms - 1) is None
    log.wait(CONFIG.idle_ms)
    assert log.machine.due_command(log.clock_ms) == {"type": "timers", "rooms": ["r1"]}
    log.timers()
    assert log.types() == ["seat_away"]
    assert log.machine.due_command(log.clock_ms) is None  # no busy loop of empty timers


def test_one_timers_entry_handles_at_most_max_timer_rooms_rooms_earliest_first() -> None:
    log = RoomsLog(CONFIG, close_ms=1_000)
    for n in range(MAX_TIMER_ROOMS + 3):
        log.do(f"c{n}", "create", name=f"room {n}")
        log.wait(1)
    log.wait(1_000)
    first = log.timers()
    assert first["rooms"] == [f"r{n}" for n in range(1, MAX_TIMER_ROOMS + 1)]
    assert log.timers()["rooms"] == [
        f"r{n}" for n in range(MAX_TIMER_ROOMS + 1, MAX_TIMER_ROOMS + 4)
    ]
    assert log.state["rooms"] == {} and log.timers() is None


def test_queries_answer_rooms_room_seat_and_errors() -> None:
    log = RoomsLog(CONFIG)
    log.do("c1", "quick_play", name="ann")
    m = log.machine
    assert [r["room"] for r in m.query({"op": "rooms"})["rooms"]] == ["r1"]
    room = m.query({"op": "room", "room": "r1"})["room"]
    assert room["row"]["players"] == 1 and "ann" in room["table"]["players"]
    assert m.query({"op": "room", "room": "r2"})["error"] == "no_such_room"
    assert m.query({"op": "seat_of", "client_id": "c1"}) == {
        "ok": True,
        "room": "r1",
        "name": "ann",
    }
    assert m.query({"op": "seat_of", "client_id": "c2"}) == {"ok": True, "room": None, "name": None}
    assert m.query({"op": "drop"})["error"] == "bad_query"


def test_a_malformed_command_is_answered_with_an_error_not_an_exception() -> None:
    m = RoomsMachine()
    for command in (None, [], {"type": 3}, {"type": "join"}, {"type": "create", "name": 5}):
        result, events = m.apply(command, Entry(1, 0, "c1"))  # type: ignore[arg-type]
        assert result["ok"] is False and events == []


def test_the_leader_commits_the_secret_once_before_any_seat_is_handed_out() -> None:
    draws = iter(["a" * 32, "b" * 32])
    leader = RoomsMachine(entropy=lambda: next(draws))
    follower = RoomsMachine()  # replicas never draw: they apply what the leader proposed
    before = leader.snapshot()
    result, _ = leader.apply({"type": "quick_play", "name": "ann"}, Entry(1, 10, "c1"))
    assert result["error"] == "rooms_starting" and leader.snapshot() == before

    proposal = leader.due_command(20)
    assert proposal == {"type": "set_secret", "secret": "a" * 32}
    for machine in (leader, follower):
        assert machine.apply(proposal, Entry(2, 20, "@rooms/n1/1"))[0] == {
            "ok": True,
            "secret_set": True,
        }
    assert leader.due_command(20) is None
    late = {"type": "set_secret", "secret": "c" * 32}  # a second leader's proposal, committed too
    assert leader.apply(late, Entry(3, 30, "@rooms/n2/2"))[0]["secret_set"] is False
    follower.apply(late, Entry(3, 30, "@rooms/n2/2"))
    assert leader.state["secret"] == "a" * 32
    for machine in (leader, follower):
        assert machine.apply({"type": "quick_play", "name": "ann"}, Entry(4, 40, "c1"))[0]["ok"]
    assert msgpack.packb(leader.snapshot()) == msgpack.packb(follower.snapshot())


def test_a_client_cannot_set_the_secret() -> None:
    machine = RoomsMachine()
    result, _ = machine.apply({"type": "set_secret", "secret": "mine"}, Entry(1, 10, "c1"))
    assert result["error"] == "bad_command" and machine.state["secret"] is None


def test_for_publication_keeps_results_without_secrets_and_never_a_command() -> None:
    hit = {"ok": True, "room": "r1", "target": 0, "round": 1, "score": 1}
    assert RoomsMachine.for_publication({"type": "hit", "room": "r1"}, hit) == (None, hit)
    joined = {"ok": True, "room": "r2", "code": "ABCDEF", "name": "ann", "token": "t" * 32}
    assert RoomsMachine.for_publication({"type": "create"}, joined) == (
        None,
        {"ok": True, "room": "r2", "name": "ann"},
    )
    assert joined["token"] == "t" * 32  # the submitter's own reply is left untouched
