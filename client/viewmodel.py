"""What a player window shows, computed without pygame.

Three parts, in the order a frame uses them (STYLE.md habit 11: input, update, draw):

- the session interface the window talks to (``GameSession`` with ``NodeRow``,
  ``Notice`` and ``Pending``); ``client.session`` implements it over the
  network, ``client.fake`` over ``game.local.LocalTable``;
- ``UiState``: what only this window knows (the name it joins as, the window
  size, its optimistic hit markers, the notices it still shows). Input and
  ``UiState.update`` change it; nothing else does;
- ``build_view(session, ui, now)``: an immutable ``ViewModel`` holding
  everything the renderer draws, including the ``Layout`` that maps game
  coordinates to the screen and back (so a click lands where the target was drawn).

Optimistic hits are the one place the window shows something the cluster has
not committed: a click puts a "pending" marker on the target at once; the
committed state (or an accepted result) turns it "confirmed", and a target
committed to someone else, or a rejected hit, turns it "lost" ("lost to bob",
in red) for about a second before it disappears.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from game import view as game_view
from game.state import config_of

# --- the session interface -------------------------------------------------------------

ROLES: tuple[str, ...] = ("leader", "follower", "candidate", "pre-candidate", "down", "unknown")


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One row of the window's node list: a node as the window last heard of it; ``connected``:
    this window talks to it."""

    id: str
    role: str  # one of ROLES
    term: int
    connected: bool


@dataclass(frozen=True, slots=True)
class Notice:
    """Something worth a banner, e.g. kind "failover": "leader n1 lost, n3 elected, 240 ms"."""

    kind: str
    text: str
    at: float  # wall-clock seconds when it happened


@dataclass(slots=True)
class Pending:
    """A submitted command's outcome, filled in by the session's ``poll``.

    ``result`` is the state machine's answer (``{"ok": True, ...}`` or
    ``{"ok": False, "error", "message"}``); ``error`` a transport failure (the
    command may or may not have been applied).
    """

    done: bool = False
    result: dict | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.done and self.result is not None and self.result.get("ok") is True

    @property
    def rejected(self) -> bool:
        return self.done and self.result is not None and self.result.get("ok") is not True


class GameSession(Protocol):
    """A window's link to the game; every method returns at once (called once per frame)."""

    client_id: str
    offline: bool  # True: no cluster at all, the nodes shown are simulated

    def poll(self) -> None: ...

    @property
    def state(self) -> dict | None: ...

    @property
    def state_index(self) -> int: ...

    @property
    def cluster(self) -> list[NodeRow]: ...

    def submit(self, cmd: dict) -> Pending: ...

    def drain_notices(self) -> list[Notice]: ...

    @property
    def rtt_ms(self) -> float | None: ...

    def leader_time_ms(self) -> int: ...

    def close(self) -> None: ...


NO_LEADER_S = 2.0  # an election this long is no longer a normal failover: say so


@dataclass(frozen=True, slots=True)
class Quorum:
    """How much of the cluster this window can hear: a node is reachable when its
    cluster info is fresh (any role but "down" and "unknown").

    Fewer reachable nodes than a majority means nothing can be committed: the
    cluster is read-only until enough nodes are back (the window shows the last
    committed state and says so instead of sending commands into the void). With a
    majority reachable but no leader for ``NO_LEADER_S`` (the nodes cannot reach
    each other, e.g. ``arena partition``), the window says that too, and still
    sends: the session retries until a leader answers.
    """

    reachable: int
    total: int
    known: bool  # some node has been heard of (at start-up every role is "unknown")
    leader: bool = True  # some reachable node says it leads
    leaderless_s: float = 0.0  # for how long no reachable node has led

    @classmethod
    def of(cls, cluster: tuple[NodeRow, ...] | list[NodeRow], leaderless_s: float = 0.0) -> Quorum:
        reachable = sum(1 for n in cluster if n.role not in ("down", "unknown"))
        known = any(n.role != "unknown" for n in cluster)
        leader = any(n.role == "leader" for n in cluster)
        return cls(reachable, len(cluster), known, leader, 0.0 if leader else leaderless_s)

    @property
    def majority(self) -> int:
        return self.total // 2 + 1

    @property
    def lost(self) -> bool:
        return self.known and self.total > 0 and self.reachable < self.majority

    @property
    def text(self) -> str:
        """"no majority: 1 of 3 nodes reachable, waiting" while lost; "no leader for 3 s:
        3 of 3 nodes reachable, electing" after a long election; else ""."""
        if self.lost:
            return f"no majority: {self.reachable} of {self.total} nodes reachable, waiting"
        if self.known and not self.leader and self.leaderless_s >= NO_LEADER_S:
            return (
                f"no leader for {self.leaderless_s:.0f} s: {self.reachable} of {self.total} "
                "nodes reachable, electing"
            )
        return ""


