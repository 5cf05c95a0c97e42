"""ready, start and rematch: who may do what, and in which phase."""

from __future__ import annotations

import pytest

from game.config import GameConfig
from game.local import LocalTable


def test_ready_sets_the_callers_flag_in_the_lobby(table: LocalTable) -> None:
    table.do("c1", "join", name="ann")
    assert table.do("c1", "ready", ready=True) == {"ok": True, "ready": True}
    assert table.state["players"]["ann"]["ready"] is True
    assert table.events == [{"type": "player_ready", "name": "ann", "ready": True}]
    table.do("c1", "ready", ready=False)
    assert table.state["players"]["ann"]["ready"] is False


def test_ready_to_the_value_it_already_has_is_ok_and_changes_nothing(lobby: LocalTable) -> None:
    assert lobby.do("c1", "ready", ready=True)["ok"]
    assert lobby.events == []


def test_ready_is_rejected_outside_the_lobby(countdown: LocalTable) -> None:
    result = countdown.do("c2", "ready", ready=False)
    assert result["error"] == "wrong_phase"
    assert countdown.state["players"]["bob"]["ready"] is True


@pytest.mark.parametrize("value", [None, 1, "yes"])
def test_ready_needs_a_boolean(lobby: LocalTable, value: object) -> None:
    assert lobby.submit("c1", {"type": "ready", "ready": value})["error"] == "bad_command"


def test_ready_needs_a_joined_session(lobby: LocalTable) -> None:
    assert lobby.do("stranger", "ready", ready=True)["error"] == "not_joined"


def test_start_is_for_the_host_only(lobby: LocalTable) -> None:
    result = lobby.do("c2", "start")
    assert result["error"] == "not_host"
    assert "ann" in result["message"]
    assert lobby.state["game_state"]["phase"] == "lobby"


def test_start_needs_a_joined_session(lobby: LocalTable) -> None:
    assert lobby.do("stranger", "start")["error"] == "not_joined"


def test_start_is_only_possible_in_the_lobby(countdown: LocalTable) -> None:
    assert countdown.do("c1", "start")["error"] == "wrong_phase"


def test_start_needs_at_least_min_players_players() -> None:
    table = LocalTable(GameConfig(min_players=3))
    for client, name in (("c1", "ann"), ("c2", "bob")):
        table.do(client, "join", name=name)
        table.do(client, "ready", ready=True)
    result = table.do("c1", "start")
    assert result["error"] == "not_enough_players"
    assert "3" in result["message"]


def test_start_needs_at_least_two_ready_players(table: LocalTable) -> None:
    for client, name in (("c1", "ann"), ("c2", "bob"), ("c3", "cy")):
        table.do(client, "join", name=name)
    table.do("c2", "ready", ready=True)
    assert table.do("c1", "start")["error"] == "not_enough_ready"
    table.do("c3", "ready", ready=True)  # the host need not be ready itself
    assert table.do("c1", "start")["ok"]


def test_a_solo_table_starts_with_one_ready_player() -> None:
    table = LocalTable(GameConfig(min_players=1))
    table.do("c1", "join", name="ann")
    table.do("c1", "ready", ready=True)
    assert table.do("c1", "start")["ok"]


def test_start_moves_to_the_countdown_with_a_deadline_from_the_leader_timestamp(
    lobby: LocalTable,
) -> None:
    result = lobby.submit("c1", {"type": "start"}, at_ms=5_000_000)
    assert result == {"ok": True, "game": 1, "deadline_ms": 5_003_000}
    gs = lobby.state["game_state"]
    assert (gs["phase"], gs["phase_deadline_ms"], gs["game_number"]) == (
        "countdown",
        5_003_000,
        1,
    )
    assert lobby.state["scores"] == {"ann": 0, "bob": 0}
    assert lobby.events == [
        {"type": "phase", "phase": "countdown", "round": 0, "deadline_ms": 5_003_000}
    ]


def test_rematch_is_for_the_host_only(game_over: LocalTable) -> None:
    assert game_over.do("c2", "rematch")["error"] == "not_host"
    assert game_over.state["game_state"]["phase"] == "game_over"


def test_rematch_is_only_possible_after_game_over(in_round: LocalTable) -> None:
    assert in_round.do("c1", "rematch")["error"] == "wrong_phase"


def test_rematch_returns_to_the_lobby_promotes_spectators_clears_ready_and_scores(
    game_over: LocalTable,
) -> None:
    game_over.do("c3", "join", name="cy")
    leaderboard = dict(game_over.state["leaderboard"])
    assert game_over.do("c1", "rematch") == {"ok": True}
    state = game_over.state
    assert state["game_state"]["phase"] == "lobby"
    assert state["game_state"]["winners"] == []
    assert state["scores"] == {}
    assert state["current_round"]["number"] == 0
    assert all(not p["spectator"] and not p["ready"] for p in state["players"].values())
    assert state["leaderboard"] == leaderboard
    assert {"type": "players_promoted", "names": ["cy"]} in game_over.events


def test_a_spectator_who_inherits_the_host_can_call_the_rematch(game_over: LocalTable) -> None:
    game_over.do("c3", "join", name="cy")
    game_over.do("c1", "leave")
    game_over.do("c2", "leave")
    assert game_over.state["game_state"]["host"] == "cy"
    assert game_over.do("c3", "rematch")["ok"]
    assert game_over.state["players"]["cy"]["spectator"] is False


def test_the_next_game_gets_a_new_number_and_fresh_scores(game_over: LocalTable) -> None:
    game_over.do("c1", "rematch")
    game_over.do("c1", "ready", ready=True)
    game_over.do("c2", "ready", ready=True)
    assert game_over.do("c1", "start")["game"] == 2
    assert game_over.state["scores"] == {"ann": 0, "bob": 0}


@pytest.mark.parametrize("command", [{"type": "fly"}, {"type": None}, {"name": "ann"}, {"type": 3}])
def test_an_unknown_command_type_is_rejected(table: LocalTable, command: dict) -> None:
    assert table.submit("c1", command)["error"] == "unknown_command"


@pytest.mark.parametrize("command", [None, "join", ["join"], 42])
def test_a_command_that_is_not_a_map_is_rejected(table: LocalTable, command: object) -> None:
    result = table.submit("c1", command)  # type: ignore[arg-type]
    assert result["error"] == "bad_command"
