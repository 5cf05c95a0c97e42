"""Rooms (game.rooms): create, list, join, quick play, leave, close, and today's game per room."""

from __future__ import annotations

import copy

import pytest
from rooms_helpers import RoomsLog

from game import rooms
from game.config import GameConfig

CONFIG = GameConfig(rounds=1, targets_per_round=2, countdown_ms=100, round_ms=5_000)


@pytest.fixture
def log() -> RoomsLog:
    return RoomsLog(CONFIG, grace_ms=30_000, close_ms=60_000)


def _listed(log: RoomsLog) -> list[dict]:
    return log.machine.query({"op": "rooms"})["rooms"]


def test_a_created_room_is_listed_with_its_settings_and_the_leader_timestamp(log: RoomsLog) -> None:
    result = log.do(
        "c1", "create", name="Friday", max_players=4, rounds=2, round_ms=9_000, bots=False
    )
    assert result == {"ok": True, "room": "r1", "code": None}
    assert _listed(log) == [
        {
            "room": "r1",
            "name": "Friday",
            "phase": "lobby",
            "players": 0,
            "max_players": 4,
            "bots": False,
            "private": False,
            "created_ms": log.clock_ms,
            "leader": None,
        }
    ]
    config = log.table("r1")["config"]
    assert (config["rounds"], config["round_ms"], config["max_players"]) == (2, 9_000, 4)
    assert log.types() == ["room_created"]


@pytest.mark.parametrize(
    "fields, wrong",
    [
        ({"name": ""}, "room name"),
        ({"name": "x" * 33}, "room name"),
        ({"name": "ok", "max_players": 17}, "max_players"),
        ({"name": "ok", "max_players": True}, "max_players"),
        ({"name": "ok", "rounds": 0}, "rounds"),
        ({"name": "ok", "round_ms": 999}, "round_ms"),
    ],
)
def test_a_room_setting_out_of_range_is_refused_and_creates_nothing(
    log: RoomsLog, fields: dict, wrong: str
) -> None:
    before = copy.deepcopy(log.state)
    result = log.do("c1", "create", **fields)
    assert result["error"] == "bad_room_config" and wrong in result["message"]
    assert log.state == before


def test_a_private_room_is_unlisted_and_joined_only_by_its_code(log: RoomsLog) -> None:
    code = log.do("c1", "create", name="Secret", private=True, player="ann")["code"]
    assert isinstance(code, str) and len(code) == 6
    assert _listed(log) == []
    assert log.do("c2", "join", room="r1", name="bob")["error"] == "private_room"
    assert log.do("c2", "join", code="AAAAAA", name="bob")["error"] == "no_such_room"
    joined = log.do("c2", "join", code=f" {code.lower()} ", name="bob")
    assert joined["ok"] and joined["room"] == "r1"


def test_private_codes_come_from_the_secret_so_a_client_cannot_derive_them() -> None:
    one = RoomsLog(secret="one").do("c1", "create", name="a", private=True)["code"]
    two = RoomsLog(secret="two").do("c1", "create", name="a", private=True)["code"]
    again = RoomsLog(secret="one").do("c1", "create", name="a", private=True)["code"]
    assert one == again != two


def test_quick_play_joins_the_fullest_open_lobby_oldest_first(log: RoomsLog) -> None:
    log.do("a1", "create", name="one", player="a")  # r1: 1 member
    log.do("b1", "create", name="two", player="b")  # r2: 2 members
    log.do("b2", "join", room="r2", name="bb")
    log.do("c1", "create", name="three", player="c")  # r3: 2 members, younger than r2
    log.do("c2", "join", room="r3", name="cc")
    assert log.do("q1", "quick_play", name="q")["room"] == "r2"
    assert log.do("q2", "quick_play", name="qq")["room"] == "r2"


