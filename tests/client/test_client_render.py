"""Drawing: the pixels show the view, at positions computed from its layout."""

from __future__ import annotations

import copy

import pygame
import pytest
from client_helpers import (
    SIZE,
    ScriptedClock,
    game_over_table,
    lobby_table,
    round_table,
    session_for,
    ui_for,
)

from client import render
from client.fake import FakeSession
from client.viewmodel import NodeRow, Rect, ViewModel, build_view, seconds_left

Colour = tuple[int, int, int]


def _pixel(surface: pygame.Surface, pos: tuple[int, int]) -> Colour:
    return tuple(surface.get_at(pos))[:3]  # type: ignore[return-value]


def _colours_in(surface: pygame.Surface, rect: Rect) -> set[Colour]:
    area = surface.subsurface(pygame.Rect(rect).clip(surface.get_rect()))
    return {_pixel(area, (x, y)) for x in range(area.get_width()) for y in range(area.get_height())}


def _near(a: Colour, b: Colour, tolerance: int = 40) -> bool:
    return all(abs(p - q) <= tolerance for p, q in zip(a, b, strict=True))


def _drawn(vm: ViewModel, size: tuple[int, int] = SIZE) -> pygame.Surface:
    surface = pygame.Surface(size)
    render.draw(surface, vm, render.load_fonts())
    return surface


def _round_view(clock: ScriptedClock, size: tuple[int, int] = SIZE) -> ViewModel:
    return build_view(session_for(round_table(), clock), ui_for(size=size), clock())


