"""Where a round's targets appear: a pure function of the seed, game and round.

Positions come from SHA-256 of ``"{seed}:{game}:{round}:{target}:{attempt}"``
rather than from ``random.Random``: Python guarantees only ``random()``'s
sequence across versions, not ``randint``/``uniform``, and nodes of one cluster
may run different Python builds. A hash is the same everywhere, forever.

The game number is part of the key so a rematch does not replay the previous
game's layout.
"""

from __future__ import annotations

import hashlib
from typing import Any

from game.config import GameConfig

# Tries per target to find a spot clear of the earlier ones; after that the
# target is placed anyway (a crowded arena beats a round with missing targets).
PLACEMENT_ATTEMPTS = 32


def spawn_targets(
    seed: int, game: int, round_number: int, config: GameConfig
) -> list[dict[str, Any]]:
    """The targets of one round: ids ``0..targets_per_round-1``, none taken yet.

    Every target lies wholly inside the arena, and targets do not overlap when
    a free spot exists within ``PLACEMENT_ATTEMPTS`` tries.
    """
    r = config.target_radius
    placed: list[dict[str, Any]] = []
    for target_id in range(config.targets_per_round):
        for attempt in range(PLACEMENT_ATTEMPTS):
            x, y = _position(f"{seed}:{game}:{round_number}:{target_id}:{attempt}", config)
            if all((x - t["x"]) ** 2 + (y - t["y"]) ** 2 >= (2 * r) ** 2 for t in placed):
                break
        placed.append({"id": target_id, "x": x, "y": y, "r": r, "taken_by": None})
    return placed


def _position(key: str, config: GameConfig) -> tuple[int, int]:
    """A point at least one radius from every wall, derived from ``key``."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    r = config.target_radius
    span_x = config.arena_width - 2 * r + 1
    span_y = config.arena_height - 2 * r + 1
    x = r + int.from_bytes(digest[0:8], "big") % span_x
    y = r + int.from_bytes(digest[8:16], "big") % span_y
    return x, y
