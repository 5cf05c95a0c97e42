"""Checks shared by command handlers; each raises ``RuleBroken`` or returns a value.

Handlers call these before they change anything, which is what makes a
rejected command a no-op.
"""

from __future__ import annotations

import re
from typing import Any

from game.errors import RuleBroken
from game.state import name_of_client, phase_of

NAME_MAX_LEN = 16
# ASCII only: case-folding and "letters" stay identical on every node's Python
# and Unicode tables, and look-alike names cannot impersonate each other.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9 _-]+")


def valid_name(raw: Any) -> str:
    """The stripped name if it is 1-16 letters, digits, spaces, ``_`` or ``-``."""
    if not isinstance(raw, str):
        raise RuleBroken("invalid_name", f"name must be a string, got {type(raw).__name__}")
    name = raw.strip()
    if not 1 <= len(name) <= NAME_MAX_LEN:
        raise RuleBroken(
            "invalid_name", f"name must be 1-{NAME_MAX_LEN} characters after stripping spaces"
        )
    if not _NAME_PATTERN.fullmatch(name):
        raise RuleBroken(
            "invalid_name",
            f"name {name!r} may only use letters, digits, spaces, '_' and '-'",
        )
    return name


def member(state: dict[str, Any], client_id: str) -> str:
    """The name bound to this session; rejects sessions that have not joined."""
    name = name_of_client(state, client_id)
    if name is None:
        raise RuleBroken("not_joined", "this session has no player: send join {name} first")
    return name


def host(state: dict[str, Any], client_id: str, action: str) -> str:
    """The caller's name, provided the caller is the host."""
    name = member(state, client_id)
    current_host = state["game_state"]["host"]
    if name != current_host:
        raise RuleBroken("not_host", f"only the host ({current_host}) can {action}")
    return name


def in_phase(state: dict[str, Any], allowed: str, action: str) -> None:
    phase = phase_of(state)
    if phase != allowed:
        raise RuleBroken("wrong_phase", f"cannot {action} during {phase}; only in {allowed}")


def int_field(command: dict[str, Any], key: str) -> int:
    """A required integer field (a bool is not accepted as an int)."""
    value = command.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RuleBroken(
            "bad_command", f"{command.get('type')} needs an integer {key!r}, got {value!r}"
        )
    return value


def bool_field(command: dict[str, Any], key: str) -> bool:
    value = command.get(key)
    if not isinstance(value, bool):
        raise RuleBroken(
            "bad_command", f"{command.get('type')} needs a boolean {key!r}, got {value!r}"
        )
    return value
