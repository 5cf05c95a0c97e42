"""A whole game end to end, and determinism across nodes (msgpack bytes equality)."""

from __future__ import annotations

import msgpack

from game.config import GameConfig
from game.local import LocalTable
from game.rules import Context, apply, new_state

# (client, command, leader timestamp) as a node would read them from the log.
SCRIPT: list[tuple[str, dict, int]] = [
    ("c1", {"type": "join", "name": "ann"}, 1_000),
    ("c2", {"type": "join", "name": "bob"}, 1_010),
    ("c3", {"type": "join", "name": "bob"}, 1_020),  # rejected: name taken
    ("c3", {"type": "join", "name": "cy"}, 1_030),
    ("c1", {"type": "ready", "ready": True}, 1_100),
    ("c2", {"type": "ready", "ready": True}, 1_200),
    ("c1", {"type": "start"}, 1_300),  # countdown until 4_300
    ("leader", {"type": "tick"}, 4_000),
    ("leader", {"type": "tick"}, 4_300),  # round 1 until 24_300
    ("c1", {"type": "hit", "round": 1, "target": 0}, 5_000),
    ("c2", {"type": "hit", "round": 1, "target": 0}, 5_001),  # rejected: taken by ann
    ("c2", {"type": "hit", "round": 1, "target": 1}, 5_500),
    ("c3", {"type": "hit", "round": 1, "target": 2}, 6_000),
    ("c3", {"type": "hit", "round": 1, "target": 3}, 6_100),
    ("c3", {"type": "hit", "round": 1, "target": 4}, 6_200),  # clears round 1
    ("c4", {"type": "join", "name": "dee"}, 6_300),  # spectator
    ("c1", {"type": "hit", "round": 1, "target": 4}, 6_400),  # rejected: round over
    ("leader", {"type": "tick"}, 10_200),  # round 2 until 30_200
    ("c2", {"type": "hit", "round": 1, "target": 0}, 10_300),  # rejected: stale
    ("c2", {"type": "hit", "round": 2, "target": 0}, 10_400),
    ("c4", {"type": "hit", "round": 2, "target": 1}, 10_500),  # rejected: spectator
    ("leader", {"type": "tick"}, 30_200),  # intermission until 34_200
    ("leader", {"type": "tick"}, 34_200),  # round 3 until 54_200
    ("c2", {"type": "hit", "round": 3, "target": 4}, 40_000),
    ("c1", {"type": "hit", "round": 3, "target": 1}, 41_000),
    ("leader", {"type": "tick"}, 54_200),  # game over: bob 3, cy 3, ann 2
    ("c1", {"type": "rematch"}, 60_000),
]


def run(script: list[tuple[str, dict, int]], state: dict | None = None, first_index: int = 1):
    """Apply the script as a node would; return the state and every (result, events)."""
    state = new_state(GameConfig(), seed=42) if state is None else state
    outputs = []
    for offset, (client, command, ts) in enumerate(script):
        outputs.append(apply(state, command, Context(first_index + offset, ts, client)))
    return state, outputs


def test_a_full_game_runs_from_lobby_through_three_rounds_to_game_over_and_rematch() -> None:
    table = LocalTable(GameConfig(), seed=42)
    phases = []
    for client, command, ts in SCRIPT:
        table.submit(client, command, at_ms=ts)
        phases += [e["phase"] for e in table.events if e["type"] == "phase"]
    assert phases == [
        "countdown",
        "round",
        "intermission",
        "round",
        "intermission",
        "round",
        "game_over",
        "lobby",
    ]
    errors = [a.result.get("error") for a in table.history if not a.result["ok"]]
    assert errors == ["name_taken", "target_taken", "round_over", "stale_round", "spectator"]
    game_over = next(e for a in table.history for e in a.events if e["type"] == "game_over")
    assert game_over["winners"] == ["bob", "cy"]
    assert game_over["scores"] == {"ann": 2, "bob": 3, "cy": 3}

    state = table.state
    assert state["game_state"]["phase"] == "lobby"
    assert state["players"]["dee"]["spectator"] is False
    assert state["leaderboard"] == {
        "ann": {"name": "ann", "points": 2, "games": 1, "wins": 0},
        "bob": {"name": "bob", "points": 3, "games": 1, "wins": 1},
        "cy": {"name": "cy", "points": 3, "games": 1, "wins": 1},
    }


def test_the_same_commands_on_two_fresh_states_give_identical_bytes_and_results() -> None:
    state_a, outputs_a = run(SCRIPT)
    state_b, outputs_b = run(SCRIPT)
    assert msgpack.packb(state_a) == msgpack.packb(state_b)
    assert msgpack.packb(outputs_a) == msgpack.packb(outputs_b)


def test_the_state_and_every_output_survive_a_msgpack_round_trip_unchanged() -> None:
    state, outputs = run(SCRIPT)
    assert msgpack.unpackb(msgpack.packb(state)) == state
    assert msgpack.unpackb(msgpack.packb(outputs)) == [list(pair) for pair in outputs]


def test_a_node_restored_from_a_snapshot_mid_game_ends_in_the_same_bytes() -> None:
    cut = 12  # during round 1
    straight, _ = run(SCRIPT)
    before, _ = run(SCRIPT[:cut])
    snapshot = msgpack.packb(before)
    restored, _ = run(SCRIPT[cut:], state=msgpack.unpackb(snapshot), first_index=cut + 1)
    assert msgpack.packb(restored) == msgpack.packb(straight)


def test_different_seeds_give_different_target_layouts() -> None:
    state_a, _ = run(SCRIPT[:9])
    state_b = new_state(GameConfig(), seed=43)
    run(SCRIPT[:9], state=state_b)
    assert state_a["current_round"]["number"] == state_b["current_round"]["number"] == 1
    assert state_a["current_round"]["targets"] != state_b["current_round"]["targets"]
