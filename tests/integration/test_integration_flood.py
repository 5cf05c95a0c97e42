"""Issue 11, item 3: one client flooding the leader must not cost the cluster its
leader. Peer traffic and ticks come before client traffic, client work per loop
turn is bounded, and a proposal waits behind a few milliseconds of others' work at
most. The full table (every flood, victim latency ratios) is ``arena bench flood``;
this is its short version: the absence of elections is the feature."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nodes.bench.__main__ import main as bench_main
from nodes.bench.flood import CaseResult, run_case, verdict
from nodes.cli import main as cli_main

FLOOD_S = 2.5


@pytest.mark.parametrize("case", ["pipelined", "rate-limited"])
def test_a_flooded_leader_keeps_its_term_and_the_victim_is_served(
        tmp_path: Path, case: str) -> None:
    r = run_case(case, FLOOD_S, tmp_path)
    assert r.flood_sent > 1000, r  # the flood did flood
    assert r.elections == 0, r
    assert r.victim_errors == 0 and r.victim_ops > 50, r


def _result(case: str, p99: float, elections: int = 0) -> CaseResult:
    return CaseResult(case, 100, p99 / 2, p99, p99 * 2, 0, elections)


def test_the_flood_verdict_holds_elections_and_p99_to_the_unloaded_run() -> None:
    v = verdict([_result("none", 4.0), _result("pipelined", 20.0),
                 _result("new-ids", 20.1), _result("rate-limited", 3.0, elections=1)])
    assert v["pipelined"] == {"elections_ok": True, "p99_ratio": 5.0, "p99_ok": True}
    assert v["new-ids"]["p99_ok"] is False
    assert v["rate-limited"]["elections_ok"] is False and v["rate-limited"]["p99_ok"] is True


def test_arena_bench_flood_is_a_bench_subcommand() -> None:
    with pytest.raises(SystemExit, match="unknown flood case"):
        bench_main(["flood", "--cases", "none,tsunami"])
    out = CliRunner().invoke(cli_main, ["bench", "--help"])
    assert out.exit_code == 0 and "[flood|groups|rooms]" in out.output
