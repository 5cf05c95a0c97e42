"""Seats that outlive a disconnect: reconnect tokens, private join codes, away timing.

Tokens and codes are HMAC-SHA256 of public facts (room id, seat name, a
counter) under ``secret``, a string held in the replicated rooms state and
never in anything the rooms machine publishes (``RoomsMachine.public_snapshot``,
listings, events). Every replica computes the same token, so issuing and
checking one is deterministic; a client who does not know the secret cannot
compute another player's token or a private room's code. See ``game.rooms``
for the trust model and for what the server must filter.

Away timing, one definition for the rules, the leader's timer and the tests:
a seat goes away when its holder sends ``disconnect`` or when the holder has
been silent for the table's ``idle_ms`` (then ``away_ms`` is the moment the
silence reached ``idle_ms``, not the moment a timer noticed, so every replica
frees the seat at the same leader time). The seat is freed once
``now_ms >= away_ms + grace_ms``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud safely
CODE_LENGTH = 6  # 32**6 ~ 1e9 codes; guessing one costs about 5e8 rate-limited joins
TOKEN_HEX_CHARS = 32  # 128 bits


def _mac(secret: str, message: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest()


def token_for(secret: str, room_id: str, name: str, epoch: int) -> str:
    """The reconnect token of seat ``name`` in ``room_id`` at issue number ``epoch``."""
    return _mac(secret, f"token:{room_id}:{name.casefold()}:{epoch}").hex()[:TOKEN_HEX_CHARS]


def token_matches(secret: str, room_id: str, name: str, epoch: int, presented: Any) -> bool:
    """Whether ``presented`` is that seat's current token (compared in constant time)."""
    if not isinstance(presented, str) or len(presented) != TOKEN_HEX_CHARS:
        return False
    return hmac.compare_digest(token_for(secret, room_id, name, epoch), presented)


def code_for(secret: str, room_id: str, attempt: int) -> str:
    """A private room's join code; ``attempt`` > 0 only when an open room already has it."""
    number = int.from_bytes(_mac(secret, f"code:{room_id}:{attempt}")[:8], "big")
    chars = []
    for _ in range(CODE_LENGTH):
        number, digit = divmod(number, len(CODE_ALPHABET))
        chars.append(CODE_ALPHABET[digit])
    return "".join(chars)


def normal_code(raw: Any) -> str | None:
    """A code as typed (any case, spaces around) in stored form, or None if not a string."""
    return raw.strip().upper() if isinstance(raw, str) else None


def table_seed(seed: int, room_id: str) -> int:
    """Each room's target layouts differ: a 63-bit seed from the rooms seed and the id."""
    digest = hashlib.sha256(f"{seed}:{room_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def idle_since(player: dict[str, Any], idle_ms: int) -> int:
    """When a silent member counts as gone: its last accepted command plus ``idle_ms``."""
    return player["last_seen_ms"] + idle_ms


def room_due_ms(room: dict[str, Any], grace_ms: int, close_ms: int) -> int | None:
    """The earliest leader time at which ``timers`` would change this room, or None.

    That is the table's phase deadline, a seated member going idle, an away
    seat's grace ending, or an empty room's close. O(members).
    """
    table = room["table"]
    candidates: list[int] = []
    deadline = table["game_state"]["phase_deadline_ms"]
    if deadline is not None:
        candidates.append(deadline)
    idle_ms = table["config"]["idle_ms"]
    for name, seat in room["seats"].items():
        if seat["away_ms"] is None:
            candidates.append(idle_since(table["players"][name], idle_ms))
        else:
            candidates.append(seat["away_ms"] + grace_ms)
    if room["empty_since_ms"] is not None:
        candidates.append(room["empty_since_ms"] + close_ms)
    return min(candidates) if candidates else None
