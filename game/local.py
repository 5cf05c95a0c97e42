"""Run the rules in one process, without Raft, under a scripted leader clock.

This stands in for "the log" in tests, offline bot practice and replays: each
submitted command gets the next log index and the current scripted timestamp,
exactly the ``Context`` a node would build from a committed entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from game.config import GameConfig
from game.rules import Context, apply
from game.state import new_state


@dataclass(frozen=True, slots=True)
class Applied:
    """One applied command and what it produced, for transcripts and replays."""

    ctx: Context
    command: dict[str, Any]
    result: dict[str, Any]
    events: list[dict[str, Any]]


class LocalTable:
    """A game state plus the log position and leader clock that drive it."""

    def __init__(
        self, config: GameConfig | None = None, seed: int = 0, start_ms: int = 1_000_000
    ) -> None:
        self.state: dict[str, Any] = new_state(config, seed)
        self.index = 0
        self.clock_ms = start_ms
        self.history: list[Applied] = []

    @property
    def events(self) -> list[dict[str, Any]]:
        """Events of the most recent command (empty before the first)."""
        return self.history[-1].events if self.history else []

    def submit(
        self, client_id: str, command: dict[str, Any], at_ms: int | None = None
    ) -> dict[str, Any]:
        """Apply ``command`` as the next log entry, stamped ``at_ms`` or the clock."""
        self.index += 1
        ctx = Context(self.index, self.clock_ms if at_ms is None else at_ms, client_id)
        result, events = apply(self.state, command, ctx)
        self.history.append(Applied(ctx, command, result, events))
        return result

    def do(self, client_id: str, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Shorthand: ``do("c1", "join", name="ann")``."""
        return self.submit(client_id, {"type": kind, **fields})

    def wait(self, ms: int) -> None:
        """Let ``ms`` of leader time pass (nothing is applied until a command)."""
        self.clock_ms += ms

    def tick(self, client_id: str = "leader") -> dict[str, Any]:
        """What the leader proposes periodically: a tick at the current clock."""
        return self.do(client_id, "tick")
