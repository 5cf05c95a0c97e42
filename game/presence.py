"""Presence: who is still at the table, decided from the log alone.

A process that dies (a closed window, a killed bot) sends nothing more, so its
member would otherwise stay forever, and a dead host would leave nobody able to
start or rematch. Every member carries ``last_seen_ms``: the replicated time
(``now_ms``) of their session's last *accepted* command, set on join. A
rejected command changes nothing, presence included.

A member is idle once ``now_ms - last_seen_ms >= idle_ms`` (``is_idle``: the
one definition, used by the rules, by the leader's timer and by tests). The
leader proposes ``drop_idle`` when someone is idle (``GameMachine.due_command``);
applying it removes every idle member at once, exactly as if they had left
(``lobby.remove_members``). Since the decision uses ``now_ms`` from the log,
every node drops the same members at the same entry.

A live client that has nothing else to send sends ``ping`` (``view.needs_ping``
says when), which only refreshes its presence.
"""

from __future__ import annotations

from typing import Any

from game import guards, lobby
from game.state import members_by_join_order, name_of_client

Handled = tuple[dict[str, Any], list[dict[str, Any]]]


def is_idle(player: dict[str, Any], now_ms: int, idle_ms: int) -> bool:
    """True when the member has been silent for ``idle_ms`` or longer at ``now_ms``."""
    return now_ms - player["last_seen_ms"] >= idle_ms


def anyone_idle(state: dict[str, Any], now_ms: int) -> bool:
    """Whether ``drop_idle`` at ``now_ms`` would drop someone; O(members), no sorting."""
    idle_ms = state["config"]["idle_ms"]
    return any(is_idle(p, now_ms, idle_ms) for p in state["players"].values())


def idle_members(state: dict[str, Any], now_ms: int, present_client: str) -> list[str]:
    """Idle members in join order, except the one bound to ``present_client``."""
    idle_ms, players = state["config"]["idle_ms"], state["players"]
    return [
        name
        for name in members_by_join_order(state)
        if players[name]["client_id"] != present_client and is_idle(players[name], now_ms, idle_ms)
    ]


def touch(state: dict[str, Any], client_id: str, now_ms: int) -> None:
    """Mark the session's member (if any) as seen at ``now_ms``; for accepted commands only."""
    name = name_of_client(state, client_id)
    if name is not None:
        state["players"][name]["last_seen_ms"] = now_ms


def ping(state: dict[str, Any], command: dict[str, Any], client_id: str, now_ms: int) -> Handled:
    """Any member: nothing but the presence refresh every accepted command gets."""
    guards.member(state, client_id)
    return {}, []


def drop_idle(
    state: dict[str, Any], command: dict[str, Any], client_id: str, now_ms: int
) -> Handled:
    """Remove every idle member, as if they had left together; a timer tick, never rejected.

    Anyone may send it (the leader does, on its timer); the sender's own member,
    if any, is not idle, since this very command shows the session is alive.
    With nobody idle it changes nothing beyond the time every command lets pass.
    """
    dropped = idle_members(state, now_ms, present_client=client_id)
    if not dropped:
        return {"dropped": []}, []
    return {"dropped": dropped}, lobby.remove_members(state, dropped, reason="idle")
