"""Two sessions on real nodes read the same leader time at the same moment (issue 10
item 4: two windows' countdowns differed by a second)."""

from __future__ import annotations

import time

from client.api import wait_until
from client.link import TimeoutError_
from client.session import NetworkSession
from client.viewmodel import Pending
from nodes.local import LocalCluster


def test_a_session_that_just_loaded_a_snapshot_reads_the_same_leader_time_as_an_old_one(
    live_cluster: LocalCluster,
) -> None:
    early = NetworkSession(live_cluster.cluster)
    late: NetworkSession | None = None
    try:
        join = {"type": "join", "name": "ann"}
        tries: list[Pending] = [early.submit(join)]

        def seated() -> bool:
            early.poll()
            if tries[-1].done and not tries[-1].accepted:  # e.g. no leader yet: try again
                tries.append(early.submit(join))
            st = early.state
            return tries[-1].accepted and st is not None and "ann" in st["players"]

        try:
            wait_until(seated, 30.0, "ann seated")
        except TimeoutError_ as e:
            failed = [(p.error, p.result) for p in tries if p.done and not p.accepted]
            snap = early._snapshot_call
            raise AssertionError(
                f"{e}; failed joins: {failed}; last join {tries[-1]}; view loaded "
                f"{early.view.loaded} synced {early.view.synced} index {early.view.index}; "
                f"snapshot call done {snap and snap.done} ok {snap and snap.ok} "
                f"err {snap and snap.error} node {snap and snap.node} attempts "
                f"{snap and snap.attempts}; current {early.link.current} update_node "
                f"{early.link.update_node}; down {early.link.down}; "
                f"cluster {early.cluster}"
            ) from e
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