def test_quick_play_skips_full_running_private_botless_and_name_taken_rooms(log: RoomsLog) -> None:
    log.do("f1", "create", name="full", max_players=1, player="f")  # r1 full
    log.do("p1", "create", name="priv", private=True, player="p")  # r2 private
    log.do("n1", "create", name="nobots", bots=False, player="n")  # r3 no bots
    log.do("t1", "create", name="taken", player="ann")  # r4 has an ann
    log.do("g1", "create", name="game", max_players=2, player="g1")  # r5 running
    log.do("g2", "join", room="r5", name="g2")
    for c in ("g1", "g2"):
        log.do(c, "ready", room="r5", ready=True)
    assert log.do("g1", "start", room="r5")["ok"]

    bot = log.do("b1", "quick_play", name="ann", bot=True)
    assert bot["ok"] and bot["created"] and bot["room"] == "r6"
    assert log.do("h1", "quick_play", name="ann")["room"] == "r3"  # a person may join r3


def test_a_session_holds_at_most_one_seat_in_all_rooms(log: RoomsLog) -> None:
    log.do("c1", "create", name="one", player="ann")
    log.do("c2", "create", name="two")
    before = copy.deepcopy(log.state)
    for command in (
        {"type": "join", "room": "r2", "name": "ann2"},
        {"type": "quick_play", "name": "x"},
        {"type": "create", "name": "three", "player": "y"},
    ):
        assert log.submit("c1", command)["error"] == "in_room"
        assert log.state == before
    again = log.do("c1", "join", room="r1", name="ANN")  # a duplicated join is answered again
    assert again["ok"] and again["name"] == "ann" and log.events == []


def test_commands_name_the_room_and_only_its_members_may_play_there(log: RoomsLog) -> None:
    log.do("c1", "create", name="one", player="ann")
    log.do("c2", "create", name="two", player="bob")
    assert log.do("c1", "ready", room="r2", ready=True)["error"] == "not_in_room"
    assert log.do("c1", "ready", room="r9", ready=True)["error"] == "no_such_room"
    assert log.do("c1", "ready", ready=True)["error"] == "bad_command"
    assert log.do("c1", "drop_idle", room="r1")["error"] == "unknown_command"
    assert log.do("c1", "ready", room="r1", ready=True) == {"ok": True, "room": "r1", "ready": True}


def _play_one_game(log: RoomsLog, room: str, clients: dict[str, str], hits: dict[str, int]) -> None:
    """Ready everyone, start, let the countdown pass, hit targets as given, run out the round."""
    for client in clients:
        assert log.do(client, "ready", room=room, ready=True)["ok"]
    assert log.do(next(iter(clients)), "start", room=room)["ok"]
    log.wait(CONFIG.countdown_ms)
    log.timers()
    assert log.table(room)["game_state"]["phase"] == "round"
    for client, target in hits.items():
        assert log.do(client, "hit", room=room, round=1, target=target)["ok"]
    log.wait(CONFIG.round_ms)
    log.timers()
    assert log.table(room)["game_state"]["phase"] == "game_over"


def test_each_room_plays_todays_game_and_the_leaderboard_spans_rooms(log: RoomsLog) -> None:
    log.do("c1", "create", name="one", player="ann")
    log.do("c2", "join", room="r1", name="bob")
    log.do("c3", "create", name="two", player="cy")
    log.do("c4", "join", room="r2", name="dee")
    _play_one_game(log, "r1", {"c1": "ann", "c2": "bob"}, {"c1": 0})
    _play_one_game(log, "r2", {"c3": "cy", "c4": "dee"}, {"c4": 1})
    assert log.table("r1")["scores"] == {"ann": 1, "bob": 0}
    assert log.table("r2")["scores"] == {"cy": 0, "dee": 1}
    rows = {r["name"]: r for r in log.machine.query({"op": "leaderboard"})["rows"]}
    assert {n: (r["wins"], r["points"], r["games"]) for n, r in rows.items()} == {
        "ann": (1, 1, 1),
        "bob": (0, 0, 1),
        "cy": (0, 0, 1),
        "dee": (1, 1, 1),
    }
    board = [e for e in log.events if e["type"] == "leaderboard"]
    assert [r["name"] for r in board[0]["rows"]] == ["cy", "dee"] and "room" not in board[0]


