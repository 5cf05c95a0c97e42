"""A live window over real node processes loses the cluster's majority, and gets it back.

Issue 10, item 1: kill 2 of 3 nodes under a window, keep them down long enough for
the table to drop the window's player as idle once the cluster is back, restart
them: the window says "no majority" while it lasts, answers input with why it
cannot act, and is back at the table by itself, under the same name.

The outage lasts until the leader's clock has passed the player's last sign of
life by the game's ``idle_ms`` (15 s by default): the test waits on exactly that
condition instead of the issue's fixed 20 s, so the drop-and-rejoin path is the
one a player meets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pygame
import pytest

from client.api import wait_until
from client.app import App
from client.link import TimeoutError_
from client.session import NetworkSession
from nodes.local import LocalCluster

pytestmark = pytest.mark.slow


def _frames_until(app: App, cond: Callable[[], object], timeout: float, what: str) -> None:
    """Run the window's loop (update, draw) until ``cond`` holds; fails naming ``what``."""

    def step() -> object:
        app.update()
        app.draw()
        return cond()

    wait_until(step, timeout, what, every=0.01)


def _key(app: App, key: int) -> None:
    app.handle(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))


def test_a_window_says_no_majority_and_rejoins_by_itself_when_the_nodes_come_back(
    live_cluster: LocalCluster, display: pygame.Surface, tmp_path: Path
) -> None:
    cluster = live_cluster
    session = NetworkSession(cluster.cluster)
    try:
        app = App(session, "Player1", (1200, 800))
        _frames_until(app, lambda: app.vm.status == "playing", 30.0, "the window to join")
        first_seat = app.vm.me_row()
        assert first_seat is not None and first_seat.name == "Player1"

        def no_ping_for_a_while() -> bool:  # none in flight, and none due for 3 s
            st = session.state
            ping = app._ping
            return (
                st is not None
                and (ping is None or ping.done)
                and session.leader_time_ms() - st["players"]["Player1"]["last_seen_ms"] < 2000
            )

        _frames_until(app, no_ping_for_a_while, 10.0, "a moment with no ping under way")
        survivor, *victims = cluster.cluster.ids()
        for nid in victims:
            cluster.kill(nid)
        _frames_until(app, lambda: app.vm.quorum.lost, 5.0, "the no-majority notice")
        assert app.vm.quorum.text == "no majority: 1 of 3 nodes reachable, waiting"
        pygame.image.save(app.screen, str(tmp_path / "no-majority.png"))

        sent_before = session.link.seq
        _key(app, pygame.K_r)
        app.update()
        said = [n.text for n in app.vm.notices if n.kind == "error"]
        assert any(t.startswith("ready: not sent, no majority: 1 of 3") for t in said), said
        assert session.link.seq == sent_before  # answered at once, nothing queued

        # keep the nodes down until the leader's clock will find the player idle
        state = session.state
        assert state is not None
        idle_at_ms = state["players"]["Player1"]["last_seen_ms"] + state["config"]["idle_ms"]
        _frames_until(
            app,
            lambda: not app.vm.quorum.lost or time.time() * 1000 > idle_at_ms + 500,
            30.0,
            "the player's idle deadline to pass",
        )
        assert app.vm.quorum.lost  # still no majority all along: nothing came back by itself

        # Whether a window is dropped is a race its presence pings can win: a ping that
        # commits before the new leader's drop_idle keeps it seated (the happy path).
        # This test wants the path the issue saw, so no ping is under way at the kill
        # (a request queued for a dead node is delivered when it restarts), none is
        # sent while there is no majority (the window's own rule), and the window stays
        # silent after the restart until the table has dropped it; from then on the
        # rejoin is the window's own doing.
        keep_present = app._keep_present
        app._keep_present = lambda session: None  # type: ignore[method-assign]
        for nid in victims:
            cluster.restart(nid)
        _frames_until(app, lambda: app.vm.me_row() is None, 20.0, "the table to drop the player")
        app._keep_present = keep_present  # type: ignore[method-assign]
        try:
            _frames_until(
                app,
                lambda: not app.vm.quorum.lost
                and app.vm.me_row() is not None
                and app.vm.me_row().colour != first_seat.colour,  # type: ignore[union-attr]
                20.0,
                "the window to be seated again after the drop",
            )
        except TimeoutError_ as e:
            vm = app.vm
            raise AssertionError(
                f"{e}: status {vm.status} {vm.status_text!r}, quorum {vm.quorum}, "
                f"me {vm.me_row()}, cluster {vm.cluster}, index {vm.state_index}, "
                f"members {[m.name for m in vm.members]}, join {app.ui.join}, "
                f"notices {[n.text for n in vm.notices]}"
            ) from e
        again = app.vm.me_row()
        assert again is not None and again.name == "Player1"
        assert app.vm.status in ("playing", "spectating")
        assert not app.vm.quorum.text
        pygame.image.save(app.screen, str(tmp_path / "rejoined.png"))
    finally:
        session.close()
