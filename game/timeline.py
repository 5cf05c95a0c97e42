"""Phase changes driven by time and by the end of a round.

Time is the leader's timestamp carried in each log entry, folded into
``state["now_ms"]`` (which never decreases). A timed phase ends when
``now_ms >= phase_deadline_ms``; the next phase then starts at ``now_ms``, not
at the old deadline, so a cluster that was down for a minute resumes with a full
round instead of skipping the rounds it "missed".

    lobby --start--> countdown --time--> round 1 --time or all taken--> intermission
    intermission --time--> round n+1 ... round N --time or all taken--> game_over
    game_over --rematch--> lobby

Every phase change emits ``{"type": "phase", "phase", "round", "deadline_ms"}``.
"""

from __future__ import annotations

from typing import Any

from game.scoring import record_game, winners_of
from game.spawn import spawn_targets
from game.state import COUNTDOWN, GAME_OVER, INTERMISSION, LOBBY, ROUND, config_of, empty_round

Events = list[dict[str, Any]]


def transition_due(state: dict[str, Any], now_ms: int) -> bool:
    """True when the current phase's deadline has been reached at ``now_ms``."""
    deadline = state["game_state"]["phase_deadline_ms"]
    return deadline is not None and now_ms >= deadline


def advance(state: dict[str, Any], now_ms: int) -> Events:
    """Apply every time transition due at ``now_ms``; nothing due means no change.

    Each new deadline is ``now_ms`` plus a duration of at least 1 ms, so this
    runs at most one transition per call; the loop states the intent anyway.
    """
    events: Events = []
    while transition_due(state, now_ms):
        phase = state["game_state"]["phase"]
        if phase in (COUNTDOWN, INTERMISSION):
            events += start_round(state, state["current_round"]["number"] + 1, now_ms)
        elif phase == ROUND:
            events += end_round(state, now_ms, reason="time")
        else:  # pragma: no cover - guarded by check_invariants
            raise AssertionError(f"phase {phase!r} must not carry a deadline")
    return events


def start_countdown(state: dict[str, Any], now_ms: int) -> Events:
    """A new game: count down, then round 1. Scores start at 0 for every player."""
    config = config_of(state)
    gs = state["game_state"]
    gs["game_number"] += 1
    gs["winners"] = []
    state["scores"] = {name: 0 for name, p in state["players"].items() if not p["spectator"]}
    state["current_round"] = empty_round()
    return enter_phase(state, COUNTDOWN, now_ms + config.countdown_ms)


def start_round(state: dict[str, Any], number: int, now_ms: int) -> Events:
    config = config_of(state)
    deadline = now_ms + config.round_ms
    state["current_round"] = {
        "number": number,
        "targets": spawn_targets(state["seed"], state["game_state"]["game_number"], number, config),
        "deadline_ms": deadline,
        "ended_ms": None,
    }
    return enter_phase(state, ROUND, deadline)


def end_round(state: dict[str, Any], now_ms: int, reason: str) -> Events:
    """Close the running round (``reason`` "time" or "cleared"); last round ends the game."""
    config = config_of(state)
    current = state["current_round"]
    current["ended_ms"] = now_ms
    events: Events = [{"type": "round_ended", "round": current["number"], "reason": reason}]
    if current["number"] >= config.rounds:
        return events + finish_game(state, reason="rounds_done")
    return events + enter_phase(state, INTERMISSION, now_ms + config.intermission_ms)


def finish_game(state: dict[str, Any], reason: str) -> Events:
    """Game over: record winners and fold the scores into the leaderboard.

    ``reason`` is "rounds_done" or "players_left" (too few active players remain).
    """
    gs = state["game_state"]
    winners = winners_of(state["scores"])
    gs["winners"] = winners
    record_game(state["leaderboard"], state["scores"], winners)
    event = {
        "type": "game_over",
        "game": gs["game_number"],
        "reason": reason,
        "winners": list(winners),
        "scores": dict(state["scores"]),
    }
    return [event, *enter_phase(state, GAME_OVER, None)]


def back_to_lobby(state: dict[str, Any]) -> Events:
    """Open a new lobby: spectators become players, ready flags and scores clear.

    The leaderboard, the game counter and the members stay.
    """
    for player in state["players"].values():
        player["spectator"] = False
        player["ready"] = False
    state["scores"] = {}
    state["current_round"] = empty_round()
    state["game_state"]["winners"] = []
    return enter_phase(state, LOBBY, None)


def enter_phase(state: dict[str, Any], phase: str, deadline_ms: int | None) -> Events:
    """Switch phase and say so; the one place ``phase`` is written."""
    gs = state["game_state"]
    gs["phase"] = phase
    gs["phase_deadline_ms"] = deadline_ms
    return [
        {
            "type": "phase",
            "phase": phase,
            "round": state["current_round"]["number"],
            "deadline_ms": deadline_ms,
        }
    ]
