"""The node loop's timing arithmetic and pacing (the loop itself runs in
tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.api import wait_until
from nodes.kv import KeyValue
from nodes.local import make_cluster_file
from nodes.raft.ready import Role
from nodes.server import SNAPSHOT_DUTY, NodeOptions, NodeServer, poll_timeout_ms
from nodes.statemachine import encode_command


@pytest.mark.parametrize(("left_s", "expected"), [
    (0.0104, 11), (0.0004, 1), (0.000001, 1), (0.0, 0), (-0.003, 0), (0.01, 10),
])
def test_the_poll_waits_whole_milliseconds_rounded_up_so_it_never_spins(
        left_s: float, expected: int) -> None:
    """A sub-millisecond wait must not become 0: ZeroMQ truncates float timeouts,
    and polling with 0 until the tick is due spun about a tenth of a core per node."""
    now = 1000.0
    got = poll_timeout_ms(now + left_s, now)
    assert got == expected and isinstance(got, int)


def test_snapshots_take_at_most_their_duty_share_of_the_loop(tmp_path: Path) -> None:
    """Issue 11, item 3: a snapshot stops the loop (tens of ms with many client
    sessions, as under a flood of new client ids). After one that took t, the next
    waits t / SNAPSHOT_DUTY, so snapshots every snapshot_interval entries cannot
    keep the loop, and the victims' requests, waiting."""
    cf = make_cluster_file(tmp_path, 1, snapshot_interval=10)
    server = NodeServer(NodeOptions("n1", cf, tmp_path / "n1", fsync=False), [KeyValue()])
    try:
        now = [1000.0]
        server.clock = lambda: now[0]
        taken = []
        real_snapshot = server.sm.snapshot

        def slow_snapshot() -> object:
            taken.append(now[0])
            now[0] += 0.05  # this snapshot "takes" 50 ms
            return real_snapshot()

        server.sm.snapshot = slow_snapshot  # type: ignore[method-assign]
        wait_until(lambda: server.turn() or server.raft.role is Role.LEADER, 5,
                   "the single node to lead")

        def write(count: int, start: int) -> None:
            for i in range(start, start + count):
                server.raft.propose(encode_command("c1", i, 0, "kv", {
                    "op": "put", "key": "k", "value": i}))
                server._drain_ready()

        write(100, 1)  # ten intervals' worth, in no time but the first snapshot's
        assert len(taken) == 1
        now[0] += 0.05 / SNAPSHOT_DUTY
        write(10, 101)
        assert len(taken) == 2
    finally:
        server.close()
