"""join and leave: names, sessions, capacity, spectators, host succession."""

from __future__ import annotations

import pytest

from game.config import GameConfig
from game.local import LocalTable


def test_join_in_the_lobby_adds_a_player_bound_to_the_session(table: LocalTable) -> None:
    result = table.do("c1", "join", name="ann")
    assert result == {"ok": True, "name": "ann", "spectator": False, "host": True}
    assert table.state["players"]["ann"] == {
        "client_id": "c1",
        "ready": False,
        "spectator": False,
        "joined_index": 0,
        "last_seen_ms": table.clock_ms,
        "bot": False,
    }
    assert {"type": "player_joined", "name": "ann", "spectator": False} in table.events


def test_the_first_member_to_join_becomes_host(table: LocalTable) -> None:
    table.do("c1", "join", name="ann")
    assert table.events[-1] == {"type": "host_changed", "host": "ann"}
    result = table.do("c2", "join", name="bob")
    assert result["host"] is False
    assert table.state["game_state"]["host"] == "ann"


def test_join_strips_surrounding_spaces_from_the_name(table: LocalTable) -> None:
    assert table.do("c1", "join", name="  ann lee  ")["name"] == "ann lee"
    assert "ann lee" in table.state["players"]


@pytest.mark.parametrize(
    "name",
    ["Abc_def-123 xyz", "a", "0123456789abcdef", "  sixteen-chars-x  "],
)
def test_join_accepts_1_to_16_letters_digits_spaces_underscores_and_dashes(
    table: LocalTable, name: str
) -> None:
    assert table.do("c1", "join", name=name)["ok"]


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 17, "ann!", "änn", "a\tb", "a.b", "<script>", 5, None, ["ann"]],
)
def test_join_rejects_names_that_are_empty_too_long_or_use_other_characters(
    table: LocalTable, name: object
) -> None:
    result = table.submit("c1", {"type": "join", "name": name})
    assert result["ok"] is False
    assert result["error"] == "invalid_name"
    assert table.state["players"] == {}


def test_join_rejects_a_name_already_taken_ignoring_case(table: LocalTable) -> None:
    table.do("c1", "join", name="Ann")
    result = table.do("c2", "join", name="aNN")
    assert result["error"] == "name_taken"
    assert "'Ann'" in result["message"]


def test_joining_again_with_the_same_session_and_name_is_idempotent(table: LocalTable) -> None:
    first = table.do("c1", "join", name="ann")
    again = table.do("c1", "join", name="ann")
    assert again == first | {"ok": True}
    assert table.events == []
    assert list(table.state["players"]) == ["ann"]
    assert table.state["game_state"]["joins"] == 1


def test_a_session_holds_at_most_one_player(table: LocalTable) -> None:
    table.do("c1", "join", name="ann")
    result = table.do("c1", "join", name="bob")
    assert result["error"] == "already_joined"
    assert "'ann'" in result["message"]
    assert list(table.state["players"]) == ["ann"]


def test_join_rejects_when_max_players_is_reached() -> None:
    table = LocalTable(GameConfig(max_players=2))
    table.do("c1", "join", name="ann")
    table.do("c2", "join", name="bob")
    result = table.do("c3", "join", name="cy")
    assert result["error"] == "game_full"
    assert "cy" not in table.state["players"]


def test_spectators_count_towards_max_players(countdown: LocalTable) -> None:
    # Spectators become players at the rematch, which must not exceed the maximum.
    for i in range(6):
        assert countdown.do(f"s{i}", "join", name=f"spec{i}")["spectator"] is True
    assert countdown.do("s9", "join", name="late")["error"] == "game_full"


def test_joining_during_a_game_makes_a_spectator_until_the_next_game(in_round: LocalTable) -> None:
    result = in_round.do("c3", "join", name="cy")
    assert result == {"ok": True, "name": "cy", "spectator": True, "host": False}
    assert in_round.state["players"]["cy"]["spectator"] is True
    assert "cy" not in in_round.state["scores"]


def test_joining_during_game_over_also_waits_for_the_rematch(game_over: LocalTable) -> None:
    assert game_over.do("c3", "join", name="cy")["spectator"] is True


def test_leave_removes_the_callers_player(lobby: LocalTable) -> None:
    result = lobby.do("c2", "leave")
    assert result == {"ok": True, "name": "bob"}
    assert "bob" not in lobby.state["players"]
    assert lobby.events == [{"type": "player_left", "name": "bob"}]


def test_leave_without_a_player_is_rejected_as_not_joined(lobby: LocalTable) -> None:
    result = lobby.do("stranger", "leave")
    assert result["error"] == "not_joined"
    assert "join" in result["message"]


