"""The game state as a few lines of text, for ``arena game`` and logs."""

from __future__ import annotations

from typing import Any

from . import view


def describe(state: dict[str, Any]) -> str:
    if not state:
        return "no game state yet"
    gs = state["game_state"]
    lines = [f"game {gs['game_number']}: {gs['phase']}  (host: {gs['host'] or '-'})"]
    rnd = state["current_round"]
    if gs["phase"] in ("round", "intermission", "countdown") and rnd["number"]:
        total = state["config"]["rounds"]
        left = len(view.open_targets(state))
        lines.append(f"round {rnd['number']}/{total}: {left} targets open")
    players = state["players"]
    if players:
        marks = []
        for name, p in sorted(players.items(), key=lambda kv: kv[1]["joined_index"]):
            tag = " (spectator)" if p["spectator"] else (" [ready]" if p["ready"] else "")
            marks.append(f"{name}{tag}")
        lines.append("players: " + ", ".join(marks))
    standings = view.standings(state)
    if standings:
        lines.append("scores: " + ", ".join(f"{n} {s}" for n, s in standings))
    if gs.get("winners"):
        lines.append("winners: " + ", ".join(gs["winners"]))
    return "\n".join(lines)
