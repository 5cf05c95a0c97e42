"""The room browser a window opens on, computed without pygame (issue 12).

Like ``client.viewmodel`` for the table, in three parts:

- ``BrowserUi``: what only the window knows on this screen (the selected row, an
  open dialog and its text, what it is waiting for and until when);
- ``browser_key`` / ``BrowserView.action_at``: input -> a ``BrowserAction`` (join a
  room, quick play, create, join by code, quit), pure, so tests drive it;
- ``build_browser(rows, ui, ...)``: a frozen ``BrowserView`` holding what the
  renderer draws (rows with counts and phases, buttons, the dialog, the status line)
  and where, so a click lands on what was drawn under it.

Every wait has a deadline and says what it waits for: ``Waiting.text`` names the
command and, past ``deadline``, the window gives up with a notice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .viewmodel import (
    CLUSTER_HEAD_H,
    CLUSTER_ROW_H,
    HELP_H,
    MIN_SIZE,
    PAD,
    NodeRow,
    NoticeView,
    Quorum,
    Rect,
)

ROW_H = 40
BUTTON_H = 48
BROWSER_HEADER_H = 60
NAME_MAX = 32  # game.rooms accepts room names up to this long
CODE_MAX = 16
WAIT_S = 12.0  # the longest any browser command may stay unanswered before the window gives up

PHASE_LABELS = {
    "lobby": "lobby",
    "countdown": "starting",
    "round": "playing",
    "intermission": "playing",
    "game_over": "game over",
}


@dataclass(frozen=True, slots=True)
class BrowserAction:
    """What the player asked for: kind "join" (room), "code" (code), "quick_play",
    "create" (name, private), "dialog" (name: "create" or "code", opens it), "quit"."""

    kind: str
    room: str | None = None
    code: str | None = None
    name: str | None = None
    private: bool = False


@dataclass(slots=True)
class Waiting:
    """A command the window waits on; ``text`` says what for, ``deadline`` until when."""

    text: str
    deadline: float
    call: Any = None  # the command's Call (``done``, ``ok``, ``result``)


@dataclass(slots=True)
class BrowserUi:
    selected: int = 0
    dialog: str | None = None  # None, "create" or "code"
    text: str = ""
    private: bool = False
    waiting: Waiting | None = None
    seen: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class RoomRowView:
    room: str
    name: str
    phase: str  # as shown: lobby, starting, playing, game over
    players: int
    max_players: int
    full: bool
    bots: bool
    leader: str | None
    selected: bool
    rect: Rect


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    action: BrowserAction
    rect: Rect


@dataclass(frozen=True, slots=True)
class BrowserLayout:
    size: tuple[int, int]
    header: Rect
    rooms: Rect
    side: Rect
    cluster: Rect
    banner: Rect
    help: Rect

    @classmethod
    def fit(cls, size: tuple[int, int], nodes: int) -> BrowserLayout:
        w, h = max(size[0], MIN_SIZE[0]), max(size[1], MIN_SIZE[1])
        side_w = min(300, max(220, w // 4))
        side_x = w - side_w - PAD
        body_y, body_h = BROWSER_HEADER_H + PAD, h - BROWSER_HEADER_H - HELP_H - 2 * PAD
        cluster_h = min(body_h // 2, CLUSTER_HEAD_H + CLUSTER_ROW_H * max(1, nodes))
        rooms = (PAD, body_y, side_x - 2 * PAD, body_h)
        return cls(
            size=size,
            header=(0, 0, w, BROWSER_HEADER_H),
            rooms=rooms,
            side=(side_x, body_y, side_w, body_h - cluster_h - PAD),
            cluster=(side_x, body_y + body_h - cluster_h, side_w, cluster_h),
            banner=(rooms[0], rooms[1], rooms[2], 36),
            help=(0, h - HELP_H, w, HELP_H),
        )


BROWSER_HELP = (
    "Up/Down + Enter or click: join    P: quick play    C: create    J: join by code    Q: quit"
)
DIALOG_HELP = {
    "create": "type a room name    Tab: private on/off    Enter: create    Esc: cancel",
    "code": "type the room's code    Enter: join    Esc: cancel",
}


@dataclass(frozen=True, slots=True)
class BrowserView:
    layout: BrowserLayout
    me: str
    rows: tuple[RoomRowView, ...]
    buttons: tuple[Button, ...]
    dialog: str | None
    dialog_text: str
    private: bool
    status_text: str  # what the window waits for, "" when idle
    empty_text: str  # what the list says when there is no row
    quorum: Quorum
    offline: bool
    cluster: tuple[NodeRow, ...]
    rtt_ms: float | None
    state_index: int
    notices: tuple[NoticeView, ...]
    help_text: str

    def action_at(self, x: float, y: float) -> BrowserAction | None:
        """The button or room row drawn under a screen point (None over nothing)."""
        if self.dialog is not None or self.status_text:
            return None
        for b in self.buttons:
            if _inside(b.rect, x, y):
                return b.action
        for row in self.rows:
            if _inside(row.rect, x, y):
                return BrowserAction("join", room=row.room)
        return None

    def cannot_act(self, label: str) -> str | None:
        if not self.quorum.lost:
            return None
        return (
            f"{label}: not sent, {self.quorum.text} (the cluster is read-only "
            "until a majority of nodes is back)"
        )


def _inside(rect: Rect, x: float, y: float) -> bool:
    return rect[0] <= x < rect[0] + rect[2] and rect[1] <= y < rect[1] + rect[3]


def sorted_rows(rooms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listing rows as the browser orders them: open lobbies with seats first (fullest
    first, as quick play picks), then the rest; oldest first on a tie."""

    def key(r: dict[str, Any]) -> tuple:
        joinable = r["phase"] == "lobby" and r["players"] < r["max_players"]
        return (0 if joinable else 1, -r["players"] if joinable else 0, r["created_ms"], r["room"])

    return sorted(rooms, key=key)