def test_a_session_can_join_again_under_another_name_after_leaving(lobby: LocalTable) -> None:
    lobby.do("c2", "leave")
    assert lobby.do("c2", "join", name="bobby")["ok"]


def test_when_the_host_leaves_the_host_passes_to_the_next_member_by_join_order(
    lobby: LocalTable,
) -> None:
    lobby.do("c3", "join", name="cy")
    lobby.do("c1", "leave")
    assert lobby.state["game_state"]["host"] == "bob"
    assert {"type": "host_changed", "host": "bob"} in lobby.events
    lobby.do("c2", "leave")
    assert lobby.state["game_state"]["host"] == "cy"


def test_when_the_last_member_leaves_the_table_resets_to_an_empty_lobby(
    in_round: LocalTable,
) -> None:
    in_round.do("c3", "join", name="cy")  # a spectator
    in_round.do("c1", "leave")  # bob alone: the game ends
    in_round.do("c2", "leave")
    in_round.do("c3", "leave")
    gs = in_round.state["game_state"]
    assert (gs["phase"], gs["host"], gs["phase_deadline_ms"]) == ("lobby", None, None)
    assert in_round.state["players"] == {}
    assert in_round.do("c4", "join", name="dee") == {
        "ok": True,
        "name": "dee",
        "spectator": False,
        "host": True,
    }


def test_a_player_who_leaves_a_running_game_forfeits_their_score() -> None:
    table = LocalTable(GameConfig(min_players=2))
    for client, name in (("c1", "ann"), ("c2", "bob"), ("c3", "cy")):
        table.do(client, "join", name=name)
        table.do(client, "ready", ready=True)
    table.do("c1", "start")
    table.wait(3_000)
    table.tick()
    table.do("c3", "hit", round=1, target=0)
    table.do("c3", "leave")
    assert table.state["scores"] == {"ann": 0, "bob": 0}
    assert table.state["game_state"]["phase"] == "round"  # two players still play


def test_the_game_ends_when_fewer_than_min_players_active_players_remain(
    in_round: LocalTable,
) -> None:
    in_round.do("c1", "hit", round=1, target=0)
    in_round.do("c2", "leave")
    gs = in_round.state["game_state"]
    assert gs["phase"] == "game_over"
    assert gs["winners"] == ["ann"]
    game_over = next(e for e in in_round.events if e["type"] == "game_over")
    assert game_over["reason"] == "players_left"
    assert in_round.state["leaderboard"]["ann"] == {
        "name": "ann",
        "points": 1,
        "games": 1,
        "wins": 1,
    }
    assert "bob" not in in_round.state["leaderboard"]


def test_a_game_abandoned_during_the_countdown_also_ends(countdown: LocalTable) -> None:
    countdown.do("c2", "leave")
    assert countdown.state["game_state"]["phase"] == "game_over"
    assert countdown.state["game_state"]["winners"] == []


def test_a_spectator_leaving_does_not_end_the_game(in_round: LocalTable) -> None:
    in_round.do("c3", "join", name="cy")
    in_round.do("c3", "leave")
    assert in_round.state["game_state"]["phase"] == "round"


def test_a_person_joining_a_table_hosted_by_a_bot_becomes_host(table: LocalTable) -> None:
    """Issue 10 item 3: the people at a table decide when a game starts."""
    assert table.do("b1", "join", name="bot1", bot=True)["host"] is True
    assert table.do("b2", "join", name="bot2", bot=True)["host"] is False
    assert table.state["players"]["bot1"]["bot"] is True
    assert table.do("c1", "join", name="ann")["host"] is True
    assert table.events[-1] == {"type": "host_changed", "host": "ann"}
    assert table.do("c2", "join", name="bob")["host"] is False  # a person keeps it
    assert table.do("b3", "join", name="bot3", bot=True)["host"] is False


def test_the_host_passes_to_the_next_person_before_any_bot(table: LocalTable) -> None:
    table.do("c1", "join", name="ann")
    table.do("b1", "join", name="bot1", bot=True)
    table.do("c2", "join", name="bob")
    table.do("c1", "leave")
    assert table.state["game_state"]["host"] == "bob"  # bot1 joined earlier, bob is a person
    table.do("c2", "leave")
    assert table.state["game_state"]["host"] == "bot1"  # only bots left


def test_bot_must_be_a_boolean(table: LocalTable) -> None:
    result = table.do("b1", "join", name="bot1", bot="yes")
    assert result["ok"] is False and result["error"] == "bad_command"
    assert table.state["players"] == {}
