"""The player window: input, then update, then draw (STYLE.md habit 11).

``run(session, name)`` is the reusable entry (``arena play`` wires it to a
network session); ``main()`` runs it ``--offline`` against a ``FakeSession``
with simulated opponents, so the window can be tried without any server.

Each frame: ``clock.tick(fps)``; handle events against the view that is on the
screen (a click maps to the target drawn under it); ``session.poll()`` (never
blocks); fold answers and notices into the window's ``UiState``; join once a
state arrives; build a fresh ``ViewModel``; draw it; flip.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Mapping

import pygame

from game import view as game_view

from . import render
from .browser import (
    WAIT_S,
    BrowserAction,
    BrowserUi,
    BrowserView,
    Waiting,
    browser_key,
    build_browser,
    sorted_rows,
)
from .fake import FakeSession
from .viewmodel import (
    MIN_SIZE,
    ROOM_HELP_TEXT,
    GameSession,
    Pending,
    Quorum,
    UiState,
    ViewModel,
    build_view,
    notice_views,
)

LEAVE_WAIT_S = 0.5  # on quit, how long to wait for the "leave" (or "disconnect") answer
KEY_NAMES = {
    pygame.K_UP: "up",
    pygame.K_DOWN: "down",
    pygame.K_RETURN: "return",
    pygame.K_KP_ENTER: "return",
    pygame.K_ESCAPE: "escape",
    pygame.K_TAB: "tab",
    pygame.K_BACKSPACE: "backspace",
}

# --- where the window goes when ``arena up`` opens several ---------------------------

SLOT_ENV = "ARENA_WINDOW_SLOT"  # "i/n": this is window i (from 0) of n, tile the screen
GAP_X, GAP_Y = 10, 40  # between windows; GAP_Y leaves room for a title bar
MIN_TILE = MIN_SIZE  # a smaller window is drawn clipped: cascade larger windows instead
CASCADE_STEP = 40


def tile_windows(
    screen: tuple[int, int], count: int, largest: tuple[int, int] = (1200, 800)
) -> list[tuple[int, int, int, int]]:
    """Rectangles (x, y, width, height) for ``count`` windows on a ``screen``-sized display.

    A grid of columns and rows, chosen so the windows are as large as possible (at
    most ``largest``); when even the best grid would make them smaller than
    ``MIN_TILE``, they are stacked instead: each as large as fits (at least
    ``MIN_TILE`` where the screen allows), cascading down and to the right.
    """
    if count < 1:
        return []
    sw, sh = screen
    best: tuple[float, int, int, int, int] | None = None  # (scale, area, cols, w, h)
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        w = min(largest[0], (sw - GAP_X * (cols + 1)) // cols)
        h = min(largest[1], (sh - GAP_Y * rows - GAP_X) // rows)
        if w <= 0 or h <= 0:
            continue
        scale = min(w / largest[0], h / largest[1])
        if best is None or (scale, w * h) > best[:2]:
            best = (scale, w * h, cols, w, h)
    if best is not None and best[3] >= MIN_TILE[0] and best[4] >= MIN_TILE[1]:
        _, _, cols, w, h = best
        return [
            (GAP_X + (k % cols) * (w + GAP_X), GAP_Y + (k // cols) * (h + GAP_Y), w, h)
            for k in range(count)
        ]
    spread = (count - 1) * CASCADE_STEP  # room for every window to show its title bar
    w = max(min(largest[0], sw - 2 * GAP_X - spread), min(MIN_TILE[0], sw))
    h = max(min(largest[1], sh - GAP_Y - GAP_X - spread), min(MIN_TILE[1], sh))
    room_x, room_y = max(1, sw - w - GAP_X + 1), max(1, sh - h - GAP_Y + 1)
    return [
        (
            min(GAP_X + (k * CASCADE_STEP) % room_x, max(0, sw - w)),
            min(GAP_Y + (k * CASCADE_STEP) % room_y, max(0, sh - h)),
            w,
            h,
        )
        for k in range(count)
    ]


def place_window(size: tuple[int, int], env: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """With ``ARENA_WINDOW_SLOT=i/n`` (set by ``arena up``): this window's tile of the
    display it opens on (``size`` is the largest it may be); puts the window there
    through ``SDL_VIDEO_WINDOW_POS`` and returns its size. Without it: ``size``."""
    slot = env.get(SLOT_ENV, "")
    index, _, count = slot.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        return size
    sizes = pygame.display.get_desktop_sizes() if pygame.display.get_init() else []
    if not sizes:
        return size
    x, y, w, h = tile_windows(sizes[0], int(count), size)[int(index)]
    os.environ["SDL_VIDEO_WINDOW_POS"] = f"{x},{y}"
    return (w, h)


class App:
    """One window over one session; ``frame()`` runs one turn of the loop.

    Over a rooms session (``client.roomsession.RoomSession``) the window has two
    screens: the room browser (``mode == "browser"``) and its room's table
    (``mode == "room"``, today's table screen on the room's table). Over a plain
    table session (``--offline``, ``FakeSession``) it shows that table only
    (``mode == "table"``). Every command the browser waits on has a deadline
    (``WAIT_S``) and says what it waits for.
    """

    def __init__(
        self,
        session: GameSession,
        name: str,
        size: tuple[int, int] = (1200, 800),
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self._ping: Pending | None = None
        self._now = now  # seconds; the tests pass a scripted clock
        self.ui = UiState(name, size)
        self.screen = pygame.display.set_mode(size, pygame.RESIZABLE)
        pygame.display.set_caption(f"Arena - {name}")
        self.fonts = render.load_fonts()
        self.running = True
        self.quit_requested = False
        self.rooms = session if hasattr(session, "quick_play") else None  # a RoomSession
        self.mode = "table" if self.rooms is None else "browser"
        self.browser = BrowserUi()
        self._wait_kind = ""  # what ``browser.waiting`` is: reclaim, join, create, leave...
        self._wait_room: str | None = None
        self._room_code: str | None = None  # the code of the private room this window created
        self._room_waiting_since: float | None = None  # in a room whose table lacks us
        self.vm: ViewModel = build_view(session, self.ui, self._now())
        self.bvm: BrowserView | None = None
        if self.rooms is not None:
            self._start_rooms()
            self.bvm = self._build_browser(self._now())

    # --- input ------------------------------------------------------------------------

    def handle(self, event: pygame.event.Event) -> None:
        if event.type == pygame.QUIT:
            self.quit()
        elif event.type == pygame.VIDEORESIZE:
            size = (max(1, event.w), max(1, event.h))
            if self.screen.get_size() != size:  # pygame 2 resizes on its own; tests do not
                self.screen = pygame.display.set_mode(size, pygame.RESIZABLE)
            self.ui.size = size
        elif event.type == pygame.KEYDOWN:
            self._key(event.key, getattr(event, "unicode", ""))
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            self.click(event.pos)

    def click(self, pos: tuple[int, int]) -> None:
        """Browser: the button or room under ``pos``. Table: shoot the open target drawn
        under ``pos``, showing the hit at once (optimistic)."""
        if self.mode == "browser":
            action = self.bvm.action_at(*pos) if self.bvm is not None else None
            if action is not None:
                self._browser_action(action)
            return
        vm = self.vm
        target = vm.target_at(*pos)
        if target is None or not vm.can_shoot:
            return
        if self.ui.has_marker(vm.game_number, vm.round_number, target.id):
            return  # already fired at it; the first answer decides
        why = vm.cannot_act("hit")
        if why is not None:
            self.ui.notify("error", why, self._now(), 2.0)
            return
        pending = self.session.submit(
            {"type": "hit", "round": vm.round_number, "target": target.id}
        )
        self.ui.fire_hit(vm.game_number, vm.round_number, target, pending, self._now())

    def _key(self, key: int, char: str = "") -> None:
        if self.mode == "browser":
            name = KEY_NAMES.get(key) or pygame.key.name(key)
            action = browser_key(self.browser, self._rows(), name, char)
            if action is not None:
                self._browser_action(action)
            return
        if key == pygame.K_q or (key == pygame.K_ESCAPE and self.mode == "table"):
            self.quit()
            return
        if self.mode == "room" and key in (pygame.K_l, pygame.K_ESCAPE):
            self._leave_room()
            return
        me = self.vm.me_row()
        if key == pygame.K_r:
            ready = not me.ready if me is not None else True
            self._command("ready", {"type": "ready", "ready": ready})
        elif key == pygame.K_s:
            self._command("start", {"type": "start"})
        elif key == pygame.K_m:
            self._command("rematch", {"type": "rematch"})

    def _command(self, label: str, cmd: dict) -> None:
        why = self.vm.cannot_act(label)
        if why is not None:
            self.ui.notify("error", why, self._now(), 2.0)
            return
        if self.vm.me_row() is None:
            self.ui.notify("error", f"{label}: not joined yet", self._now(), 2.0)
            return
        self.ui.watch(label, self.session.submit(cmd))

    def quit(self) -> None:
        self.running = False
        self.quit_requested = True

    # --- the rooms: browser commands and what they wait for ----------------------------

    def _rows(self) -> list[dict]:
        return sorted_rows(self.rooms.rows) if self.rooms is not None else []

    def _start_rooms(self) -> None:
        """At start: take back a saved seat, else join the room asked for, else browse."""
        rooms, name = self.rooms, self.ui.name
        saved = rooms.saved_seat()
        if saved is not None and str(saved.get("name", "")).casefold() == name.casefold():
            self._wait(
                "reclaim",
                rooms.reclaim(),
                saved.get("room"),
                f"getting back your seat in {rooms.room_name(saved.get('room'))} "
                f"as {saved['name']}",
            )
        elif rooms.room_wanted is not None:
            self._join_wanted()

    def _join_wanted(self) -> None:
        room = self.rooms.room_wanted
        self._wait(
            "join",
            self.rooms.join(self.ui.name, room=room),
            room,
            f"joining {self.rooms.room_name(room)} as {self.ui.name}",
        )

    def _browser_action(self, action: BrowserAction) -> None:
        rooms, name = self.rooms, self.ui.name
        if action.kind == "quit":
            self.quit()
            return
        if action.kind == "dialog":
            self.browser.dialog, self.browser.text = action.name, ""
            return
        assert self.bvm is not None and rooms is not None
        why = self.bvm.cannot_act(action.kind.replace("_", " "))
        if why is not None:
            self.ui.notify("error", why, self._now(), 2.0)
            return
        if action.kind == "join":
            self._wait(
                "join",
                rooms.join(name, room=action.room),
                action.room,
                f"joining {rooms.room_name(action.room)} as {name}",
            )
        elif action.kind == "code":
            self._wait(
                "join",
                rooms.join(name, code=action.code),
                None,
                f"joining the room of code {action.code} as {name}",
            )
        elif action.kind == "quick_play":
            self._wait("quick_play", rooms.quick_play(name), None, f"quick play as {name}")
        elif action.kind == "create":
            kind = "private room" if action.private else "room"
            self._wait(
                "create",
                rooms.create(action.name or "", name, private=action.private),
                None,
                f"creating {kind} {action.name} as {name}",
            )

    def _wait(self, kind: str, pending: Pending, room: str | None, text: str) -> None:
        now = self._now()
        self.browser.waiting = Waiting(f"{text}: waiting for the cluster", now + WAIT_S, pending)
        self.browser.dialog = None
        self._wait_kind, self._wait_room = kind, room
        self.mode = "browser"

    def _leave_room(self) -> None:
        why = self.vm.cannot_act("leave")
        if why is not None:
            self.ui.notify("error", why, self._now(), 2.0)
            return
        room = self.rooms.seat["room"] if self.rooms.seat else None
        self._wait("leave", self.rooms.leave(), room, f"leaving {self.rooms.room_name(room)}")

    def _check_wait(self, now: float) -> None:
        """Settle what the browser waits for: seated and shown, refused, or out of time."""
        waiting, rooms = self.browser.waiting, self.rooms
        if waiting is None or rooms is None:
            return
        pending: Pending = waiting.call
        if self._wait_kind == "leave":
            if pending.done or now > waiting.deadline:
                self.browser.waiting = None
                if pending.rejected or pending.error or not pending.done:
                    why = _why(pending, "no answer in time")
                    self.ui.notify("error", f"leave: {why}", now)
                if rooms.seat is not None and not pending.accepted:
                    self._enter_room()  # still seated: back to the table
            return
        seated = self._shown(self.session)
        if pending.accepted and seated:
            self.browser.waiting = None
            self._room_code = (pending.result or {}).get("code")  # private rooms only
            if self._room_code:
                self.ui.notify("info", f"private room: its code is {self._room_code}", now, 10.0)
            if self._wait_kind == "reclaim":
                self.ui.notify("info", f"welcome back, {self.ui.name}: your seat was kept", now)
            self._enter_room()
        elif pending.rejected or pending.error is not None or now > waiting.deadline:
            self.browser.waiting = None
            why = _why(pending, f"no answer in {WAIT_S:.0f} s ({waiting.text})")
            if self._wait_kind == "reclaim" and not pending.rejected:
                # no answer (the cluster is away): the seat may well be there, keep the token
                self.ui.notify("error", f"getting your seat back: {why}; trying again", now)
                self._wait(
                    "reclaim",
                    rooms.reclaim(),
                    self._wait_room,
                    waiting.text.rsplit(": waiting", 1)[0],
                )
                return
            if self._wait_kind == "reclaim":
                rooms.forget_saved_seat()
                self.ui.notify("error", f"your seat is gone ({why}): joining as new", now)
                if self._wait_room is not None:
                    self._wait(
                        "join",
                        rooms.join(self.ui.name, room=self._wait_room),
                        self._wait_room,
                        f"joining {rooms.room_name(self._wait_room)} as {self.ui.name}",
                    )
                elif rooms.room_wanted is not None:
                    self._join_wanted()
                return
            label = self._wait_kind.replace("_", " ")
            self.ui.notify("error", f"{label}: {why}", now)

    def _enter_room(self) -> None:
        notices = self.ui.notices
        self.ui = UiState(self.ui.name, self.ui.size, notices=notices)
        self._ping = None
        self.mode = "room"

    def _check_seat(self, now: float) -> None:
        """The seat decides the screen: a room whose seat went away without the player
        asking sends the window back to the browser; a seat held while browsing with
        nothing awaited (a join answered after its deadline) brings it to that room. In
        a room whose table does not show this window for ``WAIT_S``, say so (and
        again every ``WAIT_S``): the session keeps reading it."""
        rooms = self.rooms
        if rooms is None:
            return
        if self.mode == "room" and rooms.seat is None:
            self.mode = "browser"
            self.ui.notify(
                "error",
                "you are no longer seated in that room (you left, the "
                "grace period ended, or the room closed): pick a room",
                now,
            )
        elif self.mode == "browser" and rooms.seat is not None and self.browser.waiting is None:
            self._enter_room()
        if self.mode != "room" or self._shown(self.session):
            self._room_waiting_since = None
        elif self._room_waiting_since is None:
            self._room_waiting_since = now
        elif now - self._room_waiting_since >= WAIT_S:
            self._room_waiting_since = now
            room = rooms.room_name(rooms.seat["room"]) if rooms.seat else "the room"
            self.ui.notify(
                "error",
                f"{room}: its state has not arrived in {WAIT_S:.0f} s; still reading it "
                "(L leaves the room)",
                now,
            )

    @staticmethod
    def _shown(session: GameSession) -> bool:
        state = session.state
        return state is not None and game_view.player_of(state, session.client_id) is not None

    def _build_browser(self, now: float) -> BrowserView:
        rooms = self.rooms
        assert rooms is not None
        cluster = rooms.cluster
        return build_browser(
            rooms.rows,
            self.browser,
            me=self.ui.name,
            size=self.ui.size,
            cluster=cluster,
            quorum=Quorum.of(
                cluster,
                now - self.ui.leaderless_since if self.ui.leaderless_since is not None else 0.0,
            ),
            offline=bool(getattr(rooms, "offline", False)),
            rtt_ms=rooms.rtt_ms,
            state_index=getattr(rooms, "list_index", 0),
            notices=tuple(notice_views(self.ui, now)),
            synced=rooms.synced,
            now=now,
        )

    # --- update and draw --------------------------------------------------------------

    def update(self) -> None:
        session, now = self.session, self._now()
        session.poll()
        self.screen = pygame.display.get_surface() or self.screen  # resized by the window
        self.ui.size = self.screen.get_size()
        self.ui.watch_cluster(session.cluster, now)
        if self.rooms is not None:
            self._check_wait(now)
            self._check_seat(now)
        if self.mode == "browser":
            self.ui.update(None, session.client_id, session.drain_notices(), now)
            self.bvm = self._build_browser(now)
            return
        self.ui.update(session.state, session.client_id, session.drain_notices(), now)
        if self.mode == "table" and self.ui.wants_join(session.state, session.client_id, now):
            self.ui.joining(session.submit({"type": "join", "name": self.ui.name}), now)
        self._keep_present(session)
        room = (
            self.rooms.room_name(self.rooms.seat["room"])
            if (self.rooms is not None and self.rooms.seat)
            else ""
        )
        if room and self._room_code:
            room += f" (private, code {self._room_code})"
        self.vm = build_view(
            session,
            self.ui,
            now,
            room_name=room,
            help_text=ROOM_HELP_TEXT if self.mode == "room" else None,
            leaderboard=getattr(self.rooms, "leaderboard", None),
        )

    def _keep_present(self, session: GameSession) -> None:
        """A quiet player pings now and then, so the table does not drop it as idle."""
        state = session.state
        if state is None or (self._ping is not None and not self._ping.done):
            return
        if Quorum.of(session.cluster).lost:
            return  # it could not commit; the table may drop us meanwhile, we then rejoin
        if game_view.needs_ping(state, session.client_id, session.leader_time_ms()):
            self._ping = session.submit({"type": "ping"})

    def draw(self) -> None:
        if self.mode == "browser" and self.bvm is not None:
            render.draw_browser(self.screen, self.bvm, self.fonts)
        else:
            render.draw(self.screen, self.vm, self.fonts)
        pygame.display.flip()

    def frame(self) -> None:
        for event in pygame.event.get():
            self.handle(event)
        if self.running:
            self.update()
            self.draw()

    def leave(self) -> None:
        """The player closed the window. At a table: give up the seat. In a room: keep
        it for the grace period (``disconnect``), so reopening the window gets it back.
        A bounded wait, then go."""
        if self.rooms is not None:
            if self.rooms.seat is None:
                return
            pending = self.rooms.disconnect()
        elif self.vm.me_row() is None:
            return
        else:
            pending = self.session.submit({"type": "leave"})
        deadline = self._now() + LEAVE_WAIT_S
        while not pending.done and self._now() < deadline:
            self.session.poll()
            time.sleep(0.005)


def _why(pending: Pending, default: str) -> str:
    if pending.rejected:
        return str((pending.result or {}).get("message") or (pending.result or {}).get("error"))
    if pending.error is not None:
        return f"no answer ({pending.error})"
    return default


def run(
    session: GameSession,
    name: str,
    fps: int = 60,
    size: tuple[int, int] = (1200, 800),
    max_frames: int | None = None,
    screenshot: str | None = None,
) -> int:
    """Open the window and play until the player quits (or ``max_frames`` frames ran).

    ``screenshot``: save the last frame to this PNG path. The player's seat is
    given up only when they quit, not when ``max_frames`` ends a test run.
    Returns the exit status (0).
    """
    pygame.init()
    try:
        size = place_window(size)
        app = App(session, name, size)
        clock = pygame.time.Clock()
        frames = 0
        while app.running and (max_frames is None or frames < max_frames):
            clock.tick(fps)
            app.frame()
            frames += 1
        if screenshot is not None:
            pygame.image.save(app.screen, screenshot)
        if app.quit_requested:
            app.leave()
        return 0
    finally:
        session.close()
        pygame.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m client.app",
        description="Arena player window. Use `arena play` to join a cluster; "
        "--offline plays against simulated opponents in this process.",
    )
    parser.add_argument("--offline", action="store_true", help="demo without any server")
    parser.add_argument("--name", default="you", help="player name (default: you)")
    parser.add_argument("--opponents", default="bob,cy", help="comma-separated opponent names")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fps", type=int, default=60)
    parser.add_argument("--size", default="1200x800", help="window size WxH")
    parser.add_argument("--frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--screenshot", default=None, help="save the last frame to this PNG")
    args = parser.parse_args(argv)
    if not args.offline:
        parser.error("only --offline is available here; `arena play` connects to a cluster")
    width, _, height = args.size.partition("x")
    opponents = tuple(n for n in args.opponents.split(",") if n)
    session = FakeSession.with_opponents(args.name, opponents, seed=args.seed)
    return run(
        session,
        args.name,
        fps=args.fps,
        size=(int(width), int(height)),
        max_frames=args.frames,
        screenshot=args.screenshot,
    )


if __name__ == "__main__":
    raise SystemExit(main())
