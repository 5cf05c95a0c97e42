"""Who won a game, and the leaderboard that outlives games.

The leaderboard is keyed by ``name.casefold()`` because names are unique
ignoring case: "Ann" today and "ann" tomorrow are the same row, shown under the
spelling used most recently.
"""

from __future__ import annotations

from typing import Any


def winners_of(scores: dict[str, int]) -> list[str]:
    """Every player with the top score, sorted by name; nobody if the top score is 0.

    Ties share the win; a game in which nobody hit anything has no winner.
    """
    if not scores:
        return []
    top = max(scores.values())
    if top <= 0:
        return []
    return sorted((name for name, points in scores.items() if points == top), key=str.casefold)


def record_game(leaderboard: dict[str, Any], scores: dict[str, int], winners: list[str]) -> None:
    """Add one finished game to the leaderboard, in place.

    Only players still in ``scores`` at game over are counted: a player who left
    mid-game forfeited it (see ``game.lobby.leave``).
    """
    for name in sorted(scores, key=str.casefold):
        row = leaderboard.setdefault(
            name.casefold(), {"name": name, "points": 0, "games": 0, "wins": 0}
        )
        row["name"] = name
        row["points"] += scores[name]
        row["games"] += 1
        if name in winners:
            row["wins"] += 1