def test_an_empty_room_closes_after_the_grace_period_unless_someone_comes(log: RoomsLog) -> None:
    log.do("c1", "create", name="one", private=True, player="ann")
    code = log.state["rooms"]["r1"]["code"]
    assert log.do("c1", "leave", room="r1") == {"ok": True, "room": "r1", "name": "ann"}
    assert log.state["clients"] == {}
    log.wait(59_999)
    assert log.timers() is None
    assert log.do("c2", "join", code=code, name="bob")["ok"]  # back before the close
    log.do("c2", "leave", room="r1")
    log.wait(60_000)
    assert log.timers() == {"ok": True, "rooms": ["r1"]}
    assert log.events == [{"type": "room_closed", "room": "r1", "listed": False, "reason": "empty"}]
    assert log.state["rooms"] == {} and log.state["codes"] == {}
    assert log.do("c3", "join", code=code, name="cy")["error"] == "no_such_room"
    assert log.timers() is None


def test_timers_skip_unknown_rooms_and_refuse_a_malformed_list(log: RoomsLog) -> None:
    log.do("c1", "create", name="one", player="ann")
    before = copy.deepcopy(log.state)
    assert log.do("@t", "timers", rooms=["r7", "r1"]) == {"ok": True, "rooms": ["r1"]}
    assert log.state["rooms"] == before["rooms"]  # nothing was due in r1
    assert log.do("@t", "timers", rooms="r1")["error"] == "bad_command"


def test_topics_put_public_rows_on_the_room_list_and_everything_on_the_room() -> None:
    row = {"room": "r1"}
    assert rooms.topics({"type": "room_row", "room": "r1", "listed": True, "row": row}) == (
        "room/r1",
        "rooms",
    )
    assert rooms.topics({"type": "room_row", "room": "r2", "listed": False, "row": row}) == (
        "room/r2",
    )
    assert rooms.topics({"type": "target_hit", "room": "r3"}) == ("room/r3",)
    assert rooms.topics({"type": "leaderboard", "rows": []}) == ("rooms",)


def test_the_room_list_hears_a_row_when_players_or_phase_change_and_not_for_hits(
    log: RoomsLog,
) -> None:
    log.do("c1", "quick_play", name="ann")
    assert log.events[-1]["type"] == "room_row" and log.events[-1]["row"]["players"] == 1
    log.do("c1", "ready", room="r1", ready=True)
    assert "room_row" not in log.types()


def test_too_many_rooms_is_refused_with_advice() -> None:
    log = RoomsLog(max_rooms=1)
    log.do("c1", "create", name="one", player="ann")
    result = log.do("c2", "create", name="two")
    assert result["error"] == "too_many_rooms" and "quick play" in result["message"]
    assert log.do("c2", "quick_play", name="bob")["room"] == "r1"  # a seat was still free


def test_the_host_or_the_server_closes_a_room_and_its_members_leave_together(log: RoomsLog) -> None:
    log.do("c1", "create", name="one", private=True, player="ann")
    log.do("c2", "join", code=log.state["rooms"]["r1"]["code"], name="bob")
    log.do("c3", "create", name="two", player="cy")
    before = copy.deepcopy(log.state)
    assert log.do("c2", "close", room="r1")["error"] == "not_host"
    assert log.do("c3", "close", room="r1")["error"] == "not_host"  # a host, of another room
    assert log.state == before
    assert log.do("c1", "close", room="r1") == {"ok": True, "room": "r1", "names": ["ann", "bob"]}
    assert [(e["type"], e.get("reason")) for e in log.events if e["type"] != "host_changed"] == [
        ("player_left", "closed"),
        ("player_left", "closed"),
        ("room_closed", "closed"),
    ]
    assert set(log.state["rooms"]) == {"r2"} and log.state["codes"] == {}
    assert log.state["clients"] == {"c3": ["r2", "cy"]}
    assert log.do("@admin/n1", "close", room="r2")["names"] == ["cy"]
    assert log.state["rooms"] == {} and log.machine.due_command(10**15) is None
