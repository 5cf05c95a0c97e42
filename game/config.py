"""The tunable numbers of one Arena table, fixed when the state is created.

The config travels inside the replicated state (as ``asdict(config)``) rather
than in each node's settings, so every node applies the rules with the same
numbers even if the nodes were started with different defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class GameConfig:
    """Game length, timing (milliseconds of leader time), presence and arena geometry.

    ``idle_ms``: a member whose session has had no command accepted for this long
    is removed by the next ``drop_idle`` (see ``game.presence``).

    Invariants (checked in ``__post_init__``): every count and duration is at
    least 1, ``1 <= min_players <= max_players``, and a target fits inside the
    arena (``2 * target_radius < arena_width`` and ``< arena_height``).
    """

    rounds: int = 3
    targets_per_round: int = 5
    round_ms: int = 20_000
    countdown_ms: int = 3_000
    intermission_ms: int = 4_000
    min_players: int = 2
    max_players: int = 8
    arena_width: int = 1000
    arena_height: int = 700
    target_radius: int = 40
    idle_ms: int = 15_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # bool is an int subclass; True as "rounds" is a bug, not a count.
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"GameConfig.{f.name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"GameConfig.{f.name} must be at least 1, got {value}")
        if self.min_players > self.max_players:
            raise ValueError(
                f"GameConfig.min_players ({self.min_players}) exceeds "
                f"max_players ({self.max_players})"
            )
        if 2 * self.target_radius >= min(self.arena_width, self.arena_height):
            raise ValueError(
                f"GameConfig.target_radius {self.target_radius} does not fit an arena of "
                f"{self.arena_width}x{self.arena_height}"
            )

    @property
    def ready_to_start(self) -> int:
        """How many ready players let the host start: two, or fewer for a solo table."""
        return min(2, self.min_players)

    def to_dict(self) -> dict[str, int]:
        """The msgpack-able form stored in the state."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GameConfig:
        """Rebuild from ``to_dict`` output; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GameConfig keys: {', '.join(unknown)}")
        return cls(**data)
