"""The ViewModel holds what the window must show, computed from the committed state."""

from __future__ import annotations

import pytest
from client_helpers import (
    CONFIG,
    SIZE,
    ScriptedClock,
    game_over_table,
    lobby_table,
    round_table,
    session_for,
    ui_for,
)

from client.fake import FakeSession
from client.viewmodel import Layout, NodeRow, Quorum, build_view


def test_before_the_first_snapshot_the_view_says_it_is_connecting(clock: ScriptedClock) -> None:
    session = FakeSession(clock=clock)  # never polled: no state yet
    vm = build_view(session, ui_for(), clock())
    assert vm.status == "connecting" and vm.phase is None
    assert vm.targets == () and vm.time_left_ms is None
    assert [node.id for node in vm.cluster] == ["n1", "n2", "n3"]


def test_lobby_view_lists_members_in_join_order_with_ready_marks_and_host(
    clock: ScriptedClock,
) -> None:
    vm = build_view(session_for(lobby_table(), clock, "c2"), ui_for("bob"), clock())
    assert vm.phase == "lobby" and vm.status == "playing" and vm.me == "bob"
    assert [(r.name, r.ready, r.host, r.me) for r in vm.members] == [
        ("ann", True, True, False),
        ("bob", True, False, True),
        ("cy", False, False, False),
    ]
    assert vm.targets == () and vm.time_left_ms is None
    assert vm.lobby_hint == "2 of 3 ready: waiting for ann to start"


def test_lobby_hint_tells_the_host_to_press_s(clock: ScriptedClock) -> None:
    vm = build_view(session_for(lobby_table(), clock, "c1"), ui_for("ann"), clock())
    assert "press S to start" in vm.lobby_hint


def test_round_view_has_every_target_with_its_taker_and_the_standings(
    clock: ScriptedClock,
) -> None:
    table = round_table()
    vm = build_view(session_for(table, clock, "c1"), ui_for("ann"), clock())
    assert vm.phase == "round" and (vm.round_number, vm.rounds_total) == (1, 3)
    committed = table.state["current_round"]["targets"]
    assert [(t.id, t.x, t.y, t.r) for t in vm.targets] == [
        (t["id"], t["x"], t["y"], t["r"]) for t in committed
    ]
    assert {t.id: (t.taken_by, t.mine) for t in vm.targets if t.taken_by} == {
        1: ("bob", False),
        2: ("ann", True),
    }
    assert [(r.name, r.score) for r in vm.standings] == [("ann", 1), ("bob", 1), ("cy", 0)]
    assert vm.spectators == ("dee",)
    assert vm.can_shoot


def test_round_timer_counts_down_from_the_leader_time_estimate(clock: ScriptedClock) -> None:
    table = round_table()
    session = session_for(table, clock, "c1")
    assert build_view(session, ui_for(), clock()).time_left_ms == CONFIG.round_ms
    clock.advance(1.5)  # no poll yet: the estimate adds the local time since the last one
    assert build_view(session, ui_for(), clock()).time_left_ms == CONFIG.round_ms - 1500
    session.poll()
    table.wait(2000)  # and committed leader time moves it further
    assert build_view(session, ui_for(), clock()).time_left_ms == CONFIG.round_ms - 3500


def test_a_spectator_cannot_shoot_and_is_told_why(clock: ScriptedClock) -> None:
    vm = build_view(session_for(round_table(), clock, "c4"), ui_for("dee"), clock())
    assert vm.status == "spectating" and not vm.can_shoot
    assert "next game" in vm.status_text


def test_game_over_view_names_the_winners_and_final_standings(clock: ScriptedClock) -> None:
    vm = build_view(session_for(game_over_table(), clock, "c3"), ui_for("cy"), clock())
    assert vm.phase == "game_over" and vm.time_left_ms is None
    assert vm.winners == ("ann", "bob")
    assert [(r.name, r.score, r.winner) for r in vm.standings] == [
        ("ann", 1, True),
        ("bob", 1, True),
        ("cy", 0, False),
    ]
    assert vm.leaderboard[:2] == (("ann", 1, 1), ("bob", 1, 1))


def test_cluster_rows_come_from_the_session_with_rtt_and_index(clock: ScriptedClock) -> None:
    table = round_table()
    vm = build_view(session_for(table, clock), ui_for(), clock())
    assert vm.cluster == (
        NodeRow("n1", "follower", 4, True),
        NodeRow("n2", "leader", 4, False),
        NodeRow("n3", "down", 3, False),
    )
    assert vm.rtt_ms == 0.7 and vm.state_index == table.index


def test_layout_keeps_the_arena_aspect_and_maps_both_ways() -> None:
    for size in (SIZE, (800, 600), (1920, 1080), (300, 200)):
        layout = Layout.fit(size, 1000, 700, 3)
        x, y, w, h = layout.arena
        assert abs(w / h - 1000 / 700) < 0.01
        assert x >= 0 and x + w <= layout.sidebar[0]
        for gx, gy in ((0, 0), (500, 350), (1000, 700), (123, 456)):
            sx, sy = layout.to_screen(gx, gy)
            back = layout.to_game(sx, sy)
            assert abs(back[0] - gx) <= 1 / layout.scale and abs(back[1] - gy) <= 1 / layout.scale


def test_target_at_finds_only_open_targets_under_the_point(clock: ScriptedClock) -> None:
    vm = build_view(session_for(round_table(), clock), ui_for(), clock())
    for t in vm.targets:
        sx, sy = vm.layout.to_screen(t.x, t.y)
        found = vm.target_at(sx, sy)
        assert (found.id if found else None) == (t.id if t.taken_by is None else None)
    assert vm.target_at(*vm.layout.to_screen(-50, -50)) is None


@pytest.mark.parametrize(
    ("roles", "lost", "text"),
    [
        (("unknown", "unknown", "unknown"), False, ""),  # nothing heard yet: "connecting"
        (("leader", "follower", "down"), False, ""),
        (("candidate", "candidate", "down"), False, ""),  # an election, with a majority
        (("pre-candidate", "down", "down"), True, "no majority: 1 of 3 nodes reachable, waiting"),
        (("down", "down", "down"), True, "no majority: 0 of 3 nodes reachable, waiting"),
        (("leader", "follower", "down", "down", "down"), True,
         "no majority: 2 of 5 nodes reachable, waiting"),
        (("leader", "follower", "follower", "down", "down"), False, ""),
    ],
)
def test_quorum_is_lost_when_fewer_than_a_majority_of_nodes_are_heard(
    roles: tuple[str, ...], lost: bool, text: str
) -> None:
    quorum = Quorum.of([NodeRow(f"n{i}", role, 1, i == 0) for i, role in enumerate(roles)])
    assert quorum.lost is lost and quorum.text == text
