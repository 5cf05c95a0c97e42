"""Time-driven transitions, judged only by the leader's timestamps in the log."""

from __future__ import annotations

import copy

from game.local import LocalTable

COUNTDOWN_MS, ROUND_MS, INTERMISSION_MS = 3_000, 20_000, 4_000


def test_a_tick_with_a_timestamp_before_the_countdown_deadline_does_nothing(
    countdown: LocalTable,
) -> None:
    deadline = countdown.state["game_state"]["phase_deadline_ms"]
    result = countdown.submit("leader", {"type": "tick"}, at_ms=deadline - 1)
    assert result == {"ok": True}
    assert countdown.events == []
    assert countdown.state["game_state"]["phase"] == "countdown"


def test_a_tick_at_the_countdown_deadline_starts_round_one(countdown: LocalTable) -> None:
    deadline = countdown.state["game_state"]["phase_deadline_ms"]
    countdown.submit("leader", {"type": "tick"}, at_ms=deadline)
    current = countdown.state["current_round"]
    assert countdown.state["game_state"]["phase"] == "round"
    assert current["number"] == 1
    assert current["deadline_ms"] == deadline + ROUND_MS
    assert countdown.state["game_state"]["phase_deadline_ms"] == deadline + ROUND_MS
    assert countdown.events == [
        {"type": "phase", "phase": "round", "round": 1, "deadline_ms": deadline + ROUND_MS}
    ]


def test_a_late_tick_starts_the_round_from_its_own_timestamp_so_no_round_is_skipped(
    countdown: LocalTable,
) -> None:
    # The cluster was down for a minute: the round still gets its full length.
    deadline = countdown.state["game_state"]["phase_deadline_ms"]
    countdown.submit("leader", {"type": "tick"}, at_ms=deadline + 60_000)
    assert countdown.state["current_round"]["number"] == 1
    assert countdown.state["current_round"]["deadline_ms"] == deadline + 60_000 + ROUND_MS


def test_each_round_spawns_targets_per_round_untaken_targets_inside_the_arena(
    in_round: LocalTable,
) -> None:
    targets = in_round.state["current_round"]["targets"]
    assert [t["id"] for t in targets] == [0, 1, 2, 3, 4]
    for t in targets:
        assert t["taken_by"] is None and t["r"] == 40
        assert 40 <= t["x"] <= 960 and 40 <= t["y"] <= 660


def test_a_tick_after_the_round_deadline_moves_to_the_intermission(in_round: LocalTable) -> None:
    deadline = in_round.state["current_round"]["deadline_ms"]
    in_round.submit("leader", {"type": "tick"}, at_ms=deadline - 1)
    assert in_round.state["game_state"]["phase"] == "round"
    in_round.submit("leader", {"type": "tick"}, at_ms=deadline + 5)
    gs = in_round.state["game_state"]
    assert (gs["phase"], gs["phase_deadline_ms"]) == (
        "intermission",
        deadline + 5 + INTERMISSION_MS,
    )
    assert in_round.state["current_round"]["ended_ms"] == deadline + 5
    assert in_round.events[0] == {"type": "round_ended", "round": 1, "reason": "time"}


def test_when_the_intermission_is_over_the_next_round_starts(in_round: LocalTable) -> None:
    first_targets = copy.deepcopy(in_round.state["current_round"]["targets"])
    in_round.wait(ROUND_MS)
    in_round.tick()
    in_round.wait(INTERMISSION_MS)
    in_round.tick()
    assert in_round.state["game_state"]["phase"] == "round"
    assert in_round.state["current_round"]["number"] == 2
    assert in_round.state["current_round"]["targets"] != first_targets


def test_after_the_last_round_deadline_the_game_is_over(game_over: LocalTable) -> None:
    gs = game_over.state["game_state"]
    assert (gs["phase"], gs["phase_deadline_ms"], gs["winners"]) == ("game_over", None, ["ann"])
    kinds = [e["type"] for e in game_over.events]
    assert kinds == ["round_ended", "game_over", "phase"]
    assert game_over.events[1] == {
        "type": "game_over",
        "game": 1,
        "reason": "rounds_done",
        "winners": ["ann"],
        "scores": {"ann": 1, "bob": 0},
    }


def test_time_never_goes_backward_when_a_timestamp_is_earlier_than_one_already_seen(
    countdown: LocalTable,
) -> None:
    deadline = countdown.state["game_state"]["phase_deadline_ms"]
    countdown.submit("leader", {"type": "tick"}, at_ms=deadline + 10)
    assert countdown.state["now_ms"] == deadline + 10
    # A new leader whose clock lags: its timestamp does not rewind the game.
    countdown.submit("leader", {"type": "tick"}, at_ms=deadline - 2_000)
    assert countdown.state["now_ms"] == deadline + 10
    assert countdown.state["game_state"]["phase"] == "round"


def test_every_command_first_lets_time_pass_to_its_own_timestamp(countdown: LocalTable) -> None:
    # A join committed after the countdown deadline sees round 1 already running.
    countdown.wait(COUNTDOWN_MS)
    result = countdown.do("c3", "join", name="cy")
    assert result["spectator"] is True
    assert [e["type"] for e in countdown.events] == ["phase", "player_joined"]
    assert countdown.state["game_state"]["phase"] == "round"


def test_a_hit_that_commits_after_the_round_deadline_is_rejected_as_round_over(
    in_round: LocalTable,
) -> None:
    in_round.wait(ROUND_MS)
    result = in_round.do("c1", "hit", round=1, target=0)
    assert result["error"] == "round_over"
    assert "round 1" in result["message"]


def test_a_rejected_late_hit_leaves_the_transition_to_the_next_tick(in_round: LocalTable) -> None:
    before = copy.deepcopy(in_round.state)
    in_round.wait(ROUND_MS)
    in_round.do("c1", "hit", round=1, target=0)
    assert in_round.state == before
    assert in_round.events == []
    in_round.tick()
    assert in_round.state["game_state"]["phase"] == "intermission"
    assert in_round.state["scores"] == {"ann": 0, "bob": 0}


def test_a_hit_during_the_intermission_for_the_round_just_ended_is_round_over(
    in_round: LocalTable,
) -> None:
    in_round.wait(ROUND_MS)
    in_round.tick()
    assert in_round.do("c2", "hit", round=1, target=3)["error"] == "round_over"
