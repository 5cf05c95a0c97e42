"""Two sessions on real nodes read the same leader time at the same moment (issue 10
item 4: two windows' countdowns differed by a second)."""

from __future__ import annotations

import time

from client.api import wait_until
from client.session import NetworkSession
from nodes.local import LocalCluster


def test_a_session_that_just_loaded_a_snapshot_reads_the_same_leader_time_as_an_old_one(
    live_cluster: LocalCluster,
) -> None:
    early = NetworkSession(live_cluster.cluster)
    late: NetworkSession | None = None
    try:
        joined = early.submit({"type": "join", "name": "ann"})

        def seated() -> bool:
            early.poll()
            st = early.state
            return joined.accepted and st is not None and "ann" in st["players"]

        wait_until(seated, 15.0, "ann seated")
        st = early.state
        assert st is not None
        last_entry_ms = st["now_ms"]

        def quiet_for_a_while() -> bool:  # nothing commits: the snapshot's now_ms ages
            early.poll()
            return time.time() * 1000 > last_entry_ms + 1500

        wait_until(quiet_for_a_while, 5.0, "1.5 s without a new entry")
        late = NetworkSession(live_cluster.cluster)

        def late_loaded() -> bool:
            early.poll()
            late.poll()  # type: ignore[union-attr]
            return late.state is not None  # type: ignore[union-attr]

        wait_until(late_loaded, 10.0, "the late session's snapshot")
        gap = abs(early.leader_time_ms() - late.leader_time_ms())
        assert gap < 200, f"the two sessions' leader clocks differ by {gap} ms"
    finally:
        early.close()
        if late is not None:
            late.close()
