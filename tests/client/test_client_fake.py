"""FakeSession behaves like the network session where the window can tell."""

from __future__ import annotations

from client_helpers import CONFIG, ScriptedClock, lobby_table, round_table, session_for

from client.fake import FakeSession
from client.viewmodel import NodeRow


def test_no_state_before_the_first_poll_and_commands_apply_on_a_later_poll(
    clock: ScriptedClock,
) -> None:
    session = FakeSession(lobby_table(), client_id="c9", clock=clock, latency_s=0.05)
    assert session.state is None and session.state_index == 0
    pending = session.submit({"type": "join", "name": "eve"})
    session.poll()
    assert session.state is not None and not pending.done  # still "on the wire"
    clock.advance(0.05)
    session.poll()
    assert pending.done and pending.accepted and "eve" in session.state["players"]


def test_the_leader_ticks_when_a_phase_deadline_passes(clock: ScriptedClock) -> None:
    session = session_for(round_table(), clock)
    clock.advance(CONFIG.round_ms / 1000)
    session.poll()
    assert session.state is not None and session.state["game_state"]["phase"] == "intermission"


def test_a_lost_leader_is_replaced_with_a_failover_notice(clock: ScriptedClock) -> None:
    session = FakeSession(lobby_table(), client_id="c1", clock=clock)
    session.poll()
    assert session.fail_leader(election_s=0.25) == "n1"
    pending = session.submit({"type": "ready", "ready": False})
    session.poll()
    assert [n.role for n in session.cluster] == ["down", "candidate", "follower"]
    assert not pending.done  # no leader, no commit
    clock.advance(0.25)
    session.poll()
    assert session.cluster == [
        NodeRow("n1", "down", 1, False),
        NodeRow("n2", "leader", 2, True),
        NodeRow("n3", "follower", 2, False),
    ]
    assert pending.accepted
    assert [(n.kind, n.text) for n in session.drain_notices()] == [
        ("failover", "leader n1 lost, n2 elected, 250 ms")
    ]
    assert session.drain_notices() == []


def test_demo_opponents_play_a_whole_game_and_call_a_rematch(clock: ScriptedClock) -> None:
    session = FakeSession.with_opponents("you", ("bob", "cy"), seed=5)
    session.clock = clock
    phases: list[str] = []
    for _ in range(2000):  # 200 s of scripted time in 0.1 s steps
        session.poll()
        phase = session.table.state["game_state"]["phase"]
        if not phases or phases[-1] != phase:
            phases.append(phase)
        clock.advance(0.1)
    assert phases[:4] == ["lobby", "countdown", "round", "intermission"]
    assert "game_over" in phases and phases.count("lobby") >= 2  # rematch went back to the lobby
    assert session.table.state["leaderboard"]
    assert any(n.kind == "failover" for n in session.drain_notices())


def test_an_opponent_named_like_the_window_player_is_renamed(clock: ScriptedClock) -> None:
    session = FakeSession.with_opponents("Bob", ("bob", "cy"))
    assert [o.name for o in session.opponents] == ["bob-bot", "cy"]
