"""The player's session with a cluster (the real ``GameSession``).

Connects to any node of the cluster file, follows the leader, fails over on its
own when a node dies, submits game commands exactly once (sequence numbers),
and keeps the game view from a snapshot plus the ordered updates of the node it
talks to. Everything is polled without blocking, once per frame, so a dead
node never freezes the window. It also measures round trips and failovers and
turns them into notices ("leader n1 lost, n3 elected, 240 ms").
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from game.machine import GameMachine
from nodes.clusterfile import ClusterFile
from nodes.codec import Update

from .link import Call, ClusterLink
from .view import ReplicatedView
from .viewmodel import NodeRow, Notice, Pending

INFO_STALE_S = 0.6  # a node silent this long is shown as down
# The followed node says it applied entries the view has not seen for this long: their
# updates were lost (e.g. published before the subscription was live), so resync.
BEHIND_S = 0.5


class LeaderClock:
    """This client's estimate of the leader's clock, in epoch milliseconds.

    Every published update carries the leader's timestamp of its entry; the
    difference to the local wall clock at receipt is the clock offset minus the
    delivery delay, so the largest recent difference is the best offset. The
    estimate is the local wall clock plus that offset, never below the committed
    state's own ``now_ms``. Every window on the cluster thus reads the same time
    at the same moment, however it got its state: a window that just loaded a
    snapshot (whose ``now_ms`` is the time of its last entry, maybe seconds old)
    used to lag the others by that much. Before the first update, the local
    clock is taken as is (the nodes stamp entries with their wall clocks too).
    """

    def __init__(self, wall: Callable[[], float] = time.time, keep: int = 64) -> None:
        self._wall = wall
        self._offsets: deque[int] = deque(maxlen=keep)

    def observe(self, leader_ms: int) -> None:
        """An entry stamped ``leader_ms`` by its leader arrived just now."""
        self._offsets.append(leader_ms - self._wall_ms())

    def now_ms(self, floor_ms: int = 0) -> int:
        offset = max(self._offsets) if self._offsets else 0
        return max(floor_ms, self._wall_ms() + offset)

    def _wall_ms(self) -> int:
        return int(self._wall() * 1000)


class NetworkSession:
    offline = False  # a real cluster

    def __init__(self, cluster: ClusterFile, client_id: str | None = None,
                 request_timeout: float = 0.4, deadline: float = 10.0) -> None:
        self.link = ClusterLink(cluster, client_id, request_timeout=request_timeout,
                                deadline=deadline)
        self.client_id = self.link.client_id
        self.view = ReplicatedView({"game": GameMachine})
        self.link.on_update = self._on_update
        self.link.on_switch = self._on_switch
        self._notices: list[Notice] = []
        self._snapshot_call: Call | None = None
        self._state_at = time.monotonic()
        self.leader_clock = LeaderClock()
        self._leader_watch = LeaderWatch(self.link)
        self._behind_since: float | None = None
        self.resyncs = 0  # snapshots asked for because updates went missing
        self.link.follow_updates(self.link.current)
        self._request_snapshot()

    # --- the GameSession interface ---------------------------------------------------

    def poll(self) -> None:
        self.link.poll(0)
        self._check_behind()
        if self.view.needs_snapshot and (self._snapshot_call is None or self._snapshot_call.done):
            self._request_snapshot()
        self._watch_leader()

    @property
    def state(self) -> dict | None:
        if not self.view.loaded:
            return None
        m = self.view.machines["game"]
        return m.state  # type: ignore[attr-defined,no-any-return]

    @property
    def state_index(self) -> int:
        return self.view.index

    @property
    def cluster(self) -> list[NodeRow]:
        now = time.monotonic()
        rows = []
        for n in self.link.nodes.values():
            info = n.info
            if info is None or now - n.info_at > INFO_STALE_S:
                role = "down" if info is not None or now - self._state_at > 1.0 else "unknown"
                term = info.term if info else 0
                rows.append(NodeRow(n.id, role, term, n.id == self.link.current))
            else:
                rows.append(NodeRow(n.id, info.role, info.term, n.id == self.link.current))
        return rows

    def submit(self, cmd: dict) -> Pending:
        pending = Pending()

        def done(c: Call) -> None:
            pending.done = True
            if c.ok:
                pending.result = c.result if isinstance(c.result, dict) else {"ok": True}
            elif c.error is not None and c.error.code == "rejected":
                pending.result = {"ok": False, "error": c.error.code, "message": c.error.message}
            else:
                pending.error = c.error.message if c.error else "no answer"

        self.link.submit("game", cmd, done)
        return pending

    def drain_notices(self) -> list[Notice]:
        out, self._notices = self._notices, []
        return out

    @property
    def rtt_ms(self) -> float | None:
        r = self.link.stats.rtts_ms
        return sorted(r[-20:])[len(r[-20:]) // 2] if r else None

    def leader_time_ms(self) -> int:
        st = self.state
        return self.leader_clock.now_ms(int(st.get("now_ms", 0)) if st else 0)

    def close(self) -> None:
        self.link.close()

    # --- internals ------------------------------------------------------------------

    def _request_snapshot(self) -> None:
        node = self.link.update_node
        self._snapshot_call = self.link.call("snapshot", {"machines": ["game"]},
                                             self._on_snapshot, node=node)

    def _on_snapshot(self, c: Call) -> None:
        if not c.ok or not isinstance(c.result, dict):
            return
        if c.answered_by != self.link.update_node:
            return  # an answer from a node we no longer follow
        result: dict[str, Any] = c.result
        self.view.load_snapshot(int(result["index"]), result["machines"])
        self._state_at = time.monotonic()

    def _check_behind(self) -> None:
        """Updates published before the subscription was live are lost without a trace
        until the next one shows the gap, and a quiet table may publish nothing for
        seconds: the followed node's cluster info says what it applied, so a view
        that stays behind it resyncs from a snapshot."""
        node = self.link.nodes.get(self.link.update_node)
        info = node.info if node is not None else None
        now = time.monotonic()
        if info is None or not self.view.synced or info.applied <= self.view.index:
            self._behind_since = None
            return
        if self._behind_since is None:
            self._behind_since = now
        elif now - self._behind_since >= BEHIND_S:
            self._behind_since = None
            self.resyncs += 1
            self.view.resubscribed()

    def _on_update(self, nid: str, u: Update) -> None:
        self.leader_clock.observe(u.clock_ms)
        if self.view.apply(u):
            self._state_at = time.monotonic()

    def _on_switch(self, old: str, new: str) -> None:
        # follow the new node's stream: subscribe first, then snapshot (Clone pattern)
        self.link.follow_updates(new)
        self.view.resubscribed()
        self._request_snapshot()

    def _watch_leader(self) -> None:
        self._leader_watch.check(self._notices)

    @property
    def failover_ms(self) -> list[float]:
        return self._leader_watch.failover_ms


class LeaderWatch:
    """Notices failovers from the nodes' cluster info: the leader's info stops,
    another node reports leading a newer term; the gap is the failover time, told as
    a notice ("leader n1 lost, n3 elected, 240 ms") and kept in ``failover_ms``. The
    link is moved to the new leader. Any session over a ``ClusterLink`` uses it."""

    def __init__(self, link: ClusterLink) -> None:
        self.link = link
        self.leader: str | None = None
        self.term = 0
        self.lost_at: float | None = None
        self.last_seen = time.monotonic()
        self.failover_ms: list[float] = []

    def check(self, notices: list[Notice]) -> None:
        now = time.monotonic()
        leaders = [n for n in self.link.nodes.values()
                   if n.info and n.info.role == "leader" and now - n.info_at < INFO_STALE_S]
        if self.leader is not None:
            cur = self.link.nodes.get(self.leader)
            if cur and cur.info and now - cur.info_at < INFO_STALE_S and cur.info.role == "leader":
                self.last_seen = cur.info_at
            elif self.lost_at is None:
                self.lost_at = self.last_seen
        best = max(leaders, key=lambda n: n.info.term if n.info else 0, default=None)
        if best is None or best.info is None:
            return
        if best.id != self.leader and best.info.term > self.term:
            if self.leader is not None:
                lost = self.lost_at or self.last_seen
                gap = max(0.0, (best.info_at - lost) * 1000)
                self.failover_ms.append(gap)
                notices.append(Notice(
                    "failover", f"leader {self.leader} lost, {best.id} elected, {gap:.0f} ms",
                    time.time()))
            self.leader, self.term = best.id, best.info.term
            self.lost_at = None
            self.last_seen = best.info_at
            if self.link.current != best.id:
                self.link._switch(best.id)
