"""A window's (or a bot's) link to the rooms: ``RoomsClient`` behind the window's
``GameSession`` interface.

The table the window draws is its room's table (``RoomsClient.room["table"]``),
so today's table screen works unchanged for a room; game commands (``ready``,
``hit``, ...) go to the room through ``RoomsClient.act``. The browser side
(``rows``, ``quick_play``, ``create``, ``join``, ``leave``, ``reclaim``) passes
through, and every command comes back as a ``Pending`` filled in by ``poll``.

The seat's token is kept in a file per player name (``seat_file``), so a window
that closed, crashed or lost the cluster gets its seat back when it opens again
within the grace period. With ``room`` and ``auto_join`` (bots), the session
joins that room by itself and joins again whenever it is not seated.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from nodes.clusterfile import ClusterFile

from .link import Call
from .rooms import RoomsClient, default_token_file
from .session import INFO_STALE_S, LeaderWatch
from .viewmodel import NodeRow, Notice, Pending

AUTO_JOIN_RETRY_S = 1.0  # a bot's join that failed is tried again after this long


def seat_file(cluster_path: str | os.PathLike[str] | None, cluster_id: str, name: str) -> Path:
    """Where ``name``'s seat token is kept: beside the cluster file (``seats/``, so a
    local cluster's data dir holds its players' seats) when that directory is
    writable, else under the user's state dir (``client.rooms.default_token_file``)."""
    if cluster_path is not None:
        base = Path(cluster_path).resolve().parent
        if os.access(base, os.W_OK):
            return base / "seats" / f"seat-{cluster_id}-{name.casefold()}.json"
    return default_token_file(cluster_id, name)


def _pending_of(call: Call, pending: Pending) -> None:
    """Copy a finished call's outcome into the window's ``Pending``."""
    pending.done = True
    result = call.result if isinstance(call.result, dict) else None
    if call.ok and result is not None:
        pending.result = result
    elif call.ok:
        pending.result = {"ok": True}
    elif call.error is not None and call.error.code not in ("unavailable", "timeout"):
        pending.result = {"ok": False, "error": call.error.code, "message": call.error.message}
    else:
        pending.error = call.error.message if call.error else "no answer"


