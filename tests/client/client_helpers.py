"""Tables in the states the window tests start from, a scripted clock, a polled session."""

from __future__ import annotations

from client.fake import FakeSession
from client.viewmodel import NodeRow, UiState
from game.config import GameConfig
from game.local import LocalTable

CONFIG = GameConfig()  # 3 rounds of 5 targets, 20 s rounds, 3 s countdown, 1000 x 700
SIZE = (1200, 800)


class ScriptedClock:
    """Seconds that move only when a test says so."""

    def __init__(self, start: float = 100.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def lobby_table() -> LocalTable:
    """ann (c1, host, ready), bob (c2, ready), cy (c3, not ready) in the lobby."""
    table = LocalTable(CONFIG, seed=7)
    for client, name in (("c1", "ann"), ("c2", "bob"), ("c3", "cy")):
        assert table.do(client, "join", name=name)["ok"]
    assert table.do("c1", "ready", ready=True)["ok"]
    assert table.do("c2", "ready", ready=True)["ok"]
    return table


def round_table() -> LocalTable:
    """Round 1 of game 1 running; bob took target 1, ann target 2; dee (c4) spectates."""
    table = lobby_table()
    assert table.do("c1", "start")["ok"]
    assert table.do("c4", "join", name="dee")["spectator"]
    table.wait(CONFIG.countdown_ms)
    assert table.tick()["ok"]
    assert table.do("c2", "hit", round=1, target=1)["ok"]
    assert table.do("c1", "hit", round=1, target=2)["ok"]
    return table


def game_over_table() -> LocalTable:
    """Game 1 over by the clock: ann 1 point, bob 1, cy 0 (ann and bob tie)."""
    table = round_table()
    for _ in range(CONFIG.rounds - 1):
        table.wait(CONFIG.round_ms)
        table.tick()
        table.wait(CONFIG.intermission_ms)
        table.tick()
    table.wait(CONFIG.round_ms)
    table.tick()
    assert table.state["game_state"]["phase"] == "game_over"
    return table


def session_for(table: LocalTable, clock: ScriptedClock, client_id: str = "c1") -> FakeSession:
    """A polled session of ``client_id`` on ``table``: three nodes, n2 leads, we talk to n1."""
    session = FakeSession(
        table,
        client_id=client_id,
        clock=clock,
        rtt_ms=0.7,
        nodes=[
            NodeRow("n1", "follower", 4, True),
            NodeRow("n2", "leader", 4, False),
            NodeRow("n3", "down", 3, False),
        ],
    )
    session.poll()
    return session


def ui_for(name: str = "ann", size: tuple[int, int] = SIZE) -> UiState:
    return UiState(name, size)
