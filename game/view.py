"""Read-only questions a renderer or a bot asks of a (committed) game state.

Nothing here changes the state: drawing reads the view and never writes it.
``time_left_ms`` and ``needs_ping`` take ``now_ms`` from the caller because only
the caller knows its best estimate of the leader's clock; the rules never read
a clock.
"""

from __future__ import annotations

from typing import Any

from game.state import ROUND, name_of_client


def phase(state: dict[str, Any]) -> str:
    """``lobby``, ``countdown``, ``round``, ``intermission`` or ``game_over``."""
    return state["game_state"]["phase"]


def open_targets(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Targets that can still be hit: untaken ones, and only while a round runs."""
    if phase(state) != ROUND:
        return []
    return [t for t in state["current_round"]["targets"] if t["taken_by"] is None]


def time_left_ms(state: dict[str, Any], now_ms: int) -> int | None:
    """Milliseconds until the current phase's deadline (never negative), or None if untimed."""
    deadline = state["game_state"]["phase_deadline_ms"]
    if deadline is None:
        return None
    return max(0, deadline - now_ms)


def player_of(state: dict[str, Any], client_id: str) -> str | None:
    """The name this session plays (or spectates) under, or None."""
    return name_of_client(state, client_id)


def needs_ping(state: dict[str, Any], client_id: str, now_ms: int) -> bool:
    """True when this session's member (player or spectator) should send ``ping``.

    That is once its last accepted command is older than a third of ``idle_ms``,
    which leaves a live but quiet client two more chances before ``drop_idle``
    would remove it. A session without a member never needs to ping.
    """
    name = name_of_client(state, client_id)
    if name is None:
        return False
    silent_ms = now_ms - state["players"][name]["last_seen_ms"]
    return 3 * silent_ms > state["config"]["idle_ms"]  # silent_ms > idle_ms / 3, in ints


def standings(state: dict[str, Any]) -> list[tuple[str, int]]:
    """(name, score) of the current or last game, best first, ties by name."""
    return sorted(state["scores"].items(), key=lambda item: (-item[1], item[0].casefold()))


def leaderboard(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Leaderboard rows across games: most wins first, then points, then name."""
    rows = state["leaderboard"].values()
    return sorted(rows, key=lambda r: (-r["wins"], -r["points"], r["name"].casefold()))