def seconds_left(ms: int) -> int:
    """The one rounding rule of every clock the window shows: whole seconds, rounded up,
    so "1" shows until the deadline and "0" only at it (header and countdown agree)."""
    return (max(0, ms) + 999) // 1000


# --- layout: game coordinates <-> screen -----------------------------------------------

Rect = tuple[int, int, int, int]  # x, y, width, height in window pixels

HEADER_H, HELP_H, PAD = 60, 28, 12
CLUSTER_ROW_H, CLUSTER_HEAD_H = 24, 58
MIN_SIZE = (640, 480)  # below this the window is drawn clipped rather than squeezed


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each panel goes; ``arena`` keeps the game's aspect ratio at ``scale`` px/unit."""

    size: tuple[int, int]
    header: Rect
    arena: Rect
    scale: float
    sidebar: Rect
    scores: Rect
    cluster: Rect
    banner: Rect
    help: Rect

    @classmethod
    def fit(cls, size: tuple[int, int], game_w: int, game_h: int, nodes: int) -> Layout:
        w, h = max(size[0], MIN_SIZE[0]), max(size[1], MIN_SIZE[1])
        side_w = min(300, max(220, w // 4))
        side_x = w - side_w - PAD
        body_y, body_h = HEADER_H + PAD, h - HEADER_H - HELP_H - 2 * PAD
        room_w = side_x - 2 * PAD
        scale = min(room_w / game_w, body_h / game_h)
        arena_w, arena_h = round(game_w * scale), round(game_h * scale)
        arena = (PAD + (room_w - arena_w) // 2, body_y + (body_h - arena_h) // 2, arena_w, arena_h)
        cluster_h = min(body_h // 2, CLUSTER_HEAD_H + CLUSTER_ROW_H * max(1, nodes))
        scores_h = body_h - cluster_h - PAD
        return cls(
            size=size,
            header=(0, 0, w, HEADER_H),
            arena=arena,
            scale=scale,
            sidebar=(side_x, body_y, side_w, body_h),
            scores=(side_x, body_y, side_w, scores_h),
            cluster=(side_x, body_y + scores_h + PAD, side_w, cluster_h),
            banner=(arena[0], arena[1], arena[2], 36),
            help=(0, h - HELP_H, w, HELP_H),
        )

    def to_screen(self, x: float, y: float) -> tuple[int, int]:
        return round(self.arena[0] + x * self.scale), round(self.arena[1] + y * self.scale)

    def to_game(self, sx: float, sy: float) -> tuple[float, float]:
        return (sx - self.arena[0]) / self.scale, (sy - self.arena[1]) / self.scale

    def length(self, game_units: float) -> int:
        return max(1, round(game_units * self.scale))


# --- the view model ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetView:
    id: int
    x: float  # game coordinates
    y: float
    r: float
    taken_by: str | None
    mine: bool
    colour: int  # palette index of the taker, -1 when open or the taker left


@dataclass(frozen=True, slots=True)
class MarkerView:
    """An optimistic guess on a target: "pending", "confirmed" or "lost" (rolled back)."""

    target: int
    x: float
    y: float
    r: float
    status: str
    text: str  # "", "+1" or why it was rolled back ("lost to bob")
    fade: float  # 1.0 when fresh, toward 0.0 as it expires


@dataclass(frozen=True, slots=True)
class PlayerRow:
    name: str
    colour: int  # palette index, stable for the member (its join counter)
    ready: bool
    host: bool
    spectator: bool
    me: bool
    score: int | None  # None outside a game's scores
    winner: bool


@dataclass(frozen=True, slots=True)
class NoticeView:
    kind: str
    text: str
    fade: float


@dataclass(frozen=True, slots=True)
class ViewModel:
    """Everything one frame draws; frozen, built fresh each frame."""

    layout: Layout
    status: str  # "connecting", "joining", "join_failed", "playing", "spectating"
    status_text: str
    quorum: Quorum  # ``quorum.lost``: read-only, input is answered with ``quorum.text``
    offline: bool  # the session is a simulation (``arena play --offline``): say so
    me: str  # the joined name, or the name being joined
    phase: str | None
    game_number: int
    round_number: int
    rounds_total: int
    time_left_ms: int | None
    targets: tuple[TargetView, ...]
    markers: tuple[MarkerView, ...]
    members: tuple[PlayerRow, ...]  # join order
    standings: tuple[PlayerRow, ...]  # best first, players of the current or last game
    spectators: tuple[str, ...]
    winners: tuple[str, ...]
    leaderboard: tuple[tuple[str, int, int], ...]  # (name, wins, points) across games
    lobby_hint: str
    cluster: tuple[NodeRow, ...]
    rtt_ms: float | None
    state_index: int
    notices: tuple[NoticeView, ...]
    help_text: str
    now: float  # seconds; animations are a function of it, never of a clock read while drawing
    room_name: str = ""  # the room this table is (rooms windows), "" for the single table

    @property
    def can_shoot(self) -> bool:
        return self.status == "playing" and self.phase == "round"

    def cannot_act(self, label: str) -> str | None:
        """Why a command made now cannot be committed (the cluster has no majority), or None."""
        if not self.quorum.lost:
            return None
        return (
            f"{label}: not sent, {self.quorum.text} (the cluster is read-only "
            "until a majority of nodes is back)"
        )

    def me_row(self) -> PlayerRow | None:
        return next((row for row in self.members if row.me), None)

    def target_at(self, sx: float, sy: float) -> TargetView | None:
        """The open target under a screen point (nearest centre if targets overlap)."""
        gx, gy = self.layout.to_game(sx, sy)
        hits = [
            (((t.x - gx) ** 2 + (t.y - gy) ** 2), t)
            for t in self.targets
            if t.taken_by is None and (t.x - gx) ** 2 + (t.y - gy) ** 2 <= t.r**2
        ]
        return min(hits, key=lambda pair: pair[0])[1] if hits else None


HELP_TEXT = "click: hit target    R: ready    S: start (host)    M: rematch (host)    Q/Esc: quit"
ROOM_HELP_TEXT = (
    "click: hit    R: ready    S: start (host)    M: rematch (host)    L/Esc: leave room    Q: quit"
)

# --- what only this window knows ---------------------------------------------------------

CONFIRMED_S = 0.8  # how long "+1" floats over a confirmed hit
LOST_S = 1.0  # how long a rolled-back hit flashes red
PENDING_GIVE_UP_S = 5.0  # a hit with no answer and no committed taker by then is rolled back
# A transport failure means "maybe applied" (the session retries exactly once), so the
# committed state gets this long to show the point before the guess is rolled back.
TRANSPORT_GRACE_S = 1.0
# An accepted join the committed state still does not show after this long is sent
# again (a join is idempotent for the same session and name).
JOIN_SHOW_S = 3.0
NOTICE_S = 4.0
MAX_NOTICES = 3
_TOO_LATE = {"round_over", "stale_round", "wrong_phase", "future_round"}

HitKey = tuple[int, int, int]  # (game, round, target)


@dataclass(slots=True)
class HitMarker:
    key: HitKey
    x: float
    y: float
    r: float
    pending: Pending
    status: str = "pending"
    text: str = ""
    since: float = 0.0  # when it entered its status


@dataclass(slots=True)
class ShownNotice:
    kind: str
    text: str
    shown_at: float
    until: float


@dataclass(slots=True)
class UiState:
    """The window's own state; changed by input handlers and ``update`` only."""

    name: str
    size: tuple[int, int]
    markers: dict[HitKey, HitMarker] = field(default_factory=dict)
    notices: list[ShownNotice] = field(default_factory=list)
    join: Pending | None = None
    join_sent_at: float = 0.0
    join_error: str | None = None
    seated: bool = False  # the committed state has shown this window's member
    leaderless_since: float | None = None  # since when no reachable node leads
    actions: list[tuple[str, Pending]] = field(default_factory=list)

    # -- input side --

    def fire_hit(
        self, game: int, round_number: int, target: TargetView, pending: Pending, now: float
    ) -> None:
        key = (game, round_number, target.id)
        self.markers[key] = HitMarker(key, target.x, target.y, target.r, pending, since=now)

    def has_marker(self, game: int, round_number: int, target: int) -> bool:
        return (game, round_number, target) in self.markers

    def watch(self, label: str, pending: Pending) -> None:
        """Show the command's rejection (or lost answer) as a notice when it comes."""
        self.actions.append((label, pending))

    def notify(self, kind: str, text: str, now: float, seconds: float = NOTICE_S) -> None:
        self.notices.append(ShownNotice(kind, text, now, now + seconds))
        del self.notices[:-MAX_NOTICES]

    def wants_join(self, state: dict | None, client_id: str, now: float = 0.0) -> bool:
        """Join once the first state arrives; again if the last try got no answer, if
        an accepted join never showed up in the committed state, or (``update`` clears
        ``join``) after the table dropped this window's member, e.g. as idle while
        the cluster had no majority. Never after a refusal: that needs the player."""
        if state is None or self.join_error is not None:
            return False
        if game_view.player_of(state, client_id) is not None:
            return False
        if self.join is None:
            return True
        if self.join.done and self.join.error is not None:
            return True
        return self.join.accepted and now - self.join_sent_at >= JOIN_SHOW_S

    def joining(self, pending: Pending, now: float) -> None:
        self.join, self.join_sent_at = pending, now

    # -- update side --

    def watch_cluster(self, cluster: list[NodeRow], now: float) -> None:
        """Note since when the cluster has had no leader (``Quorum.leaderless_s``)."""
        if any(n.role == "leader" for n in cluster):
            self.leaderless_since = None
        elif self.leaderless_since is None:
            self.leaderless_since = now

    def update(self, state: dict | None, client_id: str, notices: list[Notice], now: float) -> None:
        """Fold in what this frame's poll brought: notices, answers, committed takers."""
        for notice in notices:
            self.notify(notice.kind, notice.text, now)
        self._settle_actions(now)
        me = game_view.player_of(state, client_id) if state is not None else None
        if me is not None:
            self.seated = True
        elif self.seated and state is not None:
            # the table let us go without the player asking (dropped as idle): sit down again
            self.seated, self.join = False, None
            self.notify("error", f"dropped from the table; rejoining as {self.name}", now)
        for key, marker in list(self.markers.items()):
            taker = _committed_taker(state, key)
            _reconcile(marker, taker, me, now)
            if _expired(marker, taker, me, now):
                del self.markers[key]
        self.notices = [n for n in self.notices if n.until > now]

    def _settle_actions(self, now: float) -> None:
        if self.join is not None and self.join.rejected and self.join_error is None:
            message = (self.join.result or {}).get("message", "rejected")
            self.join_error = f"could not join as {self.name}: {message}"
            self.notify("error", self.join_error, now)
        still = []
        for label, pending in self.actions:
            if not pending.done:
                still.append((label, pending))
            elif pending.rejected:
                message = (pending.result or {}).get("message", "rejected")
                self.notify("error", f"{label}: {message}", now)
            elif pending.error is not None:
                self.notify("error", f"{label}: no answer ({pending.error})", now)
        self.actions = still


def _committed_taker(state: dict | None, key: HitKey) -> str | None:
    if state is None:
        return None
    game, round_number, target_id = key
    current = state["current_round"]
    if state["game_state"]["game_number"] != game or current["number"] != round_number:
        return None
    target = next((t for t in current["targets"] if t["id"] == target_id), None)
    return target["taken_by"] if target is not None else None


def _reconcile(marker: HitMarker, taker: str | None, me: str | None, now: float) -> None:
    """Committed state first, then the command's own answer, then a timeout."""
    if marker.status != "pending":
        return
    pending = marker.pending
    if taker is not None and taker == me:
        _settle(marker, "confirmed", "+1", now)
    elif taker is not None:
        _settle(marker, "lost", f"lost to {taker}", now)
    elif pending.accepted:
        _settle(marker, "confirmed", "+1", now)
    elif pending.rejected:
        _settle(marker, "lost", _rejection_text(pending.result or {}), now)
    elif pending.error is not None and now - marker.since >= TRANSPORT_GRACE_S:
        _settle(marker, "lost", "no answer", now)
    elif now - marker.since > PENDING_GIVE_UP_S:
        _settle(marker, "lost", "no answer", now)


def _settle(marker: HitMarker, status: str, text: str, now: float) -> None:
    marker.status, marker.text, marker.since = status, text, now


def _rejection_text(result: dict[str, Any]) -> str:
    code, message = result.get("error"), str(result.get("message", ""))
    if "taken by " in message:
        return f"lost to {message.rsplit('taken by ', 1)[1].strip()}"
    if code in _TOO_LATE:
        return "too late"
    if code == "spectator":
        return "spectating"
    return "rejected"


def _expired(marker: HitMarker, taker: str | None, me: str | None, now: float) -> bool:
    age = now - marker.since
    if marker.status == "lost":
        return age >= LOST_S
    if marker.status == "confirmed":
        # keep "+1" until the committed state shows the point too, so the target never
        # flickers back to open between an early answer and the update that carries it
        return age >= CONFIRMED_S and (taker == me or age >= PENDING_GIVE_UP_S)
    return False


# --- building the view -------------------------------------------------------------------


def build_view(
    session: GameSession,
    ui: UiState,
    now: float,
    room_name: str = "",
    help_text: str | None = None,
    leaderboard: list[dict[str, Any]] | None = None,
) -> ViewModel:
    """The frame's ViewModel from the session's committed state and the window's own state.

    ``leaderboard``: rows to show instead of the table's own (a room shows the one
    across rooms); ``room_name`` and ``help_text`` for a room's table."""
    state = session.state
    cluster = tuple(session.cluster)
    config = (
        state["config"]
        if state is not None
        else {"arena_width": 1000, "arena_height": 700, "rounds": 3}
    )
    layout = Layout.fit(ui.size, config["arena_width"], config["arena_height"], len(cluster))
    common: dict[str, Any] = {
        "layout": layout,
        "quorum": Quorum.of(
            cluster, now - ui.leaderless_since if ui.leaderless_since is not None else 0.0
        ),
        "offline": bool(getattr(session, "offline", False)),
        "cluster": cluster,
        "rtt_ms": session.rtt_ms,
        "state_index": session.state_index,
        "notices": tuple(notice_views(ui, now)),
        "help_text": help_text or HELP_TEXT,
        "now": now,
        "room_name": room_name,
        "rounds_total": config["rounds"],
    }
    if state is None:
        return ViewModel(
            status="connecting",
            status_text="connecting to the cluster...",
            me=ui.name,
            phase=None,
            game_number=0,
            round_number=0,
            time_left_ms=None,
            targets=(),
            markers=(),
            members=(),
            standings=(),
            spectators=(),
            winners=(),
            leaderboard=(),
            lobby_hint="",
            **common,
        )
    me = game_view.player_of(state, session.client_id)
    gs, players = state["game_state"], state["players"]
    phase = gs["phase"]
    status, status_text = _status(ui, me, players)
    winners = tuple(gs["winners"])
    members = tuple(_member_rows(state, me, winners))
    by_name = {row.name: row for row in members}
    standings = tuple(
        by_name.get(name) or PlayerRow(name, -1, False, False, False, name == me, score, False)
        for name, score in game_view.standings(state)
    )
    return ViewModel(
        status=status,
        status_text=status_text,
        me=me or ui.name,
        phase=phase,
        game_number=gs["game_number"],
        round_number=state["current_round"]["number"],
        time_left_ms=game_view.time_left_ms(state, session.leader_time_ms()),
        targets=tuple(_target_views(state, me, by_name)),
        markers=tuple(_marker_views(ui, now)),
        members=members,
        standings=standings,
        spectators=tuple(row.name for row in members if row.spectator),
        winners=winners,
        leaderboard=tuple(
            (row["name"], row["wins"], row["points"])
            for row in (leaderboard if leaderboard is not None else game_view.leaderboard(state))
        ),
        lobby_hint=_lobby_hint(state, me),
        **common,
    )


def _status(ui: UiState, me: str | None, players: dict[str, Any]) -> tuple[str, str]:
    if me is not None:
        if players[me]["spectator"]:
            return "spectating", "spectating: you play from the next game"
        return "playing", ""
    if ui.join_error is not None:
        return "join_failed", ui.join_error
    return "joining", f"joining as {ui.name}..."


def _member_rows(
    state: dict[str, Any], me: str | None, winners: tuple[str, ...]
) -> list[PlayerRow]:
    players, host, scores = state["players"], state["game_state"]["host"], state["scores"]
    return [
        PlayerRow(
            name=name,
            colour=players[name]["joined_index"],
            ready=players[name]["ready"],
            host=name == host,
            spectator=players[name]["spectator"],
            me=name == me,
            score=scores.get(name),
            winner=name in winners,
        )
        for name in sorted(players, key=lambda n: players[n]["joined_index"])
    ]


def _target_views(
    state: dict[str, Any], me: str | None, by_name: dict[str, PlayerRow]
) -> list[TargetView]:
    if state["game_state"]["phase"] not in ("round", "intermission", "game_over"):
        return []
    views = []
    for t in state["current_round"]["targets"]:
        taker = t["taken_by"]
        colour = by_name[taker].colour if taker in by_name else -1
        views.append(
            TargetView(
                t["id"], t["x"], t["y"], t["r"], taker, taker is not None and taker == me, colour
            )
        )
    return views


def _marker_views(ui: UiState, now: float) -> list[MarkerView]:
    views = []
    for m in ui.markers.values():
        age = now - m.since
        life = {"confirmed": CONFIRMED_S, "lost": LOST_S}.get(m.status)
        fade = 1.0 if life is None else max(0.0, min(1.0, 1.0 - age / life))
        views.append(MarkerView(m.key[2], m.x, m.y, m.r, m.status, m.text, fade))
    return views


def notice_views(ui: UiState, now: float) -> list[NoticeView]:
    views = []
    for n in ui.notices:
        if n.until <= now:
            continue
        # full strength, then fade over the last second
        views.append(NoticeView(n.kind, n.text, max(0.0, min(1.0, n.until - now))))
    return views


def _lobby_hint(state: dict[str, Any], me: str | None) -> str:
    config = config_of(state)
    active = [p for p in state["players"].values() if not p["spectator"]]
    ready = sum(1 for p in active if p["ready"])
    need_ready = config.ready_to_start
    if len(active) < config.min_players:
        return f"waiting for players: {len(active)} of at least {config.min_players}"
    if ready < need_ready:
        return f"{ready} ready; the host can start once {need_ready} are ready"
    host = state["game_state"]["host"]
    if host == me:
        return f"{ready} of {len(active)} ready: press S to start"
    return f"{ready} of {len(active)} ready: waiting for {host} to start"
