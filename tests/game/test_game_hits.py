"""hit: the first committed hit on a target wins the point."""

from __future__ import annotations

import pytest

from game.local import LocalTable


def test_a_hit_marks_the_target_taken_and_scores_one_point(in_round: LocalTable) -> None:
    result = in_round.do("c2", "hit", round=1, target=3)
    assert result == {"ok": True, "target": 3, "round": 1, "score": 1}
    assert in_round.state["current_round"]["targets"][3]["taken_by"] == "bob"
    assert in_round.state["scores"] == {"ann": 0, "bob": 1}
    assert in_round.events == [
        {"type": "target_hit", "target": 3, "player": "bob", "round": 1, "score": 1}
    ]


def test_two_hits_on_one_target_committed_back_to_back_score_only_the_first(
    in_round: LocalTable,
) -> None:
    # Both players clicked within the same frame; Raft ordered ann's entry first.
    first = in_round.submit("c1", {"type": "hit", "round": 1, "target": 2})
    second = in_round.submit("c2", {"type": "hit", "round": 1, "target": 2})
    assert first["ok"] is True
    assert second == {
        "ok": False,
        "error": "target_taken",
        "message": "target 2 was already taken by ann",
    }
    assert in_round.state["scores"] == {"ann": 1, "bob": 0}
    assert in_round.events == []


def test_a_player_cannot_score_the_same_target_twice(in_round: LocalTable) -> None:
    in_round.do("c1", "hit", round=1, target=2)
    assert in_round.do("c1", "hit", round=1, target=2)["error"] == "target_taken"
    assert in_round.state["scores"]["ann"] == 1


def test_a_hit_from_the_previous_round_is_rejected_as_stale(in_round: LocalTable) -> None:
    in_round.wait(20_000)
    in_round.tick()
    in_round.wait(4_000)
    in_round.tick()
    result = in_round.do("c1", "hit", round=1, target=0)
    assert result["error"] == "stale_round"
    assert in_round.state["current_round"]["targets"][0]["taken_by"] is None
    assert in_round.state["scores"]["ann"] == 0


def test_a_hit_for_a_round_that_has_not_started_is_rejected(in_round: LocalTable) -> None:
    assert in_round.do("c1", "hit", round=2, target=0)["error"] == "future_round"


@pytest.mark.parametrize("target", [-1, 5, 99])
def test_a_hit_on_a_target_that_does_not_exist_is_rejected(
    in_round: LocalTable, target: int
) -> None:
    assert in_round.do("c1", "hit", round=1, target=target)["error"] == "no_such_target"


def test_a_hit_is_rejected_in_the_lobby_and_the_countdown(lobby: LocalTable) -> None:
    assert lobby.do("c1", "hit", round=0, target=0)["error"] == "wrong_phase"
    lobby.do("c1", "start")
    assert lobby.do("c1", "hit", round=1, target=0)["error"] == "wrong_phase"


def test_spectators_cannot_hit(in_round: LocalTable) -> None:
    in_round.do("c3", "join", name="cy")
    result = in_round.do("c3", "hit", round=1, target=0)
    assert result["error"] == "spectator"
    assert in_round.state["current_round"]["targets"][0]["taken_by"] is None


def test_a_hit_needs_a_joined_session(in_round: LocalTable) -> None:
    assert in_round.do("stranger", "hit", round=1, target=0)["error"] == "not_joined"


@pytest.mark.parametrize(
    "fields",
    [
        {"round": "1", "target": 0},
        {"round": 1},
        {"target": 0},
        {"round": True, "target": 0},
        {"round": 1, "target": 1.0},
    ],
)
def test_a_hit_with_missing_or_mistyped_fields_is_rejected(
    in_round: LocalTable, fields: dict
) -> None:
    assert in_round.submit("c1", {"type": "hit", **fields})["error"] == "bad_command"


def test_a_round_ends_early_when_all_its_targets_are_taken(in_round: LocalTable) -> None:
    for target in range(5):
        in_round.do("c1" if target % 2 else "c2", "hit", round=1, target=target)
    assert in_round.state["game_state"]["phase"] == "intermission"
    assert in_round.events[1:] == [
        {"type": "round_ended", "round": 1, "reason": "cleared"},
        {
            "type": "phase",
            "phase": "intermission",
            "round": 1,
            "deadline_ms": in_round.clock_ms + 4_000,
        },
    ]
    assert in_round.state["scores"] == {"ann": 2, "bob": 3}


def test_clearing_the_last_round_ends_the_game_at_once(in_round: LocalTable) -> None:
    for round_number in (1, 2, 3):
        for target in range(5):
            assert in_round.do("c1", "hit", round=round_number, target=target)["ok"]
        if round_number < 3:
            in_round.wait(4_000)
            in_round.tick()
    assert in_round.state["game_state"]["phase"] == "game_over"
    assert in_round.state["game_state"]["winners"] == ["ann"]
    assert [e["type"] for e in in_round.events] == [
        "target_hit",
        "round_ended",
        "game_over",
        "phase",
    ]
