"""game.view: read-only helpers for renderers and bots."""

from __future__ import annotations

import copy

from game import view
from game.local import LocalTable


def test_phase_names_the_current_phase(in_round: LocalTable) -> None:
    assert view.phase(in_round.state) == "round"


def test_open_targets_lists_untaken_targets_only_while_a_round_runs(in_round: LocalTable) -> None:
    in_round.do("c1", "hit", round=1, target=1)
    assert [t["id"] for t in view.open_targets(in_round.state)] == [0, 2, 3, 4]
    in_round.wait(20_000)
    in_round.tick()
    assert view.open_targets(in_round.state) == []


def test_time_left_counts_down_to_the_phase_deadline_and_stops_at_zero(
    countdown: LocalTable,
) -> None:
    deadline = countdown.state["game_state"]["phase_deadline_ms"]
    assert view.time_left_ms(countdown.state, deadline - 1_200) == 1_200
    assert view.time_left_ms(countdown.state, deadline + 50) == 0


def test_time_left_is_none_in_untimed_phases(lobby: LocalTable) -> None:
    assert view.time_left_ms(lobby.state, 0) is None


def test_player_of_maps_a_session_to_its_name(lobby: LocalTable) -> None:
    assert view.player_of(lobby.state, "c2") == "bob"
    assert view.player_of(lobby.state, "nobody") is None


def test_needs_ping_once_a_third_of_idle_ms_has_passed_since_the_last_accepted_command(
    lobby: LocalTable,
) -> None:
    seen = lobby.state["players"]["ann"]["last_seen_ms"]
    assert view.needs_ping(lobby.state, "c1", seen + 5_000) is False  # idle_ms 15_000 / 3
    assert view.needs_ping(lobby.state, "c1", seen + 5_001) is True
    lobby.wait(5_001)
    lobby.do("c1", "ping")
    assert view.needs_ping(lobby.state, "c1", lobby.clock_ms) is False


def test_a_session_without_a_member_never_needs_to_ping(lobby: LocalTable) -> None:
    assert view.needs_ping(lobby.state, "nobody", 10**12) is False


def test_standings_sort_by_score_then_name(in_round: LocalTable) -> None:
    in_round.do("c2", "hit", round=1, target=0)
    assert view.standings(in_round.state) == [("bob", 1), ("ann", 0)]


def test_leaderboard_rows_sort_by_wins_then_points(game_over: LocalTable) -> None:
    assert [row["name"] for row in view.leaderboard(game_over.state)] == ["ann", "bob"]


def test_the_view_helpers_never_change_the_state(in_round: LocalTable) -> None:
    before = copy.deepcopy(in_round.state)
    view.phase(in_round.state)
    view.open_targets(in_round.state)
    view.time_left_ms(in_round.state, 0)
    view.player_of(in_round.state, "c1")
    view.needs_ping(in_round.state, "c1", 10**12)
    view.standings(in_round.state)
    view.leaderboard(in_round.state)
    assert in_round.state == before
