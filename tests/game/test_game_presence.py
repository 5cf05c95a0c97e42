"""Presence: last_seen_ms, ping and drop_idle (game.presence).

A member silent for ``idle_ms`` of leader time is removed by the next
``drop_idle`` exactly as if they had left; a dead host no longer blocks the table.
"""

from __future__ import annotations

import copy

from game.local import LocalTable

IDLE_MS = 15_000  # GameConfig's default, which the fixtures use


def test_a_player_silent_for_idle_ms_is_dropped_by_drop_idle_and_a_player_who_pinged_is_not(
    lobby: LocalTable,
) -> None:
    lobby.wait(IDLE_MS - 1_000)
    assert lobby.do("c2", "ping") == {"ok": True}
    lobby.wait(1_000)  # ann has now been silent for exactly idle_ms
    assert lobby.tick()["ok"]  # a tick from the leader's session is no sign of ann
    assert lobby.do("leader", "drop_idle") == {"ok": True, "dropped": ["ann"]}
    assert list(lobby.state["players"]) == ["bob"]
    assert lobby.events[0] == {"type": "player_left", "name": "ann", "reason": "idle"}


def test_a_player_silent_for_less_than_idle_ms_is_kept(lobby: LocalTable) -> None:
    lobby.wait(IDLE_MS - 1)
    before = copy.deepcopy(lobby.state)
    assert lobby.do("leader", "drop_idle") == {"ok": True, "dropped": []}
    assert lobby.events == []
    assert lobby.state == before | {"now_ms": lobby.clock_ms}


def test_drop_idle_with_nobody_idle_is_a_timer_tick_that_changes_nothing_but_the_time(
    countdown: LocalTable,
) -> None:
    deadline = countdown.state["game_state"]["phase_deadline_ms"]
    countdown.submit("leader", {"type": "drop_idle"}, at_ms=deadline)
    assert countdown.history[-1].result == {"ok": True, "dropped": []}
    assert [e["phase"] for e in countdown.events] == ["round"]  # the due transition still ran
    assert set(countdown.state["players"]) == {"ann", "bob"}


def test_the_sender_of_drop_idle_is_not_dropped_since_its_command_shows_it_is_alive(
    lobby: LocalTable,
) -> None:
    lobby.wait(IDLE_MS)
    assert lobby.do("c2", "drop_idle")["dropped"] == ["ann"]
    assert lobby.state["players"]["bob"]["last_seen_ms"] == lobby.clock_ms


def test_join_sets_last_seen_to_the_replicated_time_of_the_join(table: LocalTable) -> None:
    table.submit("c1", {"type": "join", "name": "ann"}, at_ms=table.clock_ms + 7)
    assert table.state["players"]["ann"]["last_seen_ms"] == table.clock_ms + 7


def test_every_accepted_command_from_a_members_session_refreshes_its_presence(
    lobby: LocalTable,
) -> None:
    lobby.wait(4_000)
    assert lobby.do("c2", "ready", ready=False)["ok"]
    assert lobby.state["players"]["bob"]["last_seen_ms"] == lobby.clock_ms
    assert lobby.state["players"]["ann"]["last_seen_ms"] == lobby.clock_ms - 4_000


def test_ping_is_accepted_for_any_member_including_a_spectator_and_emits_nothing(
    in_round: LocalTable,
) -> None:
    in_round.do("c3", "join", name="cy")  # a spectator
    in_round.wait(1_000)
    before = copy.deepcopy(in_round.state)
    assert in_round.do("c3", "ping") == {"ok": True}
    assert in_round.events == []
    before["now_ms"] = before["players"]["cy"]["last_seen_ms"] = in_round.clock_ms
    assert in_round.state == before


def test_ping_from_a_session_without_a_member_is_rejected_as_not_joined(
    lobby: LocalTable,
) -> None:
    before = copy.deepcopy(lobby.state)
    result = lobby.do("stranger", "ping")
    assert result["error"] == "not_joined"
    assert lobby.state == before