def browser_key(
    ui: BrowserUi, rows: list[dict[str, Any]], key: str, char: str = ""
) -> BrowserAction | None:
    """One key press on the browser: moves the selection or edits the dialog (in
    ``ui``), or returns the action to take. ``key`` is a name ("up", "down",
    "return", "escape", "tab", "backspace", or a letter), ``char`` the typed text."""
    if ui.waiting is not None:
        return BrowserAction("quit") if key == "q" else None
    if ui.dialog is not None:
        if key == "escape":
            ui.dialog, ui.text = None, ""
        elif key == "return":
            text = ui.text.strip()
            if not text:
                return None
            kind, ui.dialog, ui.text = ui.dialog, None, ""
            if kind == "create":
                return BrowserAction("create", name=text, private=ui.private)
            return BrowserAction("code", code=text)
        elif key == "backspace":
            ui.text = ui.text[:-1]
        elif key == "tab" and ui.dialog == "create":
            ui.private = not ui.private
        elif char and char.isprintable():
            limit = NAME_MAX if ui.dialog == "create" else CODE_MAX
            ui.text = (ui.text + char)[:limit]
        return None
    if key in ("q", "escape"):
        return BrowserAction("quit")
    if key == "up":
        ui.selected = max(0, ui.selected - 1)
    elif key == "down":
        ui.selected = min(max(0, len(rows) - 1), ui.selected + 1)
    elif key == "return" and rows:
        return BrowserAction("join", room=rows[min(ui.selected, len(rows) - 1)]["room"])
    elif key == "p":
        return BrowserAction("quick_play")
    elif key == "c":
        ui.dialog, ui.text = "create", ""
    elif key == "j":
        ui.dialog, ui.text = "code", ""
    return None


def build_browser(
    rooms: list[dict[str, Any]],
    ui: BrowserUi,
    *,
    me: str,
    size: tuple[int, int],
    cluster: tuple[NodeRow, ...] | list[NodeRow],
    quorum: Quorum,
    offline: bool = False,
    rtt_ms: float | None = None,
    state_index: int = 0,
    notices: tuple[NoticeView, ...] = (),
    synced: bool = True,
    now: float = 0.0,
) -> BrowserView:
    """The frame's browser from the live room list and the window's own state."""
    cluster = tuple(cluster)
    layout = BrowserLayout.fit(size, len(cluster))
    rows = sorted_rows(rooms)
    ui.selected = min(ui.selected, max(0, len(rows) - 1))
    x, y, w, h = layout.rooms
    top = y + 56  # title and column heads above
    visible = max(0, (y + h - top - 8) // ROW_H)
    first = max(0, ui.selected - visible + 1) if visible else 0
    row_views = []
    for i, r in enumerate(rows[first : first + visible], start=first):
        row_views.append(
            RoomRowView(
                room=r["room"],
                name=r["name"],
                phase=PHASE_LABELS.get(r["phase"], r["phase"]),
                players=r["players"],
                max_players=r["max_players"],
                full=r["players"] >= r["max_players"],
                bots=bool(r.get("bots")),
                leader=r.get("leader"),
                selected=i == ui.selected,
                rect=(x + 8, top + (i - first) * ROW_H, w - 16, ROW_H - 4),
            )
        )
    sx, sy, sw, _ = layout.side
    actions = [
        ("Quick play  (P)", BrowserAction("quick_play")),
        ("Create room  (C)", BrowserAction("dialog", name="create")),
        ("Join by code  (J)", BrowserAction("dialog", name="code")),
    ]
    buttons = tuple(
        Button(label, action, (sx + 14, sy + 56 + k * (BUTTON_H + 12), sw - 28, BUTTON_H))
        for k, (label, action) in enumerate(actions)
    )
    status = ""
    if ui.waiting is not None:
        left = max(0.0, ui.waiting.deadline - now)
        status = f"{ui.waiting.text} (giving up in {left:.0f} s)"
    if rows:
        empty = ""
    elif not synced:
        empty = "reading the room list..."
    else:
        empty = "no open rooms: press P for quick play, or C to create one"
    return BrowserView(
        layout=layout,
        me=me,
        rows=tuple(row_views),
        buttons=buttons,
        dialog=ui.dialog,
        dialog_text=ui.text,
        private=ui.private,
        status_text=status,
        empty_text=empty,
        quorum=quorum,
        offline=offline,
        cluster=cluster,
        rtt_ms=rtt_ms,
        state_index=state_index,
        notices=notices,
        help_text=DIALOG_HELP[ui.dialog] if ui.dialog else BROWSER_HELP,
    )
