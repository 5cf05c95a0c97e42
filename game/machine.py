"""The game rules behind the node layer's ``StateMachine`` protocol.

``nodes.statemachine.Replicated`` runs machines that have ``name``, ``apply``,
``query``, ``snapshot`` and ``restore``; this adapter gives the pure rules that
shape without the rules knowing about nodes (the protocol is duck-typed, so
nothing is imported from ``nodes``).

The seed must be identical on every node or their target layouts diverge: derive
it from something all nodes share, e.g. ``seed_from(cluster_id)``.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Protocol

from game import presence, rules, view
from game.config import GameConfig
from game.state import new_state


class EntryContext(Protocol):
    """What the node layer knows about an entry (``nodes.statemachine.ApplyContext``)."""

    index: int
    timestamp_ms: int
    client_id: str


def seed_from(text: str) -> int:
    """A 63-bit seed every node derives alike from shared text (a cluster id)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


class GameMachine:
    """Holds one game state and applies committed game commands to it."""

    name = "game"

    def __init__(self, config: GameConfig | None = None, seed: int = 0) -> None:
        self.state: dict[str, Any] = new_state(config, seed)

    def apply(self, command: dict, ctx: EntryContext) -> tuple[object, list[dict]]:
        """Rules' ``apply`` with the node's entry context; never raises for bad input."""
        return rules.apply(
            self.state, command, rules.Context(ctx.index, ctx.timestamp_ms, ctx.client_id)
        )

    def query(self, query: dict) -> object:
        """``{"op": "state"}`` -> the whole state; ``{"op": "player_of", "client_id"}``."""
        op = query.get("op") if isinstance(query, dict) else None
        if op == "state":
            return {"ok": True, "state": copy.deepcopy(self.state)}
        if op == "player_of" and isinstance(query.get("client_id"), str):
            return {"ok": True, "name": view.player_of(self.state, query["client_id"])}
        return {
            "ok": False,
            "error": "bad_query",
            "message": f"unknown game query {query!r:.80}; use op 'state' or 'player_of'",
        }

    def due_command(self, now_ms: int) -> dict | None:
        """What the leader should propose now, on its own clock: a ``tick`` once the
        current phase's deadline has passed (the tick carries the leader's timestamp
        in the log, so every node ends the phase at the same entry); else a
        ``drop_idle`` once some member has been silent for ``idle_ms``.

        Called every few milliseconds, so it costs O(members). The rules judge
        idleness with the same ``presence.is_idle`` at ``max(now_ms, state now)``,
        so a ``drop_idle`` proposed here drops someone unless they speak first."""
        deadline = self.state["game_state"]["phase_deadline_ms"]
        if deadline is not None and now_ms >= deadline:
            return {"type": "tick"}
        if presence.anyone_idle(self.state, now_ms):
            return {"type": "drop_idle"}
        return None

    def snapshot(self) -> object:
        """A copy of the state: plain msgpack data, equal for replicas with equal logs."""
        return copy.deepcopy(self.state)

    def restore(self, data: object) -> None:
        """Replace the state with one from ``snapshot``; refuses data of another shape."""
        if not isinstance(data, dict) or set(data) != set(new_state()):
            raise ValueError("not a game snapshot: expected the keys of game.state.new_state")
        config = GameConfig.from_dict(data["config"])  # raises ValueError if invalid
        state = copy.deepcopy(data)
        # A snapshot from before presence existed: fill in the new fields the same
        # way on every node (default idle_ms, everyone seen at the snapshot's now).
        state["config"] = config.to_dict()
        for player in state["players"].values():
            player.setdefault("last_seen_ms", state["now_ms"])
            player.setdefault("bot", False)  # members from before the marker: people
        self.state = state
