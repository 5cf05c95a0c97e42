"""The shape of the replicated game state, and small readers over it.

The state is a plain dict of msgpack-able values (str keys, ints, str, bools,
None, lists, dicts) so a node can snapshot it with msgpack and two nodes can be
compared byte for byte. Its top-level keys::

    config        GameConfig.to_dict()
    seed          int, fixed at creation; every target position derives from it
    now_ms        leader time seen so far: max over applied timestamps, never decreases
    game_state    {phase, phase_deadline_ms, host, winners, game_number, joins}
    players       name -> {client_id, ready, spectator, joined_index, last_seen_ms, bot}
                  (last_seen_ms: now_ms of the member's last accepted command;
                  bot: joined with ``bot: true``, a headless agent, not a person)
    current_round {number, targets: [{id, x, y, r, taken_by}], deadline_ms, ended_ms}
    scores        name -> points in the current (or last finished) game
    leaderboard   name.casefold() -> {name, points, games, wins}, across games

Invariants (checked by ``check_invariants``, which the tests run after every
command): ``host`` is None exactly when ``players`` is empty, and otherwise names
a member; an empty table is a lobby; a client id holds at most one player;
names are unique ignoring case; members never exceed ``max_players``; no
member was last seen after ``now_ms``; a lobby holds no spectators;
``phase_deadline_ms`` is set exactly in the timed phases (countdown, round,
intermission); while a game runs, ``scores`` has exactly the active players.
"""

from __future__ import annotations

from typing import Any

from game.config import GameConfig

LOBBY = "lobby"
COUNTDOWN = "countdown"
ROUND = "round"
INTERMISSION = "intermission"
GAME_OVER = "game_over"

PHASES: tuple[str, ...] = (LOBBY, COUNTDOWN, ROUND, INTERMISSION, GAME_OVER)
TIMED_PHASES: frozenset[str] = frozenset({COUNTDOWN, ROUND, INTERMISSION})
# A game is running from the start command until game over; joiners spectate.
RUNNING_PHASES: frozenset[str] = TIMED_PHASES

# msgpack encodes integers in 64 bits; a larger seed would make the state unsnapshottable.
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def new_state(config: GameConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """A fresh table: empty lobby, no rounds played, an empty leaderboard."""
    if config is None:
        config = GameConfig()
    if not isinstance(seed, int) or isinstance(seed, bool) or not _INT64_MIN <= seed <= _UINT64_MAX:
        raise ValueError(f"seed must be an int that fits in 64 bits, got {seed!r}")
    return {
        "config": config.to_dict(),
        "seed": seed,
        "now_ms": 0,
        "game_state": {
            "phase": LOBBY,
            "phase_deadline_ms": None,
            "host": None,
            "winners": [],
            "game_number": 0,
            "joins": 0,  # join counter: the next member's joined_index
        },
        "players": {},
        "current_round": empty_round(),
        "scores": {},
        "leaderboard": {},
    }


def empty_round() -> dict[str, Any]:
    """``current_round`` before round 1 of a game."""
    return {"number": 0, "targets": [], "deadline_ms": None, "ended_ms": None}


def config_of(state: dict[str, Any]) -> GameConfig:
    return GameConfig.from_dict(state["config"])


def phase_of(state: dict[str, Any]) -> str:
    return state["game_state"]["phase"]


def name_of_client(state: dict[str, Any], client_id: str) -> str | None:
    """The player (or spectator) bound to a session, if any."""
    for name, player in state["players"].items():
        if player["client_id"] == client_id:
            return name
    return None


def find_name(state: dict[str, Any], name: str) -> str | None:
    """The member whose name equals ``name`` ignoring case, as stored."""
    folded = name.casefold()
    for existing in state["players"]:
        if existing.casefold() == folded:
            return existing
    return None


def members_by_join_order(state: dict[str, Any]) -> list[str]:
    """Every member, players and spectators, oldest first (host succession order)."""
    players = state["players"]
    return sorted(players, key=lambda name: players[name]["joined_index"])


def active_players(state: dict[str, Any]) -> list[str]:
    """Members who play the current game (not spectators), in join order."""
    return [n for n in members_by_join_order(state) if not state["players"][n]["spectator"]]


def check_invariants(state: dict[str, Any]) -> None:
    """Assert the invariants in the module docstring; for tests and debug builds."""
    gs, players = state["game_state"], state["players"]
    assert gs["phase"] in PHASES, gs["phase"]
    assert (gs["host"] is None) == (not players), (gs["host"], list(players))
    assert gs["host"] is None or gs["host"] in players, gs["host"]
    client_ids = [p["client_id"] for p in players.values()]
    assert len(client_ids) == len(set(client_ids)), client_ids
    assert len({n.casefold() for n in players}) == len(players), list(players)
    assert len(players) <= state["config"]["max_players"]
    for name, player in players.items():
        assert player["last_seen_ms"] <= state["now_ms"], (name, player, state["now_ms"])
    if gs["phase"] == LOBBY:
        assert not any(p["spectator"] for p in players.values()), players
    assert (gs["phase_deadline_ms"] is not None) == (gs["phase"] in TIMED_PHASES), gs
    if not players:
        assert gs["phase"] == LOBBY, gs["phase"]
    if gs["phase"] in RUNNING_PHASES:
        assert set(state["scores"]) == set(active_players(state)), (state["scores"], players)