class RoomSession:
    offline = False  # a real cluster

    def __init__(
        self,
        rooms: RoomsClient,
        room: str | None = None,
        auto_join: str | None = None,
        now: Any = time.monotonic,
    ) -> None:
        self.rooms = rooms
        self.client_id = rooms.client_id
        self.room_wanted = room  # the room to join (``arena play --room``, the launcher's room)
        self.auto_join = auto_join  # join ``room`` (or quick play) as this name by itself
        self._now = now
        self._calls: list[tuple[Call, Pending]] = []
        self._notices: list[Notice] = []
        self._auto: Pending | None = None
        self._auto_at = 0.0
        self._started = now()
        self._leader_watch = LeaderWatch(rooms.link)  # failover notices, as for a table
        self._board: list[dict[str, Any]] | None = None  # the leaderboard across rooms
        self._board_index = -1
        self._board_call: Call | None = None
        rooms.on_event = self._on_event

    @classmethod
    def connect(
        cls,
        cluster: ClusterFile,
        name: str,
        cluster_path: str | None = None,
        room: str | None = None,
        bot: bool = False,
        token_file: str | os.PathLike[str] | None = None,
    ) -> RoomSession:
        """A session for ``name``: its seat token in ``seat_file`` (bots keep none)."""
        if token_file is None and not bot:
            token_file = seat_file(cluster_path, cluster.cluster_id, name)
        rc = RoomsClient(cluster, token_file=token_file, bot=bot, auto_ping=False)
        return cls(rc, room=room, auto_join=name if bot else None)

    # --- GameSession: the room's table -------------------------------------------------

    def poll(self) -> None:
        self.rooms.poll()
        self._leader_watch.check(self._notices)
        still = []
        for call, pending in self._calls:
            if call.done:
                _pending_of(call, pending)
            else:
                still.append((call, pending))
        self._calls = still
        if self.auto_join is not None:
            self._keep_joined()
        if self._board is None and (self._board_call is None or self._board_call.done):
            self._read_board()

    @property
    def leaderboard(self) -> list[dict[str, Any]] | None:
        """The leaderboard across rooms, best first (None until read): read once, and
        again whenever the room list stream says a game over changed it."""
        return self._board

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "leaderboard":
            self._read_board()

    def _read_board(self) -> None:
        self._board_call = self.rooms.link.call(
            "read", {"machine": "rooms", "query": {"op": "leaderboard"}}, on_done=self._on_board
        )

    def _on_board(self, call: Call) -> None:
        result = call.result if isinstance(call.result, dict) else {}
        if call.ok and result.get("ok") and call.index >= self._board_index:
            self._board, self._board_index = result["rows"], call.index

    @property
    def state(self) -> dict | None:
        """The table of this session's room, once seated and read."""
        room, seat = self.rooms.room, self.rooms.seat
        if room is None or seat is None or room["row"]["room"] != seat["room"]:
            return None
        return room["table"]  # type: ignore[no-any-return]

    @property
    def state_index(self) -> int:
        return max(0, self.rooms._room.index)  # the index the room view reflects

    @property
    def cluster(self) -> list[NodeRow]:
        now = time.monotonic()
        link = self.rooms.link
        rows = []
        for n in link.nodes.values():
            info = n.info
            if info is None or now - n.info_at > INFO_STALE_S:
                seen = info is not None or now - self._started > 1.0
                rows.append(
                    NodeRow(
                        n.id,
                        "down" if seen else "unknown",
                        info.term if info else 0,
                        n.id == link.current,
                    )
                )
            else:
                rows.append(NodeRow(n.id, info.role, info.term, n.id == link.current))
        return rows

    def submit(self, cmd: dict) -> Pending:
        """A game command in this session's room (``type`` plus today's fields)."""
        fields = {k: v for k, v in cmd.items() if k != "type"}
        return self._track(self.rooms.act(cmd["type"], **fields))

    def drain_notices(self) -> list[Notice]:
        out, self._notices = self._notices, []
        return out

    @property
    def rtt_ms(self) -> float | None:
        r = self.rooms.link.stats.rtts_ms[-20:]
        return sorted(r)[len(r) // 2] if r else None

    def leader_time_ms(self) -> int:
        table = self.state
        floor = int(table.get("now_ms", 0)) if table else 0
        offset = self.rooms._leader_ms_offset  # learnt from the room stream's entry clocks
        return max(floor, int(time.time() * 1000) + offset)

    @property
    def failover_ms(self) -> list[float]:
        return self._leader_watch.failover_ms

    def close(self) -> None:
        self.rooms.close()

    # --- the browser side ----------------------------------------------------------------

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.rooms.list_rooms()

    @property
    def seat(self) -> dict[str, Any] | None:
        return self.rooms.seat

    @property
    def synced(self) -> bool:
        return self.rooms.synced

    @property
    def list_index(self) -> int:
        return max(0, self.rooms._list.index)  # the index the room list reflects

    def saved_seat(self) -> dict[str, Any] | None:
        return self.rooms.saved_seat()

    def room_name(self, room_id: str | None) -> str:
        row = self.rooms.rooms.get(room_id or "")
        if (
            row is None
            and self.rooms.room is not None
            and self.rooms.room["row"]["room"] == room_id
        ):
            row = self.rooms.room["row"]
        return row["name"] if row else str(room_id)

    def quick_play(self, name: str) -> Pending:
        return self._track(self.rooms.quick_play(name))

    def create(self, room_name: str, player: str, private: bool = False) -> Pending:
        return self._track(self.rooms.create(room_name, player=player, private=private))

    def join(self, name: str, room: str | None = None, code: str | None = None) -> Pending:
        return self._track(self.rooms.join(name, room=room, code=code))

    def leave(self) -> Pending:
        return self._track(self.rooms.leave())

    def disconnect(self) -> Pending:
        return self._track(self.rooms.disconnect())

    def reclaim(self) -> Pending:
        return self._track(self.rooms.reclaim())

    def forget_saved_seat(self) -> None:
        """The saved token no longer holds a seat (grace over, room closed): drop it."""
        if self.rooms.seat is None and self.rooms.token_file is not None:
            self.rooms.token_file.unlink(missing_ok=True)

    def _track(self, call: Call) -> Pending:
        pending = Pending()
        self._calls.append((call, pending))
        return pending

    def _keep_joined(self) -> None:
        """For bots: sit in ``room_wanted`` (or quick play) whenever not seated."""
        if self.rooms.seat is not None or not self.rooms.synced:
            return
        if self._auto is not None and not (
            self._auto.done and self._now() - self._auto_at >= AUTO_JOIN_RETRY_S
        ):
            return
        assert self.auto_join is not None
        self._auto_at = self._now()
        if self.room_wanted is not None:
            self._auto = self.join(self.auto_join, room=self.room_wanted)
        else:
            self._auto = self.quick_play(self.auto_join)
