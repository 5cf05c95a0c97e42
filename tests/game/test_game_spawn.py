"""Target positions derive from the seed, the game and the round, and nothing else."""

from __future__ import annotations

import math

from game.config import GameConfig
from game.spawn import spawn_targets

CONFIG = GameConfig()


def test_the_same_seed_game_and_round_always_give_the_same_targets() -> None:
    assert spawn_targets(7, 1, 2, CONFIG) == spawn_targets(7, 1, 2, CONFIG)


def test_the_layout_is_pinned_so_a_python_upgrade_cannot_silently_change_it() -> None:
    # Nodes on different Python builds must agree; the hash derivation guarantees it.
    pinned = [(253, 606), (709, 595), (261, 91), (162, 340), (576, 243)]
    assert [(t["x"], t["y"]) for t in spawn_targets(0, 1, 1, CONFIG)] == pinned


def test_rounds_games_and_seeds_each_change_the_layout() -> None:
    base = spawn_targets(7, 1, 1, CONFIG)
    assert spawn_targets(7, 1, 2, CONFIG) != base
    assert spawn_targets(7, 2, 1, CONFIG) != base
    assert spawn_targets(8, 1, 1, CONFIG) != base


def test_targets_lie_wholly_inside_the_arena_and_do_not_overlap() -> None:
    for seed in range(50):
        targets = spawn_targets(seed, 1, 1, CONFIG)
        assert [t["id"] for t in targets] == list(range(CONFIG.targets_per_round))
        for t in targets:
            assert t["r"] <= t["x"] <= CONFIG.arena_width - t["r"]
            assert t["r"] <= t["y"] <= CONFIG.arena_height - t["r"]
            assert t["taken_by"] is None
        for a in targets:
            for b in targets:
                if a["id"] < b["id"]:
                    assert math.dist((a["x"], a["y"]), (b["x"], b["y"])) >= 2 * CONFIG.target_radius


def test_a_crowded_arena_still_gets_every_target() -> None:
    crowded = GameConfig(targets_per_round=50, arena_width=200, arena_height=200, target_radius=40)
    assert len(spawn_targets(1, 1, 1, crowded)) == 50
