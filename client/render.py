"""Draw a ``ViewModel`` onto a pygame surface; reads the view, never changes it.

``draw(surface, vm, fonts)`` paints the whole window: header, arena (targets,
optimistic markers, or the lobby / countdown / intermission / game over
screens), scoreboard, cluster panel, notice banner and help line. Positions
come from ``vm.layout``, so the picture follows the window size. Colours are
named here once; the tests sample pixels against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pygame

from .browser import BrowserView, RoomRowView
from .viewmodel import (
    PAD,
    MarkerView,
    NodeRow,
    PlayerRow,
    Rect,
    TargetView,
    ViewModel,
    seconds_left,
)

BACKGROUND = (16, 18, 28)
PANEL = (30, 34, 50)
PANEL_EDGE = (58, 64, 88)
ARENA = (36, 44, 64)
ARENA_GRID = (44, 53, 76)
TEXT = (232, 234, 242)
MUTED = (150, 156, 176)
TARGET = (226, 72, 58)
TARGET_RING = (245, 240, 232)
TAKEN = (96, 100, 114)
MINE = (84, 214, 122)
PENDING = (250, 212, 70)
LOST = (236, 64, 64)
HOST = (246, 196, 60)
READY = (84, 214, 122)
NOTICE_FAILOVER = (214, 150, 40)
NOTICE_ERROR = (180, 48, 48)
ROLE_COLOURS = {
    "leader": (70, 206, 110),
    "follower": (90, 150, 235),
    "candidate": (240, 180, 40),
    "pre-candidate": (210, 160, 70),
    "down": (214, 58, 58),
    "unknown": (120, 124, 138),
}
PLAYER_COLOURS = [
    (96, 196, 255),
    (255, 140, 200),
    (170, 130, 255),
    (255, 170, 80),
    (120, 230, 200),
    (230, 230, 110),
    (255, 110, 110),
    (180, 200, 140),
]
PHASE_TITLES = {
    "lobby": "Lobby",
    "countdown": "Get ready",
    "intermission": "Intermission",
    "game_over": "Game over",
}


@dataclass(frozen=True, slots=True)
class Fonts:
    small: pygame.font.Font
    body: pygame.font.Font
    title: pygame.font.Font
    big: pygame.font.Font
    huge: pygame.font.Font


def load_fonts() -> Fonts:
    """pygame's default font at the sizes the window uses (needs no font files)."""
    if not pygame.font.get_init():
        pygame.font.init()
    return Fonts(*(pygame.font.Font(None, size) for size in (20, 24, 32, 46, 110)))


def player_colour(index: int) -> tuple[int, int, int]:
    return MUTED if index < 0 else PLAYER_COLOURS[index % len(PLAYER_COLOURS)]


def draw(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    surface.fill(BACKGROUND)
    _header(surface, vm, fonts)
    _arena(surface, vm, fonts)
    _scoreboard(surface, vm, fonts)
    _cluster(surface, vm, fonts)
    _banner(surface, vm, fonts)
    _text(surface, fonts.small, vm.help_text, MUTED, center=_center(vm.layout.help))


# --- small helpers ------------------------------------------------------------------------


def _center(rect: Rect) -> tuple[int, int]:
    return rect[0] + rect[2] // 2, rect[1] + rect[3] // 2


def _text(
    surface: pygame.Surface,
    font: pygame.font.Font,
    text: str,
    colour: tuple[int, int, int],
    *,
    topleft: tuple[int, int] | None = None,
    center: tuple[int, int] | None = None,
    topright: tuple[int, int] | None = None,
    max_width: int | None = None,
) -> pygame.Rect:
    if max_width is not None:
        while len(text) > 1 and font.size(text)[0] > max_width:
            text = text[:-2] + "."
    image = font.render(text, True, colour)
    where = image.get_rect()
    if center is not None:
        where.center = center
    elif topright is not None:
        where.topright = topright
    else:
        where.topleft = topleft or (0, 0)
    surface.blit(image, where)
    return where


def _panel(surface: pygame.Surface, rect: Rect, colour: tuple[int, int, int] = PANEL) -> None:
    pygame.draw.rect(surface, colour, rect, border_radius=8)
    pygame.draw.rect(surface, PANEL_EDGE, rect, width=1, border_radius=8)


def _overlay(surface: pygame.Surface, rect: Rect, alpha: int = 200) -> None:
    shade = pygame.Surface((rect[2], rect[3]), pygame.SRCALPHA)
    shade.fill((*BACKGROUND, alpha))
    surface.blit(shade, rect[:2])


def _clock(ms: int | None) -> str:
    """"3 s", or "1:05" from a minute up; rounded as the big countdown is (``seconds_left``)."""
    if ms is None:
        return ""
    seconds = seconds_left(ms)
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60}:{seconds % 60:02d}"


