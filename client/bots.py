"""Headless agent players: the multi-agent side of the game, and load for benchmarks.

A bot is a policy over the same session a window uses: join (as a bot: the join
carries ``bot: true``), mark ready, start the game when it hosts, hit targets,
ask for a rematch. Bots follow people: a person who joins becomes host (a game
rule), and while any person is at the table a bot never starts a game nor calls
a rematch, it readies up and waits for the host. A bot that hosts a table of
bots leaves the lobby open ``lobby_wait_s`` once a game could start, so people
who are arriving (``arena up`` opens windows and bots together) get a seat.
Strategies:

- ``eager``: hits the first open target as soon as it sees one;
- ``slow``: thinks 0.8-2 s before each hit (a casual human pace);
- ``random``: picks a random open target after a random pause (0.2-1.2 s);
- ``human``: picks a random open target after thinking 0.5-1 s (1-2 actions/s,
  the pace of ``arena bots --rooms`` and ``arena bench rooms``).

Each bot's choices come from a ``random.Random`` seeded from ``--seed`` and its
name, so a run can be repeated.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from game import view

STRATEGIES = ("eager", "slow", "random", "human")


class _Session(Protocol):
    client_id: str

    def poll(self) -> None: ...

    @property
    def state(self) -> dict | None: ...

    def submit(self, cmd: dict) -> Any: ...

    def leader_time_ms(self) -> int: ...


@dataclass
class Bot:
    name: str
    session: _Session
    strategy: str = "eager"
    rng: random.Random = field(default_factory=random.Random)
    games_to_play: int = 0  # 0 = forever
    rematch_after_s: float = 2.0
    lobby_wait_s: float = 3.0  # hosting bots only: how long the lobby stays open
    clock: Callable[[], float] = time.monotonic
    # who at the table is a person (a room keeps its bots in its seats, not on the table)
    people: Callable[[dict[str, Any]], list[str]] = field(default=lambda state: people_at(state))
    # whether a hosting bot may start now (a bot farm holds a room until its bots are in)
    may_start: Callable[[dict[str, Any]], bool] = field(default=lambda state: True)
    hits_sent: int = 0
    hits_won: int = 0
    games_seen: int = 0
    _busy: Any = None
    _next_action: float = 0.0
    _last_game: int = -1
    _over_since: float | None = None
    _name_tries: int = 0
    _aim_at: float | None = None
    _could_start_since: float | None = None
    _busy_cmd: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; use one of {STRATEGIES}")

    def done(self) -> bool:
        return bool(self.games_to_play) and self.games_seen >= self.games_to_play

    def step(self) -> None:
        """One decision; call after ``session.poll()``. Never blocks."""
        state = self.session.state
        if state is None:
            return
        if self._busy is not None:
            if not self._busy.done:
                return
            self._note_result(self._busy)
            self._busy = None
        now = self.clock()
        if now < self._next_action:
            return
        me = view.player_of(state, self.session.client_id)
        phase = view.phase(state)
        gs = state["game_state"]
        if phase == "game_over" and gs["game_number"] != self._last_game:
            self._last_game = gs["game_number"]
            self._over_since = now
            if me is not None and me in state["scores"]:
                self.games_seen += 1  # a game this bot played in, not one it found over
        if me is None:
            name = self.name if not self._name_tries else f"{self.name}-{self._name_tries + 1}"
            self._send({"type": "join", "name": name, "bot": True})
            return
        if view.needs_ping(state, self.session.client_id, self.session.leader_time_ms()):
            self._send({"type": "ping"})  # quiet (e.g. waiting for a rematch): stay seated
            return
        player = state["players"][me]
        # the host's calls are a person's to make whenever a person is at the table
        leads = gs["host"] == me and not self.people(state) and not self.done()
        if phase != "lobby" or not leads:
            self._could_start_since = None
        if phase == "lobby":
            if not player["ready"]:
                self._send({"type": "ready", "ready": True})
            elif leads:
                ready = sum(1 for p in state["players"].values() if p["ready"] and not p["spectator"])
                if ready < 2:
                    self._could_start_since = None
                elif self._could_start_since is None:
                    self._could_start_since = now
                elif now - self._could_start_since >= self.lobby_wait_s and self.may_start(state):
                    self._send({"type": "start"})
        elif phase == "round" and not player["spectator"]:
            targets = view.open_targets(state)
            if targets:
                self._hit(state, targets, now)
        elif phase == "game_over" and leads:
            if self._over_since is not None and now - self._over_since >= self.rematch_after_s:
                self._send({"type": "rematch"})

    def _hit(self, state: dict, targets: list[dict], now: float) -> None:
        if self.strategy != "eager" and self._aim_at is None:
            # think before each hit (not after): a round's first target is no freebie
            pause = {"slow": (0.8, 2.0), "human": (0.5, 1.0)}.get(self.strategy, (0.2, 1.2))
            self._aim_at = now + self.rng.uniform(*pause)
        if self._aim_at is not None and now < self._aim_at:
            return
        self._aim_at = None
        target = targets[0] if self.strategy == "eager" else self.rng.choice(targets)
        self.hits_sent += 1
        self._send({"type": "hit", "round": state["current_round"]["number"],
                    "target": target["id"]})

    def _send(self, cmd: dict) -> None:
        self._busy = self.session.submit(cmd)
        self._busy_cmd = cmd

    def _note_result(self, pending: Any) -> None:
        result = getattr(pending, "result", None)
        kind = self._busy_cmd.get("type")
        if isinstance(result, dict) and result.get("ok") and kind == "hit":
            self.hits_won += 1
        elif isinstance(result, dict) and not result.get("ok"):
            if kind == "join" and result.get("error") == "name_taken":
                self._name_tries += 1
            elif kind != "hit":
                # a refusal will not change until the state does: do not hammer the log
                self._next_action = self.clock() + self.rng.uniform(0.2, 0.5)
        if getattr(pending, "error", None):
            self._next_action = self.clock() + 0.05  # the session is failing over

    def leave(self, timeout: float = 1.0) -> None:
        """Leave the table (so a departed host hands over), waiting briefly."""
        state = self.session.state
        if state is None or view.player_of(state, self.session.client_id) is None:
            return
        p = self.session.submit({"type": "leave"})
        end = time.monotonic() + timeout
        while not p.done and time.monotonic() < end:
            self.session.poll()
            time.sleep(0.005)


def people_at(state: dict[str, Any]) -> list[str]:
    """Members who joined as people (not with ``bot: true``)."""
    return [name for name, p in state["players"].items() if not p.get("bot", False)]


# --- what the bots are doing, as one line ------------------------------------------------


def progress_line(bots: list[Bot], state: dict[str, Any] | None) -> str:
    """One line on the table and each bot, e.g.
    ``game 3 round 2/3 | bot1 4 pts, 11/19 hits won, 2 games | bot2 ...``; in the lobby a
    bot is "ready" or "seated", during a game "N pts" (this game) or "watching"."""
    if state is None:
        return "bots: connecting..."
    gs, phase = state["game_state"], view.phase(state)
    where = {
        "lobby": f"lobby (game {gs['game_number'] + 1} next)",
        "countdown": f"game {gs['game_number']} countdown",
        "round": f"game {gs['game_number']} round {state['current_round']['number']}/"
        f"{state['config']['rounds']}",
        "intermission": f"game {gs['game_number']} intermission",
        "game_over": f"game {gs['game_number']} over",
    }[phase]
    people = people_at(state)
    if people:
        where += f", {len(people)} {'person' if len(people) == 1 else 'people'} (host {gs['host']})"
    parts = [where]
    for b in bots:
        me = view.player_of(state, b.session.client_id)
        if me is None:
            parts.append(f"{b.name} joining")
            continue
        player = state["players"][me]
        if player["spectator"]:
            doing = "watching"
        elif phase == "lobby":
            doing = "ready" if player["ready"] else "seated"
        else:
            doing = f"{state['scores'].get(me, 0)} pts"
        parts.append(f"{me} {doing}, {b.hits_won}/{b.hits_sent} hits won, {b.games_seen} games")
    return " | ".join(parts)


class ProgressPrinter:
    """Shows ``progress_line`` as it changes: rewritten in place on a terminal, one line
    per change (at most every ``every_s``) otherwise, so a log stays readable."""

    def __init__(self, out: TextIO | None = None, every_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out or sys.stdout
        self.every_s = every_s
        self.clock = clock
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._last = ""
        self._at = -1e9
        self._width = 0

    def __call__(self, line: str) -> None:
        now = self.clock()
        if line == self._last or now - self._at < self.every_s:
            return
        self._last, self._at = line, now
        if self.tty:
            pad = max(0, self._width - len(line))
            self.out.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()


def run_bots(bots: list[Bot], sessions: list[Any], duration: float | None = None,
             poll_every: float = 0.005,
             report: Callable[[str], None] | None = None) -> None:
    """Drive bots until all are done (or ``duration`` passes, or Ctrl-C); ``report``
    gets ``progress_line`` after every turn (``ProgressPrinter`` shows it)."""
    end = time.monotonic() + duration if duration else None
    try:
        while not all(b.done() for b in bots):
            if end is not None and time.monotonic() >= end:
                break
            for s in sessions:
                s.poll()
            for b in bots:
                b.step()
            if report is not None and sessions:
                report(progress_line(bots, sessions[0].state))
            time.sleep(poll_every)
    except KeyboardInterrupt:
        pass
    finally:
        for b in bots:
            b.leave()
