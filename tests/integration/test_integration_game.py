"""End to end: 3 node processes and 4 bots play a whole game while the leader is
killed in the middle of a round (issue: the game, tests)."""

from __future__ import annotations

from pathlib import Path

from client.demo import run_failover_demo


def test_a_game_survives_killing_the_leader_mid_round_with_identical_scores_everywhere(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    r = run_failover_demo(tmp_path / "demo", bots=4, kill_in_round=2, seed=3, say=lines.append)
    story = "\n".join(lines)
    assert r.killed and r.new_leader not in ("", "?", r.killed), story
    # the bound is the feature: a failover that never completes must fail
    assert 0 < r.failover_ms < 5000, story
    # every node and every client ends with the same scores...
    assert len(r.scores_by_node) == 3 and len(r.scores_by_client) == 4, story
    assert r.consistent(), (r.scores_by_node, r.scores_by_client)
    # ...and they are exactly the hits each bot was told it won: none lost, none twice
    assert r.no_hit_lost_or_doubled(), (r.scores_by_node, r.acked_hits)
    assert sum(r.acked_hits.values()) > 0
    # the killed node came back and caught up
    assert r.restarted_caught_up_s > 0
