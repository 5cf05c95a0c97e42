"""The room browser without pygame (client.browser): listing rows -> what is drawn,
keys and clicks -> commands; and, in a headless window over a scripted rooms session,
every wait ends by its deadline with a notice saying what did not come."""

from __future__ import annotations

from typing import Any

import pygame
from client_helpers import SIZE, ScriptedClock

from client.app import App
from client.browser import (
    WAIT_S,
    BrowserAction,
    BrowserUi,
    Waiting,
    browser_key,
    build_browser,
    sorted_rows,
)
from client.viewmodel import NodeRow, Notice, Pending, Quorum

NODES = [
    NodeRow("n1", "leader", 2, True),
    NodeRow("n2", "follower", 2, False),
    NodeRow("n3", "follower", 2, False),
]


def _row(
    room: str,
    name: str,
    phase: str,
    players: int,
    created: int,
    max_players: int = 8,
    leader: str | None = "n1",
) -> dict[str, Any]:
    return {
        "room": room,
        "name": name,
        "phase": phase,
        "players": players,
        "max_players": max_players,
        "bots": True,
        "private": False,
        "created_ms": created,
        "leader": leader,
    }


ROWS = [
    _row("r1", "Old game", "round", 4, 1),
    _row("r2", "Quiet", "lobby", 1, 2),
    _row("r3", "Busy", "lobby", 5, 3),
    _row("r4", "Packed", "lobby", 8, 4),
    _row("r5", "Done", "game_over", 2, 5),
]


def _view(ui: BrowserUi, rows: list[dict] = ROWS, **kw: Any):  # noqa: ANN202
    return build_browser(
        rows, ui, me="ann", size=SIZE, cluster=NODES, quorum=Quorum.of(NODES), **kw
    )


def test_rows_show_counts_and_phases_joinable_lobbies_first_fullest_first() -> None:
    vm = _view(BrowserUi())
    assert [r.name for r in vm.rows] == ["Busy", "Quiet", "Old game", "Packed", "Done"]
    busy, quiet, old, packed, done = vm.rows
    assert (busy.phase, busy.players, busy.max_players, busy.full) == ("lobby", 5, 8, False)
    assert (old.phase, done.phase) == ("playing", "game over")
    assert packed.full and busy.selected and not quiet.selected
    assert busy.leader == "n1"
    assert vm.help_text.startswith("Up/Down")


def test_an_empty_list_says_what_to_do_or_that_it_is_still_reading() -> None:
    assert "quick play" in _view(BrowserUi(), rows=[]).empty_text
    assert "reading" in _view(BrowserUi(), rows=[], synced=False).empty_text
    assert _view(BrowserUi()).empty_text == ""


def test_arrows_move_the_selection_within_the_list_and_enter_joins_it() -> None:
    ui, rows = BrowserUi(), sorted_rows(ROWS)
    assert browser_key(ui, rows, "up") is None and ui.selected == 0
    for _ in range(10):
        browser_key(ui, rows, "down")
    assert ui.selected == len(rows) - 1
    browser_key(ui, rows, "up")
    assert browser_key(ui, rows, "return") == BrowserAction("join", room="r4")
    assert _view(ui).rows[3].selected
    assert browser_key(BrowserUi(), [], "return") is None  # nothing to join


def test_letters_quick_play_create_with_a_name_and_private_toggle_or_join_by_code() -> None:
    ui = BrowserUi()
    assert browser_key(ui, ROWS, "p") == BrowserAction("quick_play")
    assert browser_key(ui, ROWS, "c") is None and ui.dialog == "create"
    for ch in "Fun q":  # letters type into the dialog, "q" does not quit there
        browser_key(ui, ROWS, ch if ch != " " else "space", ch)
    browser_key(ui, ROWS, "backspace")
    browser_key(ui, ROWS, "tab")
    assert _view(ui).dialog == "create" and _view(ui).dialog_text == "Fun " and _view(ui).private
    assert browser_key(ui, ROWS, "return") == BrowserAction("create", name="Fun", private=True)
    assert ui.dialog is None
    browser_key(ui, ROWS, "j")
    for ch in "K7Q2":
        browser_key(ui, ROWS, ch.lower(), ch)
    assert browser_key(ui, ROWS, "return") == BrowserAction("code", code="K7Q2")
    browser_key(ui, ROWS, "c")
    assert browser_key(ui, ROWS, "return") is None  # no name yet: nothing sent
    assert browser_key(ui, ROWS, "escape") is None and ui.dialog is None
    assert browser_key(ui, ROWS, "q") == BrowserAction("quit")
    assert browser_key(ui, ROWS, "escape") == BrowserAction("quit")


def test_clicks_map_to_what_was_drawn_under_them_and_nothing_while_waiting() -> None:
    ui = BrowserUi()
    vm = _view(ui)
    rx, ry, rw, rh = vm.rows[1].rect
    assert vm.action_at(rx + rw / 2, ry + rh / 2) == BrowserAction("join", room="r2")
    bx, by, bw, bh = vm.buttons[0].rect
    assert vm.action_at(bx + 5, by + 5) == BrowserAction("quick_play")
    assert vm.action_at(1, 1) is None
    ui.waiting = Waiting("quick play as ann: waiting for the cluster", 112.0)
    vm = _view(ui, now=100.0)
    assert vm.action_at(bx + 5, by + 5) is None
    assert vm.status_text == "quick play as ann: waiting for the cluster (giving up in 12 s)"
    assert browser_key(ui, ROWS, "p") is None and browser_key(ui, ROWS, "q").kind == "quit"


