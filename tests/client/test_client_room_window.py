"""A headless window on real nodes, through the rooms (issue 12, the window's check):
browse, quick play, play (a hit scores), close, reopen within the grace period and
get the same seat, name and points back; reopen after it and join as new."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pygame
import pytest

from client.api import wait_until
from client.app import App
from client.rooms import RoomsClient
from client.roomsession import RoomSession, seat_file
from game import view as game_view
from nodes.clusterfile import Timing
from nodes.local import LocalCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def rooms_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """Three node processes on free ports; ``grace_ms`` from the test's marker; every
    process is killed by its pid when the test ends, pass or fail."""
    marker = request.node.get_closest_marker("grace_ms")
    grace = marker.args[0] if marker else 30_000
    lc = LocalCluster.create(
        tmp_path / "cluster", 3, timing=Timing(election_ms=(150.0, 300.0)), room_grace_ms=grace
    )
    try:
        lc.start_all()
        yield lc
    finally:
        lc.kill_all()


def _create_when_ready(rc: RoomsClient, *args: Any, **kwargs: Any) -> dict:
    """``create``, asked again while the new cluster answers ``rooms_starting`` (its
    first leader has not committed the rooms secret yet: PROTOCOL.md says retry)."""
    deadline = time.monotonic() + 10.0
    while True:
        result = rc.wait(rc.create(*args, **kwargs))
        if result.get("error") != "rooms_starting" or time.monotonic() > deadline:
            return result


def _open(lc: LocalCluster, name: str) -> tuple[App, RoomSession]:
    session = RoomSession.connect(lc.cluster, name, cluster_path=str(lc.cluster_path))
    return App(session, name, (1200, 800)), session


def _frames_until(
    app: App,
    cond: Callable[[], object],
    timeout: float,
    what: str,
    others: tuple[RoomsClient, ...] = (),
) -> None:
    """Run the window's loop (and poll the other players) until ``cond`` holds."""

    def step() -> object:
        app.update()
        app.draw()
        for other in others:
            other.poll()
        return cond()

    wait_until(step, timeout, what, every=0.01)


def _key(app: App, key: int, char: str = "") -> None:
    app.handle(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=char, scancode=0))


def _me(app: App) -> dict | None:
    state = app.session.state
    name = game_view.player_of(state, app.session.client_id) if state else None
    return state["players"][name] if name else None


def _close(app: App, session: RoomSession) -> None:
    """The player closes the window (Q): the seat is kept for the grace period."""
    _key(app, pygame.K_q)
    assert not app.running
    app.leave()
    session.close()


def _quick_play(app: App, others: tuple[RoomsClient, ...] = ()) -> str:
    _frames_until(
        app, lambda: app.bvm is not None and app.session.synced, 30.0, "the room list", others
    )
    assert app.mode == "browser"
    _key(app, pygame.K_p)
    assert app.browser.waiting is not None and "quick play as ann" in app.browser.waiting.text
    _frames_until(
        app,
        lambda: app.mode == "room" and app.vm.status == "playing",
        30.0,
        "quick play to seat the window",
        others,
    )
    return app.session.seat["room"]


def test_browse_quick_play_hit_close_and_reopen_within_the_grace_period(
    rooms_cluster: LocalCluster, display: pygame.Surface
) -> None:
    lc = rooms_cluster
    app, session = _open(lc, "ann")
    bob = RoomsClient(lc.cluster)  # a second player, so a game can start
    try:
        room = _quick_play(app, (bob,))
        bob.wait(bob.join("bob", room=room))
        bob.wait(bob.act("ready", ready=True))
        _frames_until(app, lambda: len(app.vm.members) == 2, 10.0, "bob in ann's lobby", (bob,))
        assert app.vm.room_name and app.vm.me_row().host
        _key(app, pygame.K_r)
        _frames_until(app, lambda: app.vm.me_row().ready, 10.0, "ann ready", (bob,))
        _key(app, pygame.K_s)
        _frames_until(
            app, lambda: app.vm.can_shoot and app.vm.targets, 15.0, "the first round", (bob,)
        )
        target = app.vm.targets[0]
        app.click(app.vm.layout.to_screen(target.x, target.y))
        _frames_until(
            app,
            lambda: app.session.state["scores"].get("ann") == 1,
            10.0,
            "ann's hit to score",
            (bob,),
        )
        seat_before = _me(app)
        assert seat_before is not None
        token = seat_file(str(lc.cluster_path), lc.cluster.cluster_id, "ann")
        _close(app, session)
        assert token.exists(), "the seat's token is kept for the next window"
        bob.run_until(
            lambda: "ann" in (bob.room or {}).get("away", {}), 10.0, "ann's seat marked away"
        )

        app, session = _open(lc, "ann")  # reopened within the grace period
        assert app.browser.waiting is not None and "seat" in app.browser.waiting.text
        _frames_until(
            app,
            lambda: app.mode == "room" and app.vm.status == "playing",
            20.0,
            "the seat back",
            (bob,),
        )
        assert session.seat["room"] == room
        again = _me(app)
        assert again is not None
        assert again["joined_index"] == seat_before["joined_index"]  # the same seat
        assert app.session.state["scores"].get("ann") == 1  # and its points
        assert app.vm.me_row().host
    finally:
        session.close()
        bob.close()