@pytest.mark.parametrize("size", [SIZE, (800, 600), (1920, 1080)])
def test_open_and_taken_targets_are_drawn_where_the_layout_puts_them(
    display: pygame.Surface, clock: ScriptedClock, size: tuple[int, int]
) -> None:
    vm = _round_view(clock, size)
    surface = _drawn(vm, size)
    for t in vm.targets:
        cx, cy = vm.layout.to_screen(t.x, t.y)
        if t.taken_by is None:
            assert _pixel(surface, (cx, cy)) == render.TARGET, t
        else:  # grey disc; the taker's initial sits in the middle, so look beside it
            r = vm.layout.length(t.r)
            assert _pixel(surface, (cx - r * 3 // 5, cy)) == render.TAKEN, t
            assert render.player_colour(t.colour) in _colours_in(surface, (cx - 8, cy - 8, 16, 16))


def test_cluster_panel_shows_each_role_in_its_colour(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    vm = _round_view(clock)
    colours = _colours_in(_drawn(vm), vm.layout.cluster)
    for role in ("leader", "follower", "down"):
        assert render.ROLE_COLOURS[role] in colours, role
    assert render.ROLE_COLOURS["candidate"] not in colours


def test_the_arena_follows_the_window_after_a_resize(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    big, small = _round_view(clock, (1600, 1000)), _round_view(clock, (700, 500))
    assert small.layout.scale < big.layout.scale
    surface = _drawn(small, (700, 500))
    open_target = next(t for t in small.targets if t.taken_by is None)
    assert _pixel(surface, small.layout.to_screen(open_target.x, open_target.y)) == render.TARGET


def test_pending_and_lost_markers_are_drawn_around_their_targets(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    table = round_table()
    session, ui = session_for(table, clock), ui_for()
    vm = build_view(session, ui, clock())
    first, second = [t for t in vm.targets if t.taken_by is None][:2]
    for target in (first, second):
        ui.fire_hit(
            1, 1, target, session.submit({"type": "hit", "round": 1, "target": target.id}), clock()
        )
    table.do("c2", "hit", round=1, target=second.id)  # bob beats us to the second one
    ui.update(session.state, session.client_id, [], clock())
    vm = build_view(session, ui, clock())
    surface = _drawn(vm)

    def ring(target_id: int) -> set[Colour]:
        t = next(t for t in vm.targets if t.id == target_id)
        cx, cy = vm.layout.to_screen(t.x, t.y)
        r = vm.layout.length(t.r) + 12
        return _colours_in(surface, (cx - r, cy - r, 2 * r, 2 * r))

    assert render.PENDING in ring(first.id)
    assert render.LOST in ring(second.id)


def test_lobby_screen_shows_the_host_crown_and_ready_marks(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    vm = build_view(session_for(lobby_table(), clock), ui_for(), clock())
    colours = _colours_in(_drawn(vm), vm.layout.arena)
    assert render.HOST in colours and render.READY in colours
    assert render.TARGET not in colours  # no targets in the lobby


def test_game_over_screen_draws_over_the_last_round(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    vm = build_view(session_for(game_over_table(), clock), ui_for(), clock())
    colours = _colours_in(_drawn(vm), vm.layout.arena)
    assert render.HOST in colours  # the winners line


def test_a_failover_notice_shows_as_a_banner(display: pygame.Surface, clock: ScriptedClock) -> None:
    session, ui = session_for(round_table(), clock), ui_for()
    session.notify("failover", "leader n1 lost, n3 elected, 240 ms")
    ui.update(session.state, session.client_id, session.drain_notices(), clock())
    vm = build_view(session, ui, clock())
    assert [n.text for n in vm.notices] == ["leader n1 lost, n3 elected, 240 ms"]
    x, y, w, h = vm.layout.banner
    assert _near(_pixel(_drawn(vm), (x + 4, y + h // 2)), render.NOTICE_FAILOVER)


def test_the_connecting_screen_draws_without_a_state(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    vm = build_view(FakeSession(clock=clock), ui_for(), clock())
    surface = _drawn(vm)
    assert render.ROLE_COLOURS["leader"] in _colours_in(surface, vm.layout.cluster)


@pytest.mark.parametrize("table", [lobby_table, round_table, game_over_table])
def test_drawing_never_changes_the_view(
    display: pygame.Surface, clock: ScriptedClock, table: object
) -> None:
    session, ui = session_for(table(), clock), ui_for()  # type: ignore[operator]
    session.notify("failover", "leader n1 lost, n3 elected, 240 ms")
    ui.update(session.state, session.client_id, session.drain_notices(), clock())
    vm = build_view(session, ui, clock())
    before, state_before = copy.deepcopy(vm), copy.deepcopy(session.state)
    _drawn(vm)
    _drawn(vm, (640, 480))
    assert vm == before and session.state == state_before


@pytest.mark.parametrize("size", [(960, 640), (640, 480), SIZE])
@pytest.mark.parametrize("node_id", ["n1", "node-long-name-7"])
def test_a_long_role_never_runs_into_the_term_column(
    display: pygame.Surface, clock: ScriptedClock, size: tuple[int, int], node_id: str
) -> None:
    """Issue 10 item 4: "pre-candidate" ran into "term 12" in a 960-px window."""
    vm = _round_view(clock, size)
    x, y, w, _ = vm.layout.cluster
    surface = pygame.Surface(size)
    fonts = render.load_fonts()
    node = NodeRow(node_id, "pre-candidate", 12, True)
    role, term = render._node_row(surface, fonts, node, x + 14, x + w - 14, y + 56)
    assert role.right + 4 <= term.left, (role, term)
    assert role.width > 0 and term.right <= x + w


def test_without_a_majority_the_arena_says_so(display: pygame.Surface, clock: ScriptedClock) -> None:
    session = session_for(round_table(), clock)
    healthy = build_view(session, ui_for(), clock())
    session.nodes = [
        NodeRow("n1", "pre-candidate", 4, True),
        NodeRow("n2", "down", 4, False),
        NodeRow("n3", "down", 4, False),
    ]
    lost = build_view(session, ui_for(), clock())
    assert render.LOST not in _colours_in(_drawn(healthy), healthy.layout.arena)
    assert render.LOST in _colours_in(_drawn(lost), lost.layout.arena)


@pytest.mark.parametrize("ms", [0, 1, 999, 1000, 1001, 2400, 2999, 3000, 9_999, 20_000, 58_001])
def test_the_header_clock_and_the_big_countdown_round_alike(ms: int) -> None:
    """Issue 10 item 4: the header said "2.4 s" while the countdown said "3"."""
    assert render._clock(ms) == f"{seconds_left(ms)} s"
    assert seconds_left(ms) == -(-ms // 1000)


def test_the_offline_window_says_its_cluster_is_simulated(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    offline = FakeSession.with_opponents("you", ("bob",), seed=1)
    offline.poll()
    vm = build_view(offline, ui_for("you"), clock())
    online = build_view(session_for(lobby_table(), clock), ui_for(), clock())
    assert vm.offline and not online.offline
    assert any(_near(c, render.HOST, 10) for c in _colours_in(_drawn(vm), vm.layout.cluster))
    assert not any(
        _near(c, render.HOST, 10) for c in _colours_in(_drawn(online), online.layout.cluster)
    )
