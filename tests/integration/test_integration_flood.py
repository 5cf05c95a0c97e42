"""Issue 11, item 3: one client flooding the leader must not cost the cluster its
leader. Peer traffic and ticks come before client traffic, client work per loop
turn is bounded, and a proposal waits behind a few milliseconds of others' work at
most. The full table (every flood, victim latency ratios) is ``arena bench flood``;
this is its short version: the absence of elections is the feature."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.bench.flood import run_case

FLOOD_S = 2.5


@pytest.mark.parametrize("case", ["pipelined", "rate-limited"])
def test_a_flooded_leader_keeps_its_term_and_the_victim_is_served(
        tmp_path: Path, case: str) -> None:
    r = run_case(case, FLOOD_S, tmp_path)
    assert r.flood_sent > 1000, r  # the flood did flood
    assert r.elections == 0, r
    assert r.victim_errors == 0 and r.victim_ops > 50, r