# --- header -------------------------------------------------------------------------------


def _header(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    x, y, w, h = vm.layout.header
    pygame.draw.rect(surface, PANEL, vm.layout.header)
    pygame.draw.line(surface, PANEL_EDGE, (x, y + h - 1), (x + w, y + h - 1))
    if vm.phase == "round":
        title = f"Round {vm.round_number}/{vm.rounds_total}"
    else:
        title = PHASE_TITLES.get(vm.phase or "", "Arena")
    _text(surface, fonts.title, title, TEXT, topleft=(PAD + 4, y + 10))
    if vm.phase is None:
        sub = "no state yet"
    elif vm.phase == "lobby":
        sub = f"game {vm.game_number + 1} next"
    else:
        sub = f"game {vm.game_number}"
    if vm.phase == "intermission":
        sub += f"  -  next: round {vm.round_number + 1}/{vm.rounds_total}"
    if vm.room_name:
        sub = f"{vm.room_name}  -  {sub}"
    _text(surface, fonts.small, sub, MUTED, topleft=(PAD + 4, y + 38))
    if vm.time_left_ms is not None:
        urgent = vm.phase == "round" and vm.time_left_ms < 5000
        _text(
            surface,
            fonts.big,
            _clock(vm.time_left_ms),
            LOST if urgent else TEXT,
            center=(x + w // 2, y + h // 2),
        )
    me = next((row for row in vm.members if row.me), None)
    tags = []
    if me is not None and me.host:
        tags.append("host")
    if vm.status == "spectating":
        tags.append("spectator")
    if vm.offline:
        tags.append("offline")
    label = vm.me + (f"  ({', '.join(tags)})" if tags else "")
    colour = player_colour(me.colour) if me is not None else MUTED
    _text(surface, fonts.title, label, colour, topright=(x + w - PAD - 4, y + 10))
    status_text = vm.quorum.text or vm.status_text
    if status_text:
        bad = vm.status == "join_failed" or vm.quorum.lost
        warn = bool(vm.quorum.text)  # a long election: worth a look, nothing is refused
        _text(
            surface,
            fonts.small,
            status_text,
            LOST if bad else NOTICE_FAILOVER if warn else MUTED,
            topright=(x + w - PAD - 4, y + 38),
            max_width=w // 2 - 80,
        )


# --- arena --------------------------------------------------------------------------------


def _arena(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    layout = vm.layout
    pygame.draw.rect(surface, ARENA, layout.arena)
    ax, ay, aw, ah = layout.arena
    step = max(24, layout.length(100))
    for gx in range(ax + step, ax + aw, step):
        pygame.draw.line(surface, ARENA_GRID, (gx, ay), (gx, ay + ah - 1))
    for gy in range(ay + step, ay + ah, step):
        pygame.draw.line(surface, ARENA_GRID, (ax, gy), (ax + aw - 1, gy))
    pygame.draw.rect(surface, PANEL_EDGE, layout.arena, width=2)
    clip = surface.get_clip()
    surface.set_clip(layout.arena)
    for target in vm.targets:
        _target(surface, vm, target, fonts)
    for marker in vm.markers:
        _marker(surface, vm, marker, fonts)
    surface.set_clip(clip)
    if vm.phase is None:
        _text(surface, fonts.title, vm.status_text, MUTED, center=_center(layout.arena))
    elif vm.phase == "lobby":
        _lobby(surface, vm, fonts)
    elif vm.phase == "countdown":
        _countdown(surface, vm, fonts)
    elif vm.phase in ("intermission", "game_over"):
        _results(surface, vm, fonts)
    if vm.quorum.lost:
        _no_majority(surface, vm, fonts)


def _no_majority(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    """Over whatever the arena shows: the cluster cannot commit, and what the window does."""
    _overlay(surface, vm.layout.arena, 90)
    ax, ay, aw, ah = vm.layout.arena
    width, height = min(aw - 40, 560), min(ah - 40, 136)
    # at the arena's foot, so the last committed state stays readable above it
    box = (ax + (aw - width) // 2, ay + ah - height - 16, width, height)
    _panel(surface, box)
    pygame.draw.rect(surface, LOST, box, width=3, border_radius=8)
    x, y, inner = box[0] + 24, box[1] + 12, width - 48
    _text(surface, fonts.title, "Lost quorum: read-only", LOST, topleft=(x, y), max_width=inner)
    _text(surface, fonts.body, vm.quorum.text, TEXT, topleft=(x, y + 42), max_width=inner)
    _text(
        surface,
        fonts.small,
        "the last committed state is shown; commands wait for a majority of nodes",
        MUTED,
        topleft=(x, y + 76),
        max_width=inner,
    )
    _text(
        surface,
        fonts.small,
        "you rejoin by yourself when the cluster is back",
        MUTED,
        topleft=(x, y + 98),
        max_width=inner,
    )


def _target(surface: pygame.Surface, vm: ViewModel, t: TargetView, fonts: Fonts) -> None:
    centre, r = vm.layout.to_screen(t.x, t.y), vm.layout.length(t.r)
    if t.taken_by is None:
        pygame.draw.circle(surface, TARGET, centre, r)
        pygame.draw.circle(surface, TARGET_RING, centre, max(2, r * 2 // 3), width=max(2, r // 6))
        pygame.draw.circle(surface, TARGET_RING, centre, r, width=2)
        return
    pygame.draw.circle(surface, TAKEN, centre, r)
    pygame.draw.circle(surface, MINE if t.mine else PANEL_EDGE, centre, r, width=3 if t.mine else 2)
    initial = t.taken_by[:1].upper()
    _text(
        surface,
        fonts.title if r < 30 else fonts.big,
        initial,
        player_colour(t.colour),
        center=centre,
    )


def _marker(surface: pygame.Surface, vm: ViewModel, m: MarkerView, fonts: Fonts) -> None:
    cx, cy = vm.layout.to_screen(m.x, m.y)
    r = vm.layout.length(m.r)
    if m.status == "pending":
        # a ring broken into arcs, turning with time, so a waiting hit looks alive
        turn = (vm.now * 6.0) % 6.283
        box = pygame.Rect(cx - r - 6, cy - r - 6, 2 * r + 12, 2 * r + 12)
        for k in range(4):
            start = turn + k * 1.571
            pygame.draw.arc(surface, PENDING, box, start, start + 0.9, 4)
        return
    colour = MINE if m.status == "confirmed" else LOST
    rise = round((1.0 - m.fade) * 18)
    pygame.draw.circle(surface, colour, (cx, cy), r + 6, width=4)
    if m.status == "lost":
        d = r * 2 // 3
        pygame.draw.line(surface, LOST, (cx - d, cy - d), (cx + d, cy + d), 5)
        pygame.draw.line(surface, LOST, (cx - d, cy + d), (cx + d, cy - d), 5)
    label_y = cy - r - 18 - rise
    if label_y < vm.layout.arena[1] + 12:
        label_y = cy + r + 18 + rise
    half = fonts.body.size(m.text)[0] // 2 + 4
    ax, _, aw, _ = vm.layout.arena
    label_x = min(max(cx, ax + half), ax + aw - half)  # keep the words inside the arena
    _text(surface, fonts.body, m.text, colour, center=(label_x, label_y))


def _lobby(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    ax, ay, aw, ah = vm.layout.arena
    width = min(aw - 40, 520)
    rows = max(1, len(vm.members))
    height = min(ah - 40, 150 + 34 * rows + (34 if vm.spectators else 0))
    box = (ax + (aw - width) // 2, ay + (ah - height) // 2, width, height)
    _panel(surface, box)
    x, y = box[0] + 24, box[1] + 18
    _text(surface, fonts.title, f"Lobby - game {vm.game_number + 1}", TEXT, topleft=(x, y))
    y += 44
    if not vm.members:
        _text(surface, fonts.body, "nobody here yet", MUTED, topleft=(x, y))
        y += 34
    for row in vm.members:
        _player_line(surface, fonts, row, x, y, box[0] + width - 24)
        y += 34
    if vm.spectators:
        _text(
            surface,
            fonts.small,
            "spectators: " + ", ".join(vm.spectators),
            MUTED,
            topleft=(x, y + 6),
            max_width=width - 48,
        )
        y += 34
    _text(
        surface, fonts.body, "press R to toggle ready, S to start (host)", TEXT, topleft=(x, y + 8)
    )
    _text(surface, fonts.small, vm.lobby_hint, MUTED, topleft=(x, y + 36), max_width=width - 48)


def _player_line(
    surface: pygame.Surface, fonts: Fonts, row: PlayerRow, x: int, y: int, right: int
) -> None:
    pygame.draw.circle(surface, player_colour(row.colour), (x + 8, y + 10), 7)
    name_rect = _text(
        surface,
        fonts.body,
        row.name + ("  (you)" if row.me else ""),
        TEXT if row.me else MUTED,
        topleft=(x + 24, y + 2),
    )
    if row.host:
        _crown(surface, name_rect.right + 18, y + 10)
        _text(surface, fonts.small, "host", HOST, topleft=(name_rect.right + 32, y + 4))
    ready = "READY" if row.ready else "not ready"
    _text(surface, fonts.body, ready, READY if row.ready else MUTED, topright=(right, y + 2))


def _crown(surface: pygame.Surface, cx: int, cy: int) -> None:
    points = [
        (cx - 9, cy + 6),
        (cx - 9, cy - 5),
        (cx - 4, cy),
        (cx, cy - 8),
        (cx + 4, cy),
        (cx + 9, cy - 5),
        (cx + 9, cy + 6),
    ]
    pygame.draw.polygon(surface, HOST, points)


def _countdown(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    cx, cy = _center(vm.layout.arena)
    seconds = seconds_left(vm.time_left_ms or 0)
    _text(surface, fonts.title, f"Round 1/{vm.rounds_total} starts in", MUTED, center=(cx, cy - 70))
    _text(surface, fonts.huge, str(seconds), TEXT, center=(cx, cy + 10))


def _results(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    _overlay(surface, vm.layout.arena, 170)
    ax, ay, aw, ah = vm.layout.arena
    width = min(aw - 40, 460)
    height = min(ah - 40, 150 + 32 * max(1, len(vm.standings)))
    box = (ax + (aw - width) // 2, ay + (ah - height) // 2, width, height)
    _panel(surface, box)
    x, y, right = box[0] + 24, box[1] + 18, box[0] + width - 24
    if vm.phase == "game_over":
        title = "Game over"
        if not vm.winners:
            sub = "no winner"
        else:
            sub = ("Winner: " if len(vm.winners) == 1 else "Winners: ") + ", ".join(vm.winners)
        hint = "M: rematch (host)"
    else:
        title = f"Round {vm.round_number}/{vm.rounds_total} over"
        sub = f"round {vm.round_number + 1} starts in {_clock(vm.time_left_ms)}"
        hint = ""
    _text(surface, fonts.title, title, TEXT, topleft=(x, y))
    _text(
        surface,
        fonts.body,
        sub,
        HOST if vm.winners else MUTED,
        topleft=(x, y + 36),
        max_width=width - 48,
    )
    y += 76
    for row in vm.standings:
        mark = "*" if row.winner else ""
        pygame.draw.circle(surface, player_colour(row.colour), (x + 8, y + 10), 7)
        _text(
            surface,
            fonts.body,
            f"{row.name}{mark}",
            TEXT if row.me else MUTED,
            topleft=(x + 24, y + 2),
        )
        _text(surface, fonts.body, str(row.score or 0), TEXT, topright=(right, y + 2))
        y += 32
    if hint:
        _text(surface, fonts.small, hint, MUTED, topleft=(x, box[1] + height - 28))


# --- sidebar ------------------------------------------------------------------------------


def _scoreboard(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    """This game's scores (while one runs or just ended), then the all-time leaderboard."""
    rect = vm.layout.scores
    _panel(surface, rect)
    x, y, w, h = rect
    left, right, bottom = x + 14, x + w - 14, y + h - 8
    if vm.phase not in (None, "lobby"):
        _text(surface, fonts.body, "Scoreboard", TEXT, topleft=(left, y + 12))
        if vm.phase == "round":
            open_count = sum(1 for t in vm.targets if t.taken_by is None)
            noun = "target" if open_count == 1 else "targets"
            _text(
                surface, fonts.small, f"{open_count} {noun} open", MUTED, topright=(right, y + 15)
            )
        y += 42
        for row in vm.standings:
            if y + 28 > bottom:
                return
            if row.me:
                pygame.draw.rect(surface, PANEL_EDGE, (x + 6, y - 3, w - 12, 28), border_radius=5)
            pygame.draw.circle(surface, player_colour(row.colour), (left + 6, y + 10), 6)
            _text(
                surface,
                fonts.body,
                row.name + ("*" if row.winner else ""),
                TEXT if row.me else MUTED,
                topleft=(left + 20, y + 2),
                max_width=w - 90,
            )
            _text(surface, fonts.body, str(row.score or 0), TEXT, topright=(right, y + 2))
            y += 30
        if vm.spectators and y + 48 <= bottom:
            _text(
                surface,
                fonts.small,
                "spectating: " + ", ".join(vm.spectators),
                MUTED,
                topleft=(left, y + 8),
                max_width=w - 28,
            )
            y += 30
        y += 18
        if not vm.leaderboard or y + 60 > bottom:
            return
        pygame.draw.line(surface, PANEL_EDGE, (left, y - 8), (right, y - 8))
    _text(surface, fonts.body, "Leaderboard", TEXT, topleft=(left, y + 12))
    _text(surface, fonts.small, "wins", MUTED, topright=(right - 44, y + 15))
    _text(surface, fonts.small, "pts", MUTED, topright=(right, y + 15))
    y += 42
    if not vm.leaderboard:
        _text(surface, fonts.small, "no games played yet", MUTED, topleft=(left, y))
    for name, wins, points in vm.leaderboard:
        if y + 24 > bottom:
            break
        _text(surface, fonts.body, name, MUTED, topleft=(left, y), max_width=w - 110)
        _text(surface, fonts.body, str(wins), TEXT, topright=(right - 44, y))
        _text(surface, fonts.body, str(points), TEXT, topright=(right, y))
        y += 26


def _cluster(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    rect = vm.layout.cluster
    _panel(surface, rect)
    x, y, w, h = rect
    left, right = x + 14, x + w - 14
    if vm.offline:  # no nodes at all: the rows below are acted out in this process
        _text(surface, fonts.body, "Simulated cluster", HOST, topleft=(left, y + 10))
        _text(
            surface,
            fonts.small,
            "offline demo: no real nodes",
            MUTED,
            topleft=(left, y + 33),
            max_width=right - left,
        )
    else:
        _text(surface, fonts.body, "Cluster", TEXT, topleft=(left, y + 10))
        rtt = "rtt -" if vm.rtt_ms is None else f"rtt {vm.rtt_ms:.1f} ms"
        _text(surface, fonts.small, rtt, MUTED, topright=(right, y + 13))
        _text(
            surface, fonts.small, f"state at index {vm.state_index}", MUTED, topleft=(left, y + 33)
        )
    columns = _node_columns(fonts, vm.cluster, left, right)
    row_y = y + 56
    for node in vm.cluster:
        if row_y + 20 > y + h:
            break
        _node_row(surface, fonts, node, left, right, row_y, columns)
        row_y += 24


@dataclass(frozen=True, slots=True)
class NodeColumns:
    """Where the role column starts and in which font, the same for every row."""

    role_x: int
    role_font: pygame.font.Font
    term_left: int  # the term column's leftmost start (the widest "term N")


def _node_columns(
    fonts: Fonts, nodes: tuple[NodeRow, ...], left: int, right: int, gap: int = 10
) -> NodeColumns:
    """One role column for all rows: at ``left + 84`` when the widest role fits before
    the widest term, else right after the widest id; in the small font when even that
    is too narrow ("pre-candidate" in a narrow sidebar)."""
    term_left = right - max((fonts.small.size(f"term {n.term}")[0] for n in nodes), default=0)
    id_right = left + 26 + max((fonts.body.size(n.id)[0] for n in nodes), default=0)
    for font in (fonts.body, fonts.small):
        role_w = max((font.size(n.role)[0] for n in nodes), default=0)
        for role_x in (max(left + 84, id_right + gap), id_right + gap):
            if role_x + role_w <= term_left - gap:
                return NodeColumns(role_x, font, term_left)
    # not even that: ids are cut to make room (see _node_row)
    role_w = max((fonts.small.size(n.role)[0] for n in nodes), default=0)
    return NodeColumns(max(left + 46, term_left - gap - role_w), fonts.small, term_left)


def _node_row(
    surface: pygame.Surface,
    fonts: Fonts,
    node: NodeRow,
    left: int,
    right: int,
    y: int,
    columns: NodeColumns | None = None,
) -> tuple[pygame.Rect, pygame.Rect]:
    """``> n1  follower  linked term 4``, in the panel's columns (``_node_columns``), so
    the role never runs into the term column. Returns the role's and the term's rects."""
    columns = columns or _node_columns(fonts, (node,), left, right)
    colour = ROLE_COLOURS.get(node.role, ROLE_COLOURS["unknown"])
    if node.connected:  # the node this window talks to: highlighted, with an arrow
        pygame.draw.rect(
            surface, PANEL_EDGE, (left - 8, y - 3, right - left + 16, 24), border_radius=5
        )
        pygame.draw.polygon(
            surface, TEXT, [(left - 3, y + 3), (left + 4, y + 9), (left - 3, y + 15)]
        )
    pygame.draw.circle(surface, colour, (left + 14, y + 9), 6)
    term = _text(
        surface,
        fonts.small,
        f"term {node.term}",
        TEXT if node.connected else MUTED,
        topright=(right, y + 3),
    )
    _text(
        surface,
        fonts.body,
        node.id,
        TEXT if node.connected else MUTED,
        topleft=(left + 26, y),
        max_width=max(20, columns.role_x - left - 26 - 10),
    )
    small = columns.role_font is fonts.small
    role = _text(
        surface,
        columns.role_font,
        node.role,
        colour,
        topleft=(columns.role_x, y + (3 if small else 0)),
        max_width=max(8, term.left - 10 - columns.role_x),
    )
    linked_w = fonts.small.size("linked")[0]
    if node.connected and role.right + 10 + linked_w < term.left - 8:
        _text(surface, fonts.small, "linked", TEXT, topright=(term.left - 8, y + 3))
    return role, term


# --- banner -------------------------------------------------------------------------------


def _banner(surface: pygame.Surface, vm: ViewModel, fonts: Fonts) -> None:
    if not vm.notices:
        return
    x, y, w, h = vm.layout.banner
    for notice in reversed(vm.notices):  # newest on top
        colour = NOTICE_ERROR if notice.kind == "error" else NOTICE_FAILOVER
        band = pygame.Surface((w, h), pygame.SRCALPHA)
        band.fill((*colour, round(90 + 150 * notice.fade)))
        surface.blit(band, (x, y))
        _text(
            surface,
            fonts.body,
            notice.text,
            TEXT,
            center=(x + w // 2, y + h // 2),
            max_width=w - 24,
        )
        y += h + 2


# --- the room browser ---------------------------------------------------------------------

SELECTED = (52, 62, 92)
PHASE_COLOURS = {"lobby": READY, "starting": HOST, "playing": PENDING, "game over": MUTED}


def draw_browser(surface: pygame.Surface, vm: BrowserView, fonts: Fonts) -> None:
    """The room browser: header, the room list, the buttons, the cluster panel, notices,
    an open dialog on top, and the help line. Reads ``vm`` only."""
    surface.fill(BACKGROUND)
    layout = vm.layout
    x, y, w, h = layout.header
    pygame.draw.rect(surface, PANEL, layout.header)
    pygame.draw.line(surface, PANEL_EDGE, (x, y + h - 1), (x + w, y + h - 1))
    _text(surface, fonts.title, "Rooms", TEXT, topleft=(PAD + 4, y + 10))
    _text(surface, fonts.small, "pick a room to play in, or quick play", MUTED,
          topleft=(PAD + 4, y + 38))
    label = vm.me + ("  (offline)" if vm.offline else "")
    _text(surface, fonts.title, label, TEXT, topright=(x + w - PAD - 4, y + 10))
    status = vm.quorum.text or vm.status_text
    if status:
        colour = LOST if vm.quorum.lost else NOTICE_FAILOVER if vm.quorum.text else PENDING
        _text(surface, fonts.small, status, colour, topright=(x + w - PAD - 4, y + 38),
              max_width=w - 300)
    _room_list(surface, vm, fonts)
    _panel(surface, layout.side)
    sx, sy, sw, _ = layout.side
    _text(surface, fonts.body, "Play", TEXT, topleft=(sx + 14, sy + 14))
    for button in vm.buttons:
        busy = bool(vm.status_text) or vm.dialog is not None
        pygame.draw.rect(surface, PANEL_EDGE if busy else SELECTED, button.rect, border_radius=8)
        pygame.draw.rect(surface, TEXT if not busy else MUTED, button.rect, width=1,
                         border_radius=8)
        _text(surface, fonts.body, button.label, MUTED if busy else TEXT,
              center=_center(button.rect))
    _cluster(surface, vm, fonts)  # type: ignore[arg-type]
    if vm.dialog is not None:
        _dialog(surface, vm, fonts)
    _banner(surface, vm, fonts)  # type: ignore[arg-type]
    _text(surface, fonts.small, vm.help_text, MUTED, center=_center(layout.help))


def _room_list(surface: pygame.Surface, vm: BrowserView, fonts: Fonts) -> None:
    _panel(surface, vm.layout.rooms)
    x, y, w, h = vm.layout.rooms
    left, right = x + 20, x + w - 20
    _text(surface, fonts.body, "Open rooms", TEXT, topleft=(left, y + 10))
    columns = {"name": left + 4, "phase": left + int((w - 40) * 0.48),
               "players": left + int((w - 40) * 0.68)}
    for label, cx in (("room", columns["name"]), ("phase", columns["phase"]),
                      ("players", columns["players"])):
        _text(surface, fonts.small, label, MUTED, topleft=(cx, y + 36))
    _text(surface, fonts.small, "led by", MUTED, topright=(right - 4, y + 36))
    if not vm.rows:
        _text(surface, fonts.body, vm.empty_text, MUTED, center=(x + w // 2, y + h // 2))
    for row in vm.rows:
        _room_row(surface, fonts, row, columns, right)


def _room_row(surface: pygame.Surface, fonts: Fonts, row: RoomRowView,
              columns: dict[str, int], right: int) -> None:
    rx, ry, rw, rh = row.rect
    if row.selected:
        pygame.draw.rect(surface, SELECTED, row.rect, border_radius=6)
        pygame.draw.rect(surface, TEXT, row.rect, width=1, border_radius=6)
    cy = ry + rh // 2
    _text(surface, fonts.body, row.name, TEXT, topleft=(columns["name"], cy - 9),
          max_width=columns["phase"] - columns["name"] - 10)
    _text(surface, fonts.body, row.phase, PHASE_COLOURS.get(row.phase, MUTED),
          topleft=(columns["phase"], cy - 9))
    count = f"{row.players}/{row.max_players}" + ("  full" if row.full else "")
    _text(surface, fonts.body, count, LOST if row.full else TEXT,
          topleft=(columns["players"], cy - 9))
    _text(surface, fonts.small, row.leader or "-", MUTED, topright=(right - 4, cy - 6))


def _dialog(surface: pygame.Surface, vm: BrowserView, fonts: Fonts) -> None:
    _overlay(surface, (0, 0, *surface.get_size()), 150)
    sw, sh = surface.get_size()
    width, height = min(520, sw - 40), 190
    box = (sw // 2 - width // 2, sh // 2 - height // 2, width, height)
    _panel(surface, box)
    x, y = box[0] + 24, box[1] + 16
    title = "Create a room" if vm.dialog == "create" else "Join a private room"
    _text(surface, fonts.title, title, TEXT, topleft=(x, y))
    field = (x, y + 48, width - 48, 40)
    pygame.draw.rect(surface, BACKGROUND, field, border_radius=6)
    pygame.draw.rect(surface, TEXT, field, width=1, border_radius=6)
    prompt = vm.dialog_text + "_"
    _text(surface, fonts.title, prompt, TEXT, topleft=(x + 10, y + 55), max_width=width - 68)
    if vm.dialog == "create":
        mark = "[x]" if vm.private else "[ ]"
        _text(surface, fonts.body, f"{mark} private (joined by code only; Tab toggles)",
              HOST if vm.private else MUTED, topleft=(x, y + 104))
    else:
        _text(surface, fonts.body, "the host sees the code in their room", MUTED,
              topleft=(x, y + 104))
    _text(surface, fonts.small, "Enter: go    Esc: cancel", MUTED, topleft=(x, y + 140))
