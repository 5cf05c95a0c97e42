"""A ``GameSession`` without a network: the rules run here, on a ``LocalTable``.

It behaves like the real session where the window can tell: the state is None
until the first ``poll``; a submitted command is applied on a later ``poll``
(after ``latency_s``), never inside ``submit``; the leader proposes a ``tick``
when a phase deadline passes. The leader clock (``table.clock_ms``) advances
by the time ``clock`` reports between polls, so tests pass a scripted clock
(and may still ``table.wait``) while the demo passes ``time.monotonic``.

For the offline demo it can also play opponents (``add_opponent``) and act out
a three-node cluster that loses its leader now and then (``fail_leader``),
with the failover notice the real session would raise.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from game import view
from game.config import GameConfig
from game.local import LocalTable
from game.state import config_of
from game.timeline import transition_due

from .viewmodel import NodeRow, Notice, Pending

LEADER_CLIENT = "leader"  # the client id the simulated leader proposes ticks under


@dataclass(slots=True)
class _Queued:
    due: float
    client_id: str
    command: dict
    pending: Pending


@dataclass(slots=True)
class Opponent:
    """A simulated player (joins as a bot, so the window's person hosts): joins, gets
    ready, starts when hosting, shoots now and then."""

    name: str
    client_id: str
    rng: random.Random
    aim_s: tuple[float, float] = (2.0, 5.0)  # pause between shots
    lobby_wait_s: float = 3.0  # as host, how long to leave the lobby open once it could start
    rematch_after_s: float = 6.0
    _busy: Pending | None = None
    _next_shot: float = 0.0
    _since: float | None = None  # when the host could first start / the game ended

    def step(self, session: FakeSession, now: float) -> None:
        if self._busy is not None and not self._busy.done:
            return
        state = session.table.state
        me = view.player_of(state, self.client_id)
        if me is None:
            self._send(session, {"type": "join", "name": self.name, "bot": True})
            return
        phase, host = view.phase(state), state["game_state"]["host"]
        player = state["players"][me]
        if phase == "lobby" and not player["ready"]:
            self._send(session, {"type": "ready", "ready": True})
        elif phase == "lobby" and host == me and _can_start(state):
            self._after(now, self.lobby_wait_s, session, {"type": "start"})
        elif phase == "round" and not player["spectator"] and now >= self._next_shot:
            targets = view.open_targets(state)
            if targets:
                target = self.rng.choice(targets)
                number = state["current_round"]["number"]
                self._send(session, {"type": "hit", "round": number, "target": target["id"]})
                self._next_shot = now + self.rng.uniform(*self.aim_s)
        elif phase == "game_over" and host == me:
            self._after(now, self.rematch_after_s, session, {"type": "rematch"})
        else:
            self._since = None
        if phase == "countdown":
            self._next_shot = now + self.rng.uniform(*self.aim_s)  # nobody shoots on "go"

    def _after(self, now: float, wait_s: float, session: FakeSession, cmd: dict) -> None:
        if self._since is None:
            self._since = now
        elif now - self._since >= wait_s:
            self._since = None
            self._send(session, cmd)

    def _send(self, session: FakeSession, cmd: dict) -> None:
        self._busy = session.submit_as(self.client_id, cmd)


def _can_start(state: dict[str, Any]) -> bool:
    config = config_of(state)
    active = [p for p in state["players"].values() if not p["spectator"]]
    return (
        len(active) >= config.min_players
        and sum(1 for p in active if p["ready"]) >= config.ready_to_start
    )


@dataclass(slots=True)
class _Election:
    lost: str
    lost_at: float
    ends_at: float


@dataclass
class FakeSession:
    """The window's session over a local table; see the module docstring."""

    table: LocalTable = field(default_factory=LocalTable)
    client_id: str = "me"
    clock: Callable[[], float] = time.monotonic
    latency_s: float = 0.0
    rtt_ms: float | None = 0.4
    nodes: list[NodeRow] = field(
        default_factory=lambda: [
            NodeRow("n1", "leader", 1, True),
            NodeRow("n2", "follower", 1, False),
            NodeRow("n3", "follower", 1, False),
        ]
    )
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    failover_every_s: float | None = None  # demo: lose the leader this often
    offline: bool = False  # the offline demo: the window says its cluster is simulated
    opponents: list[Opponent] = field(default_factory=list)
    closed: bool = False
    polls: int = 0
    _queue: list[_Queued] = field(default_factory=list)
    _notices: list[Notice] = field(default_factory=list)
    _loaded: bool = False
    _last_poll: float | None = None
    _election: _Election | None = None
    _next_failover: float | None = None
    _restarts: list[tuple[float, str]] = field(default_factory=list)

    @classmethod
    def with_opponents(
        cls,
        name: str = "you",
        opponents: tuple[str, ...] = ("bob", "cy"),
        seed: int = 1,
        config: GameConfig | None = None,
    ) -> FakeSession:
        """A live table for the offline window: opponents, a little latency, failovers.

        ``name`` is the window's player name; an opponent of the same name is renamed
        so the window's join is not refused.
        """
        rng = random.Random(seed)
        session = cls(
            LocalTable(config, seed=seed),
            client_id=f"window-{name}",
            latency_s=0.06,
            rtt_ms=1.2,
            rng=rng,
            failover_every_s=30.0,
            offline=True,
        )
        for i, opponent in enumerate(opponents):
            clash = opponent.casefold() == name.casefold()
            session.add_opponent(f"{opponent[:12]}-bot" if clash else opponent, f"sim-{i}")
        return session

    def add_opponent(self, name: str, client_id: str) -> Opponent:
        opponent = Opponent(name, client_id, random.Random(f"{self.rng.random()}:{name}"))
        self.opponents.append(opponent)
        return opponent

    # --- the GameSession interface ------------------------------------------------------

    def poll(self) -> None:
        now = self.clock()
        if self._last_poll is not None:
            self.table.clock_ms += max(0, round((now - self._last_poll) * 1000))
        self._last_poll = now
        self._loaded = True
        self.polls += 1
        self._run_cluster(now)
        for opponent in self.opponents:
            opponent.step(self, now)
        if self._leader() is not None:
            self._apply_due(now)
            if transition_due(self.table.state, self.table.clock_ms):
                self.table.tick(LEADER_CLIENT)

    @property
    def state(self) -> dict | None:
        return self.table.state if self._loaded else None

    @property
    def state_index(self) -> int:
        return self.table.index if self._loaded else 0

    @property
    def cluster(self) -> list[NodeRow]:
        return list(self.nodes)

    def submit(self, cmd: dict) -> Pending:
        return self.submit_as(self.client_id, cmd)

    def submit_as(self, client_id: str, cmd: dict) -> Pending:
        """Queue ``cmd`` from any session of this table; it applies on a later poll."""
        pending = Pending()
        self._queue.append(_Queued(self.clock() + self.latency_s, client_id, cmd, pending))
        return pending

    def drain_notices(self) -> list[Notice]:
        out, self._notices = self._notices, []
        return out

    def leader_time_ms(self) -> int:
        if self._last_poll is None:
            return self.table.clock_ms
        return self.table.clock_ms + round((self.clock() - self._last_poll) * 1000)

    def close(self) -> None:
        self.closed = True

    # --- test and demo hooks ------------------------------------------------------------

    def notify(self, kind: str, text: str) -> None:
        self._notices.append(Notice(kind, text, time.time()))

    def fail_leader(self, election_s: float | None = None) -> str | None:
        """The leader goes down; another node wins an election ``election_s`` later."""
        leader = self._leader()
        if leader is None:
            return None
        now = self.clock()
        ends = now + (election_s if election_s is not None else self.rng.uniform(0.18, 0.32))
        self._election = _Election(leader.id, now, ends)
        self._set(leader.id, role="down", connected=False)
        for node in self.nodes:
            if node.role == "follower":
                self._set(node.id, role="candidate", term=node.term + 1)
                break
        return leader.id

    # --- internals ---------------------------------------------------------------------

    def _apply_due(self, now: float) -> None:
        due = [q for q in self._queue if q.due <= now]
        self._queue = [q for q in self._queue if q.due > now]
        for q in due:
            q.pending.result = self.table.submit(q.client_id, q.command)
            q.pending.done = True

    def _leader(self) -> NodeRow | None:
        return next((n for n in self.nodes if n.role == "leader"), None)

    def _set(self, node_id: str, **changes: Any) -> None:
        self.nodes = [
            NodeRow(
                n.id,
                changes.get("role", n.role),
                changes.get("term", n.term),
                changes.get("connected", n.connected),
            )
            if n.id == node_id
            else n
            for n in self.nodes
        ]

    def _run_cluster(self, now: float) -> None:
        if self.failover_every_s is not None:
            if self._next_failover is None:
                self._next_failover = now + min(11.0, self.failover_every_s)
            elif now >= self._next_failover and self._election is None:
                self._next_failover = now + self.failover_every_s
                lost = self.fail_leader()
                if lost is not None:
                    self._restarts.append((now + 6.0, lost))
        election = self._election
        if election is not None and now >= election.ends_at:
            self._election = None
            winner = next((n for n in self.nodes if n.role == "candidate"), None)
            if winner is not None:
                for node in self.nodes:
                    if node.role != "down":
                        self._set(node.id, role="follower", term=winner.term, connected=False)
                self._set(winner.id, role="leader", connected=True)
                ms = (now - election.lost_at) * 1000
                self.notify(
                    "failover", f"leader {election.lost} lost, {winner.id} elected, {ms:.0f} ms"
                )
        for at, node_id in list(self._restarts):
            if now >= at:
                self._restarts.remove((at, node_id))
                term = max(n.term for n in self.nodes)
                self._set(node_id, role="follower", term=term)
