"""Why a command is rejected: one exception carrying a stable code and a message.

Codes are part of the client contract (bots branch on them, the UI translates
them), so they are listed here once. Messages are for humans: they say what
happened and, where there is one, what to do instead.

- ``bad_command``         the command is not a dict or a field is missing/mistyped
- ``unknown_command``     ``type`` names no command
- ``invalid_name``        join name empty, longer than 16, or has other characters
- ``name_taken``          another session plays under that name (case-insensitive)
- ``already_joined``      this session already holds a different player
- ``game_full``           ``max_players`` members (players + spectators) already
- ``not_joined``          this session holds no player
- ``wrong_phase``         the command does not apply in the current phase
- ``not_host``            only the host may start or rematch
- ``not_enough_players``  fewer than ``min_players`` players to start
- ``not_enough_ready``    fewer ready players than the start needs
- ``spectator``           spectators wait for the next game and cannot shoot
- ``round_over``          the hit's round has ended (deadline passed or all taken)
- ``stale_round``         the hit names an earlier round than the running one
- ``future_round``        the hit names a round that has not started
- ``no_such_target``      the target id is not in the running round
- ``target_taken``        another hit on that target committed first

Rooms (``game.rooms``):

- ``no_such_room``        no open room has that id or join code (it may have closed)
- ``private_room``        the room is private: join it with its code
- ``in_room``             this session already has a seat in a room; leave it first
- ``not_in_room``         this session has no seat in the room the command names
- ``bots_not_allowed``    the room was created without bots
- ``bad_room_config``     a room setting is out of range (the message says which)
- ``too_many_rooms``      the cluster holds its maximum number of rooms
- ``bad_token``           no seat of that name in that room holds that reconnect token
- ``rooms_starting``      the leader has not yet committed the rooms secret; retry shortly
"""

from __future__ import annotations

ERROR_CODES: frozenset[str] = frozenset(
    {
        "bad_command",
        "unknown_command",
        "invalid_name",
        "name_taken",
        "already_joined",
        "game_full",
        "not_joined",
        "wrong_phase",
        "not_host",
        "not_enough_players",
        "not_enough_ready",
        "spectator",
        "round_over",
        "stale_round",
        "future_round",
        "no_such_target",
        "target_taken",
        "no_such_room",
        "private_room",
        "in_room",
        "not_in_room",
        "bots_not_allowed",
        "bad_room_config",
        "too_many_rooms",
        "bad_token",
        "rooms_starting",
    }
)


class RuleBroken(Exception):
    """A command that breaks a rule. Raised before any change to the state."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, f"undocumented error code {code!r}"
        super().__init__(message)
        self.code = code
        self.message = message

    def result(self) -> dict:
        """The wire form of the rejection: ``{"ok": False, "error", "message"}``."""
        return {"ok": False, "error": self.code, "message": self.message}
