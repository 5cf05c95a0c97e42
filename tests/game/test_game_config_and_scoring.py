"""GameConfig validation and storage; winners and the leaderboard."""

from __future__ import annotations

import msgpack
import pytest

from game.config import GameConfig
from game.rules import new_state
from game.scoring import record_game, winners_of


def test_the_config_defaults_are_the_documented_ones() -> None:
    assert GameConfig().to_dict() == {
        "rounds": 3,
        "targets_per_round": 5,
        "round_ms": 20_000,
        "countdown_ms": 3_000,
        "intermission_ms": 4_000,
        "min_players": 2,
        "max_players": 8,
        "arena_width": 1000,
        "arena_height": 700,
        "target_radius": 40,
        "idle_ms": 15_000,
    }


def test_the_config_round_trips_through_msgpack() -> None:
    config = GameConfig(rounds=5, round_ms=1234)
    assert GameConfig.from_dict(msgpack.unpackb(msgpack.packb(config.to_dict()))) == config


@pytest.mark.parametrize(
    "fields",
    [
        {"rounds": 0},
        {"round_ms": -1},
        {"targets_per_round": 2.5},
        {"max_players": True},
        {"min_players": 3, "max_players": 2},
        {"target_radius": 350},
        {"idle_ms": 0},
    ],
)
def test_an_impossible_config_is_refused_when_built(fields: dict) -> None:
    with pytest.raises(ValueError, match="GameConfig"):
        GameConfig(**fields)


def test_unknown_config_keys_are_an_error_not_silently_dropped() -> None:
    with pytest.raises(ValueError, match="speed"):
        GameConfig.from_dict({"speed": 3})


@pytest.mark.parametrize("seed", [-(2**63) - 1, 2**64, 1.5, "7", True])
def test_new_state_refuses_a_seed_msgpack_cannot_carry(seed: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        new_state(seed=seed)  # type: ignore[arg-type]


def test_new_state_exposes_the_documented_top_level_keys() -> None:
    state = new_state(GameConfig(), seed=9)
    assert set(state) == {
        "config",
        "seed",
        "now_ms",
        "game_state",
        "players",
        "current_round",
        "scores",
        "leaderboard",
    }
    assert state["seed"] == 9
    assert state["game_state"]["phase"] == "lobby"
    assert msgpack.unpackb(msgpack.packb(state)) == state


def test_the_winners_are_every_player_with_the_top_score() -> None:
    assert winners_of({"cy": 4, "ann": 4, "bob": 1}) == ["ann", "cy"]


def test_a_game_in_which_nobody_scored_has_no_winner() -> None:
    assert winners_of({"ann": 0, "bob": 0}) == []
    assert winners_of({}) == []


def test_the_leaderboard_accumulates_points_games_and_wins_across_games_by_name() -> None:
    board: dict = {}
    record_game(board, {"ann": 3, "bob": 1}, ["ann"])
    record_game(board, {"Ann": 2, "cy": 2}, ["Ann", "cy"])
    assert board == {
        "ann": {"name": "Ann", "points": 5, "games": 2, "wins": 2},
        "bob": {"name": "bob", "points": 1, "games": 1, "wins": 0},
        "cy": {"name": "cy", "points": 2, "games": 1, "wins": 1},
    }
