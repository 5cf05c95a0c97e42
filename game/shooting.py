"""The ``hit`` command: the first committed hit on a target wins the point.

Two players may click the same target within a few milliseconds; both hits are
proposed, Raft orders them, and every node applies them in that order. The
first one takes the target, the second is rejected naming who took it, so every
node and every client agrees on the point.

A hit names its round, so a hit fired in round 1 that commits after round 2
began is refused ("stale_round") rather than landing on whatever target now has
the same id.
"""

from __future__ import annotations

from typing import Any

from game import guards, timeline
from game.errors import RuleBroken
from game.state import GAME_OVER, INTERMISSION, ROUND, phase_of

Handled = tuple[dict[str, Any], list[dict[str, Any]]]


def hit(state: dict[str, Any], command: dict[str, Any], client_id: str, now_ms: int) -> Handled:
    """Score target ``target`` of round ``round`` for the caller, if nobody has yet."""
    round_number = guards.int_field(command, "round")
    target_id = guards.int_field(command, "target")
    name = guards.member(state, client_id)
    if state["players"][name]["spectator"]:
        raise RuleBroken("spectator", "spectators cannot shoot; you play from the next game")

    current = state["current_round"]
    phase = phase_of(state)
    if phase != ROUND:
        if phase in (INTERMISSION, GAME_OVER) and round_number == current["number"]:
            raise RuleBroken("round_over", f"round {round_number} is over; the hit came too late")
        raise RuleBroken("wrong_phase", f"no round is running (phase {phase})")
    if round_number < current["number"]:
        raise RuleBroken(
            "stale_round",
            f"hit for round {round_number} arrived during round {current['number']}; it no longer counts",
        )
    if round_number > current["number"]:
        raise RuleBroken(
            "future_round",
            f"round {round_number} has not started; round {current['number']} is running",
        )
    target = next((t for t in current["targets"] if t["id"] == target_id), None)
    if target is None:
        raise RuleBroken("no_such_target", f"round {round_number} has no target {target_id}")
    if target["taken_by"] is not None:
        raise RuleBroken(
            "target_taken", f"target {target_id} was already taken by {target['taken_by']}"
        )

    target["taken_by"] = name
    state["scores"][name] += 1
    score = state["scores"][name]
    events: list[dict[str, Any]] = [
        {
            "type": "target_hit",
            "target": target_id,
            "player": name,
            "round": round_number,
            "score": score,
        }
    ]
    if all(t["taken_by"] is not None for t in current["targets"]):
        events += timeline.end_round(state, now_ms, reason="cleared")
    return {"target": target_id, "round": round_number, "score": score}, events
