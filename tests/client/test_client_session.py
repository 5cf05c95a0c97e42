"""The session's estimate of the leader's clock (no sockets: ``LeaderClock`` alone)."""

from __future__ import annotations

import time
from pathlib import Path

from client.session import BEHIND_S, LeaderClock, NetworkSession
from game.machine import GameMachine
from nodes.codec import ClusterInfo
from nodes.local import make_cluster_file


class Wall:
    """A wall clock (seconds since the epoch) that moves only when told."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_two_windows_read_the_same_leader_time_however_they_got_their_state() -> None:
    """Issue 10 item 4: a window that loaded a snapshot whose last entry was 2.6 s
    old showed a countdown a second behind a window that had followed the updates."""
    wall = Wall(1_000.0)
    following, fresh = LeaderClock(wall), LeaderClock(wall)
    leader_skew_ms = 40  # the leader's clock runs 40 ms ahead of this machine's
    for k in range(5):  # updates reach the following window 1-3 ms after their entry
        wall.t += 0.5
        following.observe(int(wall.t * 1000) + leader_skew_ms - (1 + k % 3))
    last_entry_ms = int(wall.t * 1000) + leader_skew_ms - 3
    wall.t += 2.6  # nothing committed since; the fresh window loads a snapshot now
    truth = int(wall.t * 1000) + leader_skew_ms
    assert abs(following.now_ms(last_entry_ms) - truth) <= 1
    assert abs(fresh.now_ms(last_entry_ms) - truth) <= leader_skew_ms  # no update seen yet
    fresh.observe(truth - 2)  # its first update
    wall.t += 0.25
    assert abs(fresh.now_ms(last_entry_ms) - following.now_ms(last_entry_ms)) <= 1


def test_the_estimate_never_falls_below_the_committed_time() -> None:
    wall = Wall(50.0)
    clock = LeaderClock(wall)
    assert clock.now_ms(floor_ms=90_000) == 90_000  # a leader clock far ahead of ours
    assert clock.now_ms(floor_ms=10_000) == 50_000


def test_a_view_left_behind_by_lost_updates_resyncs_from_a_snapshot(tmp_path: Path) -> None:
    """Updates published before the subscription was live are lost; on a quiet table
    nothing showed the gap, and a window stayed on "joining as ..." (the cluster info
    of the followed node says what it applied)."""
    cf = make_cluster_file(tmp_path, 3)  # no node runs: the sockets only connect
    session = NetworkSession(cf)
    try:
        session.view.load_snapshot(3, {"game": GameMachine().snapshot()})
        node = session.link.nodes[session.link.update_node]
        node.info = ClusterInfo(node.id, 1, "leader", node.id, 3, 3, {})
        node.info_at = time.monotonic()
        session.poll()
        assert session.view.synced and session.resyncs == 0  # level with the node
        node.info = ClusterInfo(node.id, 1, "leader", node.id, 5, 5, {})
        session.poll()
        assert session.view.synced and session.resyncs == 0  # an update may be on its way
        session._behind_since = time.monotonic() - BEHIND_S  # still behind, BEHIND_S later
        session.poll()
        assert session.resyncs == 1 and not session.view.synced
        assert session._snapshot_call is not None and not session._snapshot_call.done
    finally:
        session.close()
