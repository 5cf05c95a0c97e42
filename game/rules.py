"""The game's replicated state machine: ``apply(state, command, ctx)``.

Every node applies the same committed commands, in log order, to the same
state and must reach the same state and the same results. So nothing here
reads a clock, a random source, the network or a file: time is the leader's
timestamp in the log entry (``Context.timestamp_ms``), randomness is the seed
stored in the state (see ``game.spawn``).

Commands (dicts with ``"type"``)::

    join {name, bot?}    bind a player to the session (a spectator if a game runs);
                         bot: true marks a headless agent (a person joining a
                         bot-hosted table becomes host)
    leave                remove the session's player
    ready {ready: bool}  lobby only
    start                host only, lobby only -> countdown
    hit {round, target}  first committed hit on a target scores a point
    tick                 only lets time pass (the leader proposes it periodically)
    rematch              host only, game over -> lobby
    ping                 any member: only refreshes the member's presence
    drop_idle            removes members silent for idle_ms, as if they left (the
                         leader proposes it; never rejected; see ``game.presence``)

Every accepted command from a member's session sets that member's
``last_seen_ms`` to the command's ``now_ms``; a rejected one does not.

Each command first lets time pass up to its timestamp (the same transitions as
``tick``) and is then judged in the resulting phase, so a hit that commits
after the round's deadline is refused with "round_over".

A rejected command changes nothing at all, including the time transitions it
would have triggered: those happen on the next accepted command (the next tick
at the latest). That keeps "rejected" meaning "no change", so a client can
roll back its optimistic guess and a node need not publish an update. (The
price: ``now_ms`` moves only with accepted commands, so after a leader change a
lagging leader clock can still land a hit that a faster clock saw as late. The
deadline is only ever as precise as the leaders' clocks agree.)

Events (small dicts, in the order things happened)::

    player_joined {name, spectator}   host_changed {host}
    player_left {name}  (from leave)  or  {name, reason: "idle"}  (from drop_idle)
    player_ready {name, ready}        players_promoted {names}
    phase {phase, round, deadline_ms}
    target_hit {target, player, round, score}
    round_ended {round, reason: "time" | "cleared"}
    game_over {game, reason: "rounds_done" | "players_left", winners, scores}
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from game import lobby, presence, shooting, timeline
from game.errors import RuleBroken
from game.state import new_state

__all__ = ["COMMANDS", "Context", "apply", "new_state"]

H = TypeVar("H")

Handler = Callable[
    [dict[str, Any], dict[str, Any], str, int], tuple[dict[str, Any], list[dict[str, Any]]]
]


@dataclass(frozen=True, slots=True)
class Context:
    """What the log entry says about a command, beyond the command itself."""

    index: int  # Raft log index of the entry being applied
    timestamp_ms: int  # the leader's clock when it proposed the entry (never a node's own)
    client_id: str  # the session that submitted the command; players are bound to it


def _tick(
    state: dict[str, Any], command: dict[str, Any], client_id: str, now_ms: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Nothing beyond the time transitions every command performs."""
    return {}, []


COMMANDS: dict[str, Handler] = {
    "join": lobby.join,
    "leave": lobby.leave,
    "ready": lobby.ready,
    "start": lobby.start,
    "hit": shooting.hit,
    "tick": _tick,
    "rematch": lobby.rematch,
    "ping": presence.ping,
    "drop_idle": presence.drop_idle,
}


def apply(
    state: dict[str, Any], command: dict[str, Any], ctx: Context
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Apply one committed command to ``state`` in place; return ``(result, events)``.

    ``result`` is ``{"ok": True, ...}`` or ``{"ok": False, "error", "message"}``;
    ``events`` (empty on rejection) describe what changed, for clients to animate.
    Any exception other than a rejection is a bug in these rules.
    """
    try:
        handler = _handler_for(command)
    except RuleBroken as rejection:
        return rejection.result(), []
    now_ms = max(state["now_ms"], int(ctx.timestamp_ms))

    if not timeline.transition_due(state, now_ms):
        # Common case: handlers validate before writing, so no copy is needed.
        try:
            fields, events = handler(state, command, ctx.client_id, now_ms)
        except RuleBroken as rejection:
            return rejection.result(), []
        state["now_ms"] = now_ms
        presence.touch(state, ctx.client_id, now_ms)
        return {"ok": True, **fields}, events

    # A phase change is due: run it and the command on a copy, and keep the copy
    # only if the command is accepted (a rejected command changes nothing).
    trial = copy.deepcopy(state)
    trial["now_ms"] = now_ms
    events = timeline.advance(trial, now_ms)
    try:
        fields, more = handler(trial, command, ctx.client_id, now_ms)
    except RuleBroken as rejection:
        return rejection.result(), []
    presence.touch(trial, ctx.client_id, now_ms)
    state.clear()
    state.update(trial)
    return {"ok": True, **fields}, events + more


def handler_for(command: Any, commands: Mapping[str, H], what: str = "") -> H:
    """The handler of ``command``'s ``type`` in ``commands``; a command that is no map,
    or names no known type, is refused (``what``: "rooms " names the table in the message)."""
    if not isinstance(command, dict):
        raise RuleBroken(
            "bad_command", f"a command must be a map with a 'type', got {type(command).__name__}"
        )
    kind = command.get("type")
    handler = commands.get(kind) if isinstance(kind, str) else None
    if handler is None:
        known = ", ".join(commands)
        raise RuleBroken("unknown_command", f"unknown {what}command type {kind!r}; known: {known}")
    return handler


def _handler_for(command: Any) -> Handler:
    return handler_for(command, COMMANDS)