class ScriptedRooms:
    """A rooms session whose commands are answered only when the test says so."""

    offline = False
    client_id = "c-ann"
    room_wanted: str | None = None

    def __init__(self, nodes: list[NodeRow] = NODES) -> None:
        self.nodes, self.sent = nodes, []
        self.rows = list(ROWS)
        self.seat = None
        self.synced = True

    def poll(self) -> None: ...

    state = None
    state_index = 0
    rtt_ms = None

    @property
    def cluster(self) -> list[NodeRow]:
        return self.nodes

    def submit(self, cmd: dict) -> Pending:
        return self._send("act", cmd)

    def drain_notices(self) -> list[Notice]:
        return []

    def leader_time_ms(self) -> int:
        return 0

    def close(self) -> None: ...

    saved: dict | None = None
    forgot = False

    def saved_seat(self) -> dict | None:
        return self.saved

    def reclaim(self) -> Pending:
        return self._send("reclaim")

    def forget_saved_seat(self) -> None:
        self.forgot = True

    def room_name(self, room: str | None) -> str:
        return {r["room"]: r["name"] for r in self.rows}.get(room or "", str(room))

    def _send(self, *what: Any) -> Pending:
        self.sent.append(what)
        return Pending()

    def quick_play(self, name: str) -> Pending:
        return self._send("quick_play", name)

    def join(self, name: str, room: str | None = None, code: str | None = None) -> Pending:
        return self._send("join", name, room, code)


def _key(app: App, key: int, char: str = "") -> None:
    app.handle(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=char, scancode=0))


def test_a_command_never_answered_ends_at_its_deadline_with_a_notice(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    rooms = ScriptedRooms()
    app = App(rooms, "ann", SIZE, now=clock)  # type: ignore[arg-type]
    assert app.mode == "browser"
    _key(app, pygame.K_RETURN)
    assert rooms.sent == [("join", "ann", "r3", None)]
    app.update()
    assert "joining Busy as ann" in app.bvm.status_text
    clock.advance(WAIT_S - 0.5)
    app.update()
    assert app.browser.waiting is not None
    clock.advance(1.0)
    app.update()
    app.draw()
    assert app.browser.waiting is None and app.bvm.status_text == ""
    assert any(n.text.startswith("join: no answer in 12 s") for n in app.ui.notices)
    _key(app, pygame.K_p)  # the browser takes commands again
    assert rooms.sent[-1] == ("quick_play", "ann")


def test_without_a_majority_the_browser_sends_nothing_and_says_why(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    rooms = ScriptedRooms(
        [
            NodeRow("n1", "follower", 2, True),
            NodeRow("n2", "down", 2, False),
            NodeRow("n3", "down", 2, False),
        ]
    )
    app = App(rooms, "ann", SIZE, now=clock)  # type: ignore[arg-type]
    app.update()
    _key(app, pygame.K_p)
    assert rooms.sent == [] and app.browser.waiting is None
    assert any("no majority: 1 of 3 nodes reachable" in n.text for n in app.ui.notices)
    assert app.bvm.quorum.lost


def test_a_saved_seat_is_reclaimed_kept_while_the_cluster_does_not_answer_and_dropped_when_refused(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    rooms = ScriptedRooms()
    rooms.saved = {"room": "r2", "name": "ann", "token": "t"}
    app = App(rooms, "ann", SIZE, now=clock)  # type: ignore[arg-type]
    assert rooms.sent == [("reclaim",)]
    app.update()
    assert app.bvm.status_text.startswith("getting back your seat in Quiet as ann")
    clock.advance(WAIT_S + 0.1)
    app.update()  # no answer: the seat may still be there, so ask again and keep the token
    assert rooms.sent == [("reclaim",), ("reclaim",)] and not rooms.forgot
    assert "getting back your seat in Quiet" in app.browser.waiting.text
    app.browser.waiting.call.done = True
    app.browser.waiting.call.result = {"ok": False, "error": "bad_token", "message": "no seat"}
    app.update()  # refused: the grace period is over, join that room as new
    assert rooms.forgot and rooms.sent[-1] == ("join", "ann", "r2", None)
    assert any("joining as new" in n.text for n in app.ui.notices)


def test_a_seat_that_comes_late_opens_its_room_and_a_room_that_does_not_arrive_is_named(
    display: pygame.Surface, clock: ScriptedClock
) -> None:
    rooms = ScriptedRooms()
    app = App(rooms, "ann", SIZE, now=clock)  # type: ignore[arg-type]
    _key(app, pygame.K_p)
    clock.advance(WAIT_S + 0.1)
    app.update()  # quick play unanswered: given up, back to browsing
    assert app.mode == "browser" and app.browser.waiting is None
    rooms.seat = {"room": "r3", "name": "ann", "token": "t"}  # its answer came after all
    app.update()
    assert app.mode == "room"
    clock.advance(WAIT_S - 1)
    app.update()
    assert not any("has not arrived" in n.text for n in app.ui.notices)
    clock.advance(1.5)
    app.update()
    app.draw()
    assert any(n.text.startswith("Busy: its state has not arrived in 12 s") for n in app.ui.notices)
    rooms.seat = None  # the seat went away (grace over, room closed)
    app.update()
    assert app.mode == "browser"
    assert any("no longer seated" in n.text for n in app.ui.notices)
