"""The window loop: input maps to commands, the loop never blocks, and it quits cleanly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pygame
from client_helpers import ScriptedClock, lobby_table, round_table

from client.app import App, run
from client.fake import FakeSession
from client.viewmodel import NodeRow, Pending


@dataclass
class RecordingSession(FakeSession):
    """A FakeSession that also remembers what this window submitted."""

    sent: list[dict] = field(default_factory=list)

    def submit(self, cmd: dict) -> Pending:
        self.sent.append(cmd)
        return super().submit(cmd)


class SilentSession(RecordingSession):
    """A session whose network never delivers anything: poll returns, nothing arrives."""

    def poll(self) -> None:
        self.polls += 1


def _app(
    table_factory: object, clock: ScriptedClock, client_id: str = "c1", name: str = "ann"
) -> tuple[App, RecordingSession]:
    session = RecordingSession(table_factory(), client_id=client_id, clock=clock)  # type: ignore[operator]
    app = App(session, name, (1200, 800), now=clock)
    app.update()
    return app, session


def _click(app: App, pos: tuple[int, int]) -> None:
    app.handle(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=pos, button=1))


def _key(app: App, key: int) -> None:
    app.handle(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))


def test_a_click_on_a_target_submits_a_hit_for_that_target(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    app, session = _app(round_table, clock)
    target = next(t for t in app.vm.targets if t.taken_by is None)
    _click(app, app.vm.layout.to_screen(target.x + target.r / 2, target.y))  # off-centre, inside
    assert session.sent == [{"type": "hit", "round": 1, "target": target.id}]
    assert app.ui.has_marker(1, 1, target.id)
    _click(app, app.vm.layout.to_screen(target.x, target.y))  # a second click adds nothing
    assert len(session.sent) == 1
    app.update()
    assert next(t for t in app.vm.targets if t.id == target.id).mine


def test_clicks_map_through_the_resized_layout(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    app, session = _app(round_table, clock)
    target = next(t for t in app.vm.targets if t.taken_by is None)
    old_pos = app.vm.layout.to_screen(target.x, target.y)
    app.handle(pygame.event.Event(pygame.VIDEORESIZE, size=(700, 500), w=700, h=500))
    app.update()
    assert app.screen.get_size() == (700, 500) and app.vm.layout.size == (700, 500)
    new_pos = app.vm.layout.to_screen(target.x, target.y)
    assert new_pos != old_pos
    if app.vm.target_at(*old_pos) is None:
        _click(app, old_pos)  # where the target used to be drawn: nothing to hit now
        assert session.sent == []
    _click(app, new_pos)
    assert session.sent[-1] == {"type": "hit", "round": 1, "target": target.id}


def test_clicks_outside_targets_or_outside_a_round_send_nothing(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    app, session = _app(round_table, clock)
    taken = next(t for t in app.vm.targets if t.taken_by is not None)
    _click(app, app.vm.layout.to_screen(taken.x, taken.y))
    _click(app, (app.vm.layout.arena[0] - 5, 5))
    lobby_app, lobby_session = _app(lobby_table, clock)
    _click(lobby_app, (600, 400))
    assert session.sent == [] and lobby_session.sent == []


def test_keys_toggle_ready_start_and_rematch(display: pygame.Surface, clock: ScriptedClock) -> None:
    app, session = _app(lobby_table, clock, "c3", "cy")  # cy is not ready yet
    _key(app, pygame.K_r)
    app.update()
    assert session.sent == [{"type": "ready", "ready": True}]
    assert app.vm.me_row().ready  # type: ignore[union-attr]
    _key(app, pygame.K_r)
    _key(app, pygame.K_s)  # cy is not the host: the rules refuse, the window says why
    _key(app, pygame.K_m)
    app.update()
    assert session.sent[1:] == [
        {"type": "ready", "ready": False},
        {"type": "start"},
        {"type": "rematch"},
    ]
    assert any(n.kind == "error" and n.text.startswith("start:") for n in app.vm.notices)


def test_the_window_joins_once_the_first_state_arrives(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    session = RecordingSession(lobby_table(), client_id="c9", clock=clock)
    app = App(session, "eve", (1200, 800), now=clock)
    assert app.vm.status == "connecting"
    app.update()  # first poll: the state arrives, the join goes out
    app.update()  # second poll: the join is applied
    assert session.sent == [{"type": "join", "name": "eve"}]
    assert app.vm.status == "playing" and app.vm.me == "eve"
    app.update()
    assert len(session.sent) == 1


def test_a_refused_join_is_shown_and_not_retried(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    session = RecordingSession(lobby_table(), client_id="c9", clock=clock)
    app = App(session, "Ann", (1200, 800), now=clock)  # taken, ignoring case
    for _ in range(5):
        app.update()
    assert session.sent == [{"type": "join", "name": "Ann"}]
    assert app.vm.status == "join_failed" and "taken" in app.vm.status_text


def test_quitting_gives_up_the_seat(display: pygame.Surface, clock: ScriptedClock) -> None:
    app, session = _app(lobby_table, clock, "c3", "cy")
    _key(app, pygame.K_q)
    assert not app.running
    app.leave()
    assert session.sent[-1] == {"type": "leave"}
    assert "cy" not in session.table.state["players"]


def test_run_plays_frames_with_a_fake_session_and_exits_cleanly(tmp_path: Path) -> None:
    session = FakeSession.with_opponents("you", ("bob", "cy"), seed=3)
    shot = tmp_path / "shot.png"
    assert run(session, "you", fps=200, size=(900, 600), max_frames=40, screenshot=str(shot)) == 0
    assert session.closed and not pygame.get_init()
    assert session.polls == 40
    assert "you" in session.table.state["players"]  # it joined on its own
    pygame.init()
    try:
        assert pygame.image.load(str(shot)).get_size() == (900, 600)
    finally:
        pygame.quit()


def test_run_never_blocks_when_the_session_delivers_nothing() -> None:
    session = SilentSession(nodes=[NodeRow("n1", "unknown", 0, True)])
    started = time.monotonic()
    assert run(session, "you", fps=1000, max_frames=50) == 0
    assert time.monotonic() - started < 10
    assert session.polls == 50 and session.sent == [] and session.closed


def test_a_window_dropped_as_idle_sits_down_again_by_itself_under_the_same_name(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    """Issue 10 item 1: a join that had succeeded, then a drop (idle while the cluster
    had no majority): the window used to stay on "joining as ..." for good."""
    session = RecordingSession(lobby_table(), client_id="c9", clock=clock)
    app = App(session, "eve", (1200, 800), now=clock)
    app.update()
    app.update()
    assert app.vm.status == "playing"
    table = session.table
    table.wait(table.state["config"]["idle_ms"])
    assert "eve" in table.do("c1", "drop_idle")["dropped"]  # c1 speaks: only the others go
    app.update()  # the drop shows: the window notices and joins again
    app.update()  # the join is applied
    assert session.sent.count({"type": "join", "name": "eve"}) == 2
    assert app.vm.status == "playing" and app.vm.me == "eve"
    assert any("dropped from the table" in n.text for n in app.vm.notices)


def test_an_accepted_join_the_state_never_shows_is_sent_again(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    session = RecordingSession(lobby_table(), client_id="c9", clock=clock)
    app = App(session, "eve", (1200, 800), now=clock)
    app.update()
    app.ui.join = Pending(done=True, result={"ok": True, "name": "eve"})  # answered, never seen
    session._queue.clear()
    app.update()
    assert session.sent == [{"type": "join", "name": "eve"}]  # too early to doubt it
    clock.advance(3.5)
    app.update()
    app.update()
    assert session.sent[1:] == [{"type": "join", "name": "eve"}]
    assert app.vm.me == "eve" and app.vm.status == "playing"


def test_without_a_majority_input_is_answered_at_once_with_why_and_nothing_is_sent(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    app, session = _app(round_table, clock)
    session.nodes = [
        NodeRow("n1", "pre-candidate", 4, True),
        NodeRow("n2", "down", 4, False),
        NodeRow("n3", "down", 4, False),
    ]
    app.update()
    assert app.vm.quorum.lost
    assert app.vm.quorum.text == "no majority: 1 of 3 nodes reachable, waiting"
    target = next(t for t in app.vm.targets if t.taken_by is None)
    _click(app, app.vm.layout.to_screen(target.x, target.y))
    _key(app, pygame.K_r)
    _key(app, pygame.K_s)
    app.update()
    assert session.sent == []
    texts = [n.text for n in app.vm.notices if n.kind == "error"]
    assert [t.split(":")[0] for t in texts] == ["hit", "ready", "start"]
    assert all("not sent, no majority: 1 of 3 nodes reachable" in t for t in texts)


def test_without_a_majority_the_window_sends_no_presence_pings(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    """A ping could not commit; queued for a dead node it would only arrive in a burst
    when the node restarts."""
    app, session = _app(lobby_table, clock)
    session.table.wait(session.table.state["config"]["idle_ms"] // 2)  # a ping is due
    session.nodes = [
        NodeRow("n1", "follower", 4, True),
        NodeRow("n2", "down", 4, False),
        NodeRow("n3", "down", 4, False),
    ]
    app.update()
    app.update()
    assert session.sent == []
    session.nodes = [NodeRow("n1", "leader", 5, True), *session.nodes[1:2],
                     NodeRow("n3", "follower", 5, False)]
    app.update()
    app.update()
    assert session.sent == [{"type": "ping"}]


def test_a_long_election_is_named_but_input_still_goes_out(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    """Every node reachable, none leading (they cannot reach each other): the window
    says so after a while, and keeps sending (the session retries until a leader)."""
    app, session = _app(lobby_table, clock, "c3", "cy")
    session.nodes = [
        NodeRow("n1", "pre-candidate", 4, True),
        NodeRow("n2", "pre-candidate", 4, False),
        NodeRow("n3", "candidate", 5, False),
    ]
    app.update()
    clock.advance(1.0)
    app.update()
    assert app.vm.quorum.text == ""  # an ordinary failover takes a few hundred ms
    clock.advance(2.0)
    app.update()
    assert app.vm.quorum.text == "no leader for 3 s: 3 of 3 nodes reachable, electing"
    assert not app.vm.quorum.lost
    _key(app, pygame.K_r)
    assert session.sent == [{"type": "ready", "ready": True}]
    session.nodes = [NodeRow("n3", "leader", 5, False), *session.nodes[:2]]
    app.update()
    assert app.vm.quorum.text == "" and app.ui.leaderless_since is None
