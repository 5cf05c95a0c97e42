"""Bots: they follow the people at a table, and say what they are doing."""

from __future__ import annotations

import io
import random
from typing import Any

from client_helpers import CONFIG, ScriptedClock

from client.bots import Bot, ProgressPrinter, progress_line
from client.fake import FakeSession
from client.viewmodel import Pending
from game.local import LocalTable


class Seat:
    """One more client of a FakeSession's table (the bots share one table and clock)."""

    def __init__(self, session: FakeSession, client_id: str) -> None:
        self.session, self.client_id = session, client_id

    def poll(self) -> None:
        pass  # the table's own session polls once per turn

    @property
    def state(self) -> dict | None:
        return self.session.state

    def submit(self, cmd: dict) -> Pending:
        return self.session.submit_as(self.client_id, cmd)

    def leader_time_ms(self) -> int:
        return self.session.leader_time_ms()


def _table(clock: ScriptedClock, bots: int, lobby_wait_s: float) -> tuple[FakeSession, list[Bot]]:
    session = FakeSession(LocalTable(CONFIG, seed=5), client_id="c1", clock=clock)
    players = [
        Bot(f"bot{i + 1}", Seat(session, f"b{i + 1}"), "eager", random.Random(i),
            lobby_wait_s=lobby_wait_s, clock=clock)
        for i in range(bots)
    ]
    return session, players


def _turns(session: FakeSession, bots: list[Bot], clock: ScriptedClock, seconds: float) -> None:
    for _ in range(round(seconds / 0.05)):
        clock.advance(0.05)
        session.poll()
        for b in bots:
            b.step()


def _phase(session: FakeSession) -> str:
    return session.table.state["game_state"]["phase"]


def test_with_a_person_at_the_table_bots_ready_up_and_wait_for_the_persons_start(
    clock: ScriptedClock,
) -> None:
    """Issue 10 item 3: the bots hosted and started game after game; a person's R got
    "cannot change ready during round"."""
    session, bots = _table(clock, 2, lobby_wait_s=3.0)
    session.poll()
    _turns(session, bots, clock, 0.5)  # the bots are seated first: bot1 hosts
    assert session.table.state["game_state"]["host"] == "bot1"
    session.submit({"type": "join", "name": "ann"})
    _turns(session, bots, clock, 10.0)  # far beyond lobby_wait_s
    state = session.table.state
    assert state["game_state"]["host"] == "ann"
    assert _phase(session) == "lobby"  # nobody started without the person
    assert state["players"]["bot1"]["ready"] and state["players"]["bot2"]["ready"]
    ready = session.submit({"type": "ready", "ready": True})
    start = session.submit({"type": "start"})
    _turns(session, bots, clock, 0.1)
    assert ready.accepted and start.accepted and _phase(session) == "countdown"


def test_bots_alone_start_once_the_lobby_has_been_open_a_while(clock: ScriptedClock) -> None:
    session, bots = _table(clock, 2, lobby_wait_s=3.0)
    session.poll()
    _turns(session, bots, clock, 2.5)
    assert _phase(session) == "lobby"  # room for people who are still arriving
    _turns(session, bots, clock, 1.5)
    assert _phase(session) == "countdown"


def test_at_game_over_bots_leave_the_rematch_to_the_person_hosting(clock: ScriptedClock) -> None:
    session, bots = _table(clock, 2, lobby_wait_s=3.0)
    session.poll()
    _turns(session, bots, clock, 0.5)
    session.submit({"type": "join", "name": "ann"})
    session.submit({"type": "ready", "ready": True})
    _turns(session, bots, clock, 0.5)
    session.submit({"type": "start"})
    _turns(session, bots, clock, 0.1)
    game_s = (CONFIG.countdown_ms + CONFIG.rounds * CONFIG.round_ms
              + (CONFIG.rounds - 1) * CONFIG.intermission_ms) / 1000
    for _ in range(round(game_s)):  # the person pings now and then, as a window does
        _turns(session, bots, clock, 1.0)
        session.submit({"type": "ping"})
    _turns(session, bots, clock, 1.0)
    assert _phase(session) == "game_over"
    _turns(session, bots, clock, 5.0)  # well past the bots' rematch_after_s
    assert _phase(session) == "game_over"
    assert sum(b.hits_won for b in bots) == sum(session.table.state["scores"].values())


def test_the_progress_line_names_the_game_and_each_bots_points(clock: ScriptedClock) -> None:
    session, bots = _table(clock, 2, lobby_wait_s=0.0)
    assert progress_line(bots, None) == "bots: connecting..."
    session.poll()
    assert progress_line(bots, session.state).endswith("bot1 joining | bot2 joining")
    _turns(session, bots, clock, 0.1)  # seated (the readies are on their way)
    assert progress_line(bots, session.state) == (
        "lobby (game 1 next) | bot1 seated, 0/0 hits won, 0 games"
        " | bot2 seated, 0/0 hits won, 0 games"
    )
    _turns(session, bots, clock, 5.0)  # started, counted down, shooting
    line = progress_line(bots, session.state)
    state: Any = session.state
    points = state["scores"]
    assert line.startswith(("game 1 round 1/3 | bot1 ", "game 1 intermission | bot1 "))
    for b in bots:
        assert f"{b.name} {points[b.name]} pts, {b.hits_won}/{b.hits_sent} hits won, 0 games" in line
    assert b.hits_sent > 0


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_printer_rewrites_one_line_on_a_terminal_and_logs_changes_elsewhere(
    clock: ScriptedClock,
) -> None:
    log, tty = io.StringIO(), Tty()
    to_log, to_tty = ProgressPrinter(log, 0.5, clock), ProgressPrinter(tty, 0.5, clock)
    for line in ("game 1 round 1/3 | bot1 0 pts", "game 1 round 1/3 | bot1 0 pts",
                 "game 1 round 1/3 | bot1 1 pts", "game 1 round 2/3 | b 3"):
        to_log(line)
        to_tty(line)
        clock.advance(0.3)
    to_tty.close()
    # unchanged lines, and changes within every_s of the last one shown, are skipped
    assert log.getvalue() == "game 1 round 1/3 | bot1 0 pts\ngame 1 round 1/3 | bot1 1 pts\n"
    assert tty.getvalue() == (
        "\rgame 1 round 1/3 | bot1 0 pts\rgame 1 round 1/3 | bot1 1 pts\n"
    )