@pytest.mark.grace_ms(1500)
def test_after_the_grace_period_the_reopened_window_joins_as_new(
    rooms_cluster: LocalCluster, display: pygame.Surface
) -> None:
    lc = rooms_cluster
    app, session = _open(lc, "ann")
    bob = RoomsClient(lc.cluster)
    try:
        room = _quick_play(app, (bob,))
        bob.wait(bob.join("bob", room=room))
        _frames_until(app, lambda: len(app.vm.members) == 2, 10.0, "bob in ann's lobby", (bob,))
        first = _me(app)
        assert first is not None
        _close(app, session)
        bob.run_until(
            lambda: bob.room and "ann" not in bob.room["table"]["players"],
            15.0,
            "ann's seat freed after the grace period",
        )

        app, session = _open(lc, "ann")
        _frames_until(
            app,
            lambda: app.mode == "room" and app.vm.status == "playing",
            20.0,
            "ann to join as new",
            (bob,),
        )
        assert any("joining as new" in n.text for n in app.ui.notices)
        assert session.seat["room"] == room
        again = _me(app)
        assert again is not None and again["joined_index"] > first["joined_index"]
        assert not app.vm.me_row().host  # bob kept the room meanwhile
    finally:
        session.close()
        bob.close()


def test_a_room_window_says_no_majority_sends_nothing_and_plays_on_in_its_seat_after(
    rooms_cluster: LocalCluster, display: pygame.Surface
) -> None:
    lc = rooms_cluster
    app, session = _open(lc, "ann")
    try:
        _quick_play(app)
        seat = _me(app)
        assert seat is not None
        survivor, *victims = lc.cluster.ids()
        for nid in victims:
            lc.kill(nid)
        _frames_until(app, lambda: app.vm.quorum.lost, 5.0, "the no-majority notice")
        assert app.vm.quorum.text == "no majority: 1 of 3 nodes reachable, waiting"
        sent_before = session.rooms.link.seq
        _key(app, pygame.K_r)
        _key(app, pygame.K_l)  # leaving is a command too: not sent, the window stays
        app.update()
        said = [n.text for n in app.vm.notices if n.kind == "error"]
        assert any(t.startswith("ready: not sent, no majority: 1 of 3") for t in said), said
        assert any(t.startswith("leave: not sent, no majority") for t in said), said
        assert session.rooms.link.seq == sent_before and app.mode == "room"
        for nid in victims:
            lc.restart(nid)
        _frames_until(app, lambda: not app.vm.quorum.text, 20.0, "the majority back")
        _key(app, pygame.K_r)
        _frames_until(app, lambda: app.vm.me_row().ready, 20.0, "ready committed, same seat")
        assert _me(app)["joined_index"] == seat["joined_index"] and app.mode == "room"
    finally:
        session.close()


