"""Membership commands: join, leave, ready, start, rematch.

Every handler has the signature ``(state, command, client_id, now_ms) ->
(result_fields, events)``, checks everything first and raises ``RuleBroken``
before its first write, so a rejected command leaves the state untouched.

Leaving, decided here once (``remove_members``, shared by ``leave`` and by
``drop_idle`` in ``game.presence``, which removes several members at once):

- the host's role passes to the next person by join order, else to the next
  bot (spectators included, so a table of spectators after game over can
  still rematch);
- a player who leaves a running game forfeits it: their score is dropped and
  the game does not count for them on the leaderboard;
- if fewer than ``min_players`` players remain in a running game (countdown
  included), the game ends at once ("players_left") and is scored as usual;
- when the last member leaves, the table resets to an empty lobby, so the next
  person to arrive finds a playable table instead of a headless game over.

People before bots: a member joins as a person unless its join says ``bot:
true``. A person who joins a table hosted by a bot becomes the host, so the
people at a table decide when a game starts (bots ready up and wait for them).

Members who go together (``drop_idle``) leave at once, not one after another:
all of them forfeit, the host passes once to the first remaining person (else member), and
the game-over check runs once, so a departing player is never scored by a game
that ended because the one before them left.
"""

from __future__ import annotations

from typing import Any

from game import guards, timeline
from game.errors import RuleBroken
from game.state import (
    GAME_OVER,
    LOBBY,
    RUNNING_PHASES,
    active_players,
    config_of,
    find_name,
    members_by_join_order,
    name_of_client,
    phase_of,
)

Events = list[dict[str, Any]]
Handled = tuple[dict[str, Any], Events]


def join(state: dict[str, Any], command: dict[str, Any], client_id: str, now_ms: int) -> Handled:
    """Bind a named player to this session; during a game the newcomer spectates."""
    name = guards.valid_name(command.get("name"))
    bot = guards.bool_field(command, "bot") if "bot" in command else False
    players, gs = state["players"], state["game_state"]
    existing = name_of_client(state, client_id)
    if existing is not None:
        if existing.casefold() == name.casefold():
            # A retried or duplicated join must not fail the client that already got in.
            return _joined(state, existing), []
        raise RuleBroken(
            "already_joined",
            f"this session already plays as {existing!r}; leave first to use another name",
        )
    holder = find_name(state, name)
    if holder is not None:
        raise RuleBroken("name_taken", f"the name {holder!r} is taken; pick another name")
    max_players = config_of(state).max_players
    if len(players) >= max_players:
        raise RuleBroken("game_full", f"the table is full ({max_players} members); try later")

    spectator = phase_of(state) != LOBBY
    players[name] = {
        "client_id": client_id,
        "ready": False,
        "spectator": spectator,
        "joined_index": gs["joins"],
        "last_seen_ms": now_ms,
        "bot": bot,
    }
    gs["joins"] += 1
    events: list[dict[str, Any]] = [{"type": "player_joined", "name": name, "spectator": spectator}]
    if gs["host"] is None or (not bot and players[gs["host"]].get("bot", False)):
        gs["host"] = name
        events.append({"type": "host_changed", "host": name})
    return _joined(state, name), events


def leave(state: dict[str, Any], command: dict[str, Any], client_id: str, now_ms: int) -> Handled:
    """Remove the caller's player; see the module docstring for what follows."""
    name = guards.member(state, client_id)
    return {"name": name}, remove_members(state, [name], reason=None)


def remove_members(state: dict[str, Any], names: list[str], reason: str | None) -> Events:
    """Remove ``names`` (existing members, in join order) together; see the module docstring.

    Each gets a ``player_left`` event, carrying ``reason`` unless it is None (a
    voluntary ``leave``).
    """
    players, gs = state["players"], state["game_state"]
    running = phase_of(state) in RUNNING_PHASES

    events: Events = []
    for name in names:
        del players[name]
        if running:
            state["scores"].pop(name, None)
        left: dict[str, Any] = {"type": "player_left", "name": name}
        if reason is not None:
            left["reason"] = reason
        events.append(left)
    if gs["host"] in names:
        successors = members_by_join_order(state)
        people = [n for n in successors if not players[n].get("bot", False)]
        gs["host"] = (people or successors or [None])[0]
        events.append({"type": "host_changed", "host": gs["host"]})

    if not players:
        if phase_of(state) != LOBBY:
            events += timeline.back_to_lobby(state)
    elif running and len(active_players(state)) < config_of(state).min_players:
        events += timeline.finish_game(state, reason="players_left")
    return events


def ready(state: dict[str, Any], command: dict[str, Any], client_id: str, now_ms: int) -> Handled:
    """Set the caller's ready flag in the lobby; setting it to its value is a no-op."""
    value = guards.bool_field(command, "ready")
    name = guards.member(state, client_id)
    guards.in_phase(state, LOBBY, "change ready")
    player = state["players"][name]
    if player["ready"] == value:
        return {"ready": value}, []
    player["ready"] = value
    return {"ready": value}, [{"type": "player_ready", "name": name, "ready": value}]


def start(state: dict[str, Any], command: dict[str, Any], client_id: str, now_ms: int) -> Handled:
    """Host only: leave the lobby for the countdown once enough players are ready."""
    guards.member(state, client_id)
    guards.in_phase(state, LOBBY, "start")
    guards.host(state, client_id, "start the game")
    config = config_of(state)
    players = active_players(state)
    if len(players) < config.min_players:
        raise RuleBroken(
            "not_enough_players",
            f"need at least {config.min_players} players to start, have {len(players)}",
        )
    ready_count = sum(1 for n in players if state["players"][n]["ready"])
    if ready_count < config.ready_to_start:
        raise RuleBroken(
            "not_enough_ready",
            f"need {config.ready_to_start} ready players to start, have {ready_count}",
        )
    events = timeline.start_countdown(state, now_ms)
    gs = state["game_state"]
    return {"game": gs["game_number"], "deadline_ms": gs["phase_deadline_ms"]}, events


def rematch(state: dict[str, Any], command: dict[str, Any], client_id: str, now_ms: int) -> Handled:
    """Host only: from game over back to the lobby; spectators become players."""
    guards.member(state, client_id)
    guards.in_phase(state, GAME_OVER, "rematch")
    guards.host(state, client_id, "call a rematch")
    promoted = [n for n in members_by_join_order(state) if state["players"][n]["spectator"]]
    events = timeline.back_to_lobby(state)
    if promoted:
        events.append({"type": "players_promoted", "names": promoted})
    return {}, events


def _joined(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "name": name,
        "spectator": state["players"][name]["spectator"],
        "host": state["game_state"]["host"] == name,
    }
