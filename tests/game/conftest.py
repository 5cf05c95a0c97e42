"""Tables in the states most tests start from; all run under a scripted leader clock."""

from __future__ import annotations

import pytest

from game.config import GameConfig
from game.local import LocalTable

CONFIG = GameConfig()  # the defaults: 3 rounds of 5 targets, 20 s rounds, 3 s countdown


@pytest.fixture
def table() -> LocalTable:
    """An empty lobby."""
    return LocalTable(CONFIG, seed=7)


@pytest.fixture
def lobby(table: LocalTable) -> LocalTable:
    """ann (session c1, host) and bob (c2) in the lobby, both ready."""
    for client, name in (("c1", "ann"), ("c2", "bob")):
        assert table.do(client, "join", name=name)["ok"]
        assert table.do(client, "ready", ready=True)["ok"]
    return table


@pytest.fixture
def countdown(lobby: LocalTable) -> LocalTable:
    """The host has started; the countdown runs."""
    assert lobby.do("c1", "start")["ok"]
    return lobby


@pytest.fixture
def in_round(countdown: LocalTable) -> LocalTable:
    """Round 1 of game 1 is running, nothing hit yet."""
    countdown.wait(CONFIG.countdown_ms)
    assert countdown.tick()["ok"]
    assert countdown.state["game_state"]["phase"] == "round"
    return countdown


@pytest.fixture
def game_over(in_round: LocalTable) -> LocalTable:
    """Game 1 played to the end by the clock: ann took target 0 of round 1, bob nothing."""
    assert in_round.do("c1", "hit", round=1, target=0)["ok"]
    for _ in range(CONFIG.rounds - 1):
        in_round.wait(CONFIG.round_ms)
        in_round.tick()
        in_round.wait(CONFIG.intermission_ms)
        in_round.tick()
    in_round.wait(CONFIG.round_ms)
    in_round.tick()
    assert in_round.state["game_state"]["phase"] == "game_over"
    return in_round
