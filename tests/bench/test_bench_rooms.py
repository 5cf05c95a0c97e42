"""``arena bench rooms --quick``: active rooms, a leader killed mid-game, idle rooms."""

from __future__ import annotations

import json

import pytest

from nodes.bench import rooms


@pytest.mark.slow
def test_bench_rooms_quick_loses_no_point_and_every_room_commits_again() -> None:
    r = rooms.run_bench(quick=True, seed=7)
    json.dumps(r)  # --json prints it
    a, k, i = r["active"], r["kill"], r["idle"]
    assert a["rooms"] == 4 and a["bots"] == 16
    assert a["hit_broadcast_ms"]["n"] > 0, a
    assert a["committed_actions_per_s"] > 0
    assert set(a["cpu_core_pct"]) == {"n1", "n2", "n3"}
    assert k["rooms_recovered"] == k["rooms"] == 4, k
    # a new leader needs an election (150-300 ms timeouts, heartbeats every 50 ms): an
    # earlier "commit" would be an answer the killed leader sent before it died
    assert k["first_commit_after_kill_ms"] >= 100, k
    assert k["points_lost"] == 0 and k["rooms_differing_between_nodes"] == 0, k
    assert k["bots_unchecked"] == 0, k
    assert i["rooms"] == 50 and set(i["cpu_core_pct"]) == {"n1", "n2", "n3"}
    assert r["met"]["points_lost"] is True