def test_a_rejected_command_does_not_refresh_presence(lobby: LocalTable) -> None:
    seen = lobby.state["players"]["bob"]["last_seen_ms"]
    lobby.wait(10_000)
    lobby.do("c1", "ping")
    assert lobby.do("c2", "start")["error"] == "not_host"
    assert lobby.do("c2", "hit", round=1, target=0)["error"] == "wrong_phase"
    assert lobby.state["players"]["bob"]["last_seen_ms"] == seen
    lobby.wait(IDLE_MS - 10_000)
    assert lobby.do("leader", "drop_idle")["dropped"] == ["bob"]


def test_the_idle_host_is_replaced_by_the_next_player_by_join_order(lobby: LocalTable) -> None:
    lobby.do("c3", "join", name="cy")
    lobby.wait(IDLE_MS)
    lobby.do("c3", "ready", ready=True)
    lobby.do("c2", "ping")
    lobby.do("leader", "drop_idle")
    assert lobby.events == [
        {"type": "player_left", "name": "ann", "reason": "idle"},
        {"type": "host_changed", "host": "bob"},
    ]
    assert lobby.do("c2", "start")["ok"]  # the table is no longer stuck behind a dead host


def test_members_idle_together_leave_together_and_the_host_passes_once(
    lobby: LocalTable,
) -> None:
    lobby.do("c3", "join", name="cy")
    lobby.do("c4", "join", name="dee")
    lobby.wait(IDLE_MS)
    lobby.do("c4", "ping")
    lobby.do("c3", "ping")
    assert lobby.do("leader", "drop_idle")["dropped"] == ["ann", "bob"]
    assert lobby.events == [
        {"type": "player_left", "name": "ann", "reason": "idle"},
        {"type": "player_left", "name": "bob", "reason": "idle"},
        {"type": "host_changed", "host": "cy"},
    ]


def test_a_running_game_that_loses_players_to_idleness_ends(in_round: LocalTable) -> None:
    in_round.do("c1", "hit", round=1, target=0)
    in_round.wait(IDLE_MS)  # shorter than the round: the game is still running
    in_round.do("c1", "ping")
    assert in_round.state["game_state"]["phase"] == "round"
    assert in_round.do("leader", "drop_idle")["dropped"] == ["bob"]
    assert in_round.state["game_state"]["phase"] == "game_over"
    game_over = next(e for e in in_round.events if e["type"] == "game_over")
    assert (game_over["reason"], game_over["winners"]) == ("players_left", ["ann"])
    assert "bob" not in in_round.state["leaderboard"]  # an idle player forfeits like a leaver


def test_idle_players_who_go_together_all_forfeit_and_a_live_spectator_can_rematch(
    in_round: LocalTable,
) -> None:
    in_round.do("c1", "hit", round=1, target=0)  # ann scores, then both players vanish
    in_round.do("c3", "join", name="cy")  # a spectator, still around
    in_round.wait(IDLE_MS)
    in_round.do("c3", "ping")
    assert in_round.do("leader", "drop_idle")["dropped"] == ["ann", "bob"]
    gs = in_round.state["game_state"]
    assert (gs["phase"], gs["host"], gs["winners"]) == ("game_over", "cy", [])
    assert in_round.state["leaderboard"] == {}  # nobody is scored by a game they abandoned
    assert in_round.do("c3", "rematch")["ok"]
    assert in_round.state["game_state"]["phase"] == "lobby"


def test_idle_spectators_are_dropped_too(in_round: LocalTable) -> None:
    in_round.do("c3", "join", name="cy")
    in_round.wait(IDLE_MS)
    in_round.do("c1", "ping")
    in_round.do("c2", "ping")
    assert in_round.do("leader", "drop_idle")["dropped"] == ["cy"]
    assert in_round.state["game_state"]["phase"] == "round"


def test_when_every_member_is_idle_the_table_resets_to_an_empty_lobby(
    in_round: LocalTable,
) -> None:
    in_round.wait(IDLE_MS)
    assert in_round.do("leader", "drop_idle")["dropped"] == ["ann", "bob"]
    gs = in_round.state["game_state"]
    assert (gs["phase"], gs["host"], gs["phase_deadline_ms"]) == ("lobby", None, None)
    assert in_round.state["players"] == {}
    assert in_round.do("c9", "join", name="zed")["host"] is True