def test_a_private_room_is_joined_by_its_code_and_a_crashed_window_gets_its_seat_back(
    rooms_cluster: LocalCluster, display: pygame.Surface
) -> None:
    lc = rooms_cluster
    app, session = _open(lc, "ann")
    bob = RoomsClient(lc.cluster)
    try:
        _frames_until(app, lambda: session.synced, 30.0, "the room list", (bob,))
        _key(app, pygame.K_c)
        for ch in "Secret":
            _key(app, pygame.K_a, ch)
        _key(app, pygame.K_TAB)  # private
        _key(app, pygame.K_RETURN)
        _frames_until(
            app,
            lambda: app.mode == "room" and app.vm.status == "playing",
            20.0,
            "the private room created",
            (bob,),
        )
        room = session.seat["room"]
        code = app._room_code
        assert code and app.vm.room_name == f"Secret (private, code {code})"
        assert room not in session.rooms.rooms  # not listed
        assert bob.wait(bob.join("bob", code=code))["room"] == room
        _frames_until(app, lambda: len(app.vm.members) == 2, 10.0, "bob in by the code", (bob,))
        seat = _me(app)
        session.close()  # a crash: no disconnect, nothing said

        app, session = _open(lc, "ann")
        _frames_until(
            app,
            lambda: app.mode == "room" and app.vm.status == "playing",
            20.0,
            "the seat back after a crash",
            (bob,),
        )
        assert session.seat["room"] == room and _me(app)["joined_index"] == seat["joined_index"]
        assert app.vm.me_row().host
    finally:
        session.close()
        bob.close()


def test_a_room_window_names_a_failover_and_keeps_its_seat_through_it(
    rooms_cluster: LocalCluster, display: pygame.Surface
) -> None:
    lc = rooms_cluster
    app, session = _open(lc, "ann")
    try:
        _quick_play(app)
        seat = _me(app)

        def leader() -> str | None:
            return next((n.id for n in app.vm.cluster if n.role == "leader"), None)

        _frames_until(app, leader, 10.0, "a leader in the cluster panel")
        old = leader()
        lc.kill(old)
        _frames_until(
            app,
            lambda: any(n.kind == "failover" for n in app.vm.notices),
            15.0,
            "the failover notice",
        )
        said = next(n.text for n in app.vm.notices if n.kind == "failover")
        assert said.startswith(f"leader {old} lost, ") and said.endswith(" ms"), said
        _key(app, pygame.K_r)
        _frames_until(app, lambda: app.vm.me_row().ready, 15.0, "ready under the new leader")
        assert _me(app)["joined_index"] == seat["joined_index"] and app.mode == "room"
    finally:
        session.close()


def test_the_leaderboard_a_room_shows_is_the_one_across_rooms(
    rooms_cluster: LocalCluster, display: pygame.Surface
) -> None:
    lc = rooms_cluster
    app, session = _open(lc, "ann")
    bob = RoomsClient(lc.cluster)
    try:
        made = _create_when_ready(bob, "Short", player="bob", rounds=1, round_ms=1000)
        assert made["ok"], made
        _frames_until(app, lambda: len(session.rows) == 1, 30.0, "bob's room listed", (bob,))
        _key(app, pygame.K_RETURN)  # the selected (only) row
        _frames_until(
            app,
            lambda: app.mode == "room" and app.vm.status == "playing",
            20.0,
            "ann in bob's room",
            (bob,),
        )
        assert app.vm.leaderboard == ()
        bob.wait(bob.act("ready", ready=True))
        _key(app, pygame.K_r)
        _frames_until(app, lambda: app.vm.me_row().ready, 10.0, "ann ready", (bob,))
        assert bob.wait(bob.act("start"))["ok"]
        _frames_until(
            app,
            lambda: app.vm.phase == "game_over" and len(app.vm.leaderboard) == 2,
            20.0,
            "the game over on the leaderboard",
            (bob,),
        )
        _key(app, pygame.K_l)
        _frames_until(
            app,
            lambda: app.mode == "browser" and app.browser.waiting is None,
            10.0,
            "back in the browser",
            (bob,),
        )
        assert session.seat is None
        _key(app, pygame.K_p)  # bob's room is over, not a lobby: quick play opens a new one
        _frames_until(
            app,
            lambda: app.mode == "room" and app.vm.status == "playing",
            20.0,
            "ann in a new room",
            (bob,),
        )
        assert session.seat["room"] != made["room"]
        assert {row[0] for row in app.vm.leaderboard} == {"ann", "bob"}
    finally:
        session.close()
        bob.close()
