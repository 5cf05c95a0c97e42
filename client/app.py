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
from .fake import FakeSession
from .viewmodel import (
    MIN_SIZE,
    GameSession,
    Pending,
    Quorum,
    UiState,
    ViewModel,
    build_view,
)

LEAVE_WAIT_S = 0.5  # on quit, how long to wait for the "leave" to be answered

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
    """One window over one session; ``frame()`` runs one turn of the loop."""

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
        self.vm: ViewModel = build_view(session, self.ui, self._now())

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
            self._key(event.key)
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            self.click(event.pos)

    def click(self, pos: tuple[int, int]) -> None:
        """Shoot the open target drawn under ``pos``, showing the hit at once (optimistic)."""
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

    def _key(self, key: int) -> None:
        if key in (pygame.K_q, pygame.K_ESCAPE):
            self.quit()
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

    # --- update and draw --------------------------------------------------------------

    def update(self) -> None:
        session, now = self.session, self._now()
        session.poll()
        self.screen = pygame.display.get_surface() or self.screen  # resized by the window
        self.ui.size = self.screen.get_size()
        self.ui.update(session.state, session.client_id, session.drain_notices(), now)
        self.ui.watch_cluster(session.cluster, now)
        if self.ui.wants_join(session.state, session.client_id, now):
            self.ui.joining(session.submit({"type": "join", "name": self.ui.name}), now)
        self._keep_present(session)
        self.vm = build_view(session, self.ui, now)

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
        render.draw(self.screen, self.vm, self.fonts)
        pygame.display.flip()

    def frame(self) -> None:
        for event in pygame.event.get():
            self.handle(event)
        if self.running:
            self.update()
            self.draw()

    def leave(self) -> None:
        """The player closed the window: give up the seat (bounded wait, then go)."""
        if self.vm.me_row() is None:
            return
        pending = self.session.submit({"type": "leave"})
        deadline = self._now() + LEAVE_WAIT_S
        while not pending.done and self._now() < deadline:
            self.session.poll()
            time.sleep(0.005)


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
