"""``arena bench groups --quick``: three node host processes, every figure filled in,
every process stopped (the bench stops them by pid, pass or fail)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from nodes.bench.groups import render, run_groups
from nodes.cli import main


def test_groups_bench_quick_measures_idle_failover_and_throughput() -> None:
    rep = run_groups(groups=30, idle_seconds=0.5, load_seconds=0.5, seed=3, log=lambda s: None)
    assert sorted(rep.idle_cpu_percent) == ["n1", "n2", "n3"]
    assert all(0 <= v < 50 for v in rep.idle_cpu_percent.values()), rep
    assert rep.failover_groups >= 1 and rep.failover_missing == 0, rep
    assert 0 < rep.failover_p50_ms <= rep.failover_p99_ms <= rep.failover_max_ms < 10_000, rep
    assert rep.spread_commits_per_s > 0 and rep.one_commits_per_s > 0, rep
    assert rep.leaders_one == {"n1": 30, "n2": 0, "n3": 0}, rep
    assert "failover p50 / p99 / max" in render(rep)


def test_groups_bench_runs_durable_on_the_shared_wal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--durable: every node host on a SharedWal with fsync on; the groups still elect,
    fail over after kill -9 and commit."""
    rep = run_groups(groups=30, idle_seconds=0.5, load_seconds=0.5, seed=4, log=lambda s: None,
                     durable=True)
    assert rep.durable
    # placed as asked although the recovering replicas' timers elect anyone first
    assert rep.leaders_spread == {"n1": 10, "n2": 10, "n3": 10}, rep
    assert rep.leaders_one == {"n1": 30, "n2": 0, "n3": 0}, rep
    assert rep.failover_groups >= 1 and rep.failover_missing == 0, rep
    assert rep.spread_commits_per_s > 0 and rep.one_commits_per_s > 0, rep
    assert "durable (SharedWal, fsync on)" in render(rep)


def test_arena_bench_groups_is_wired_with_json_and_quick(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen = {}

    def fake(
        groups: int = 1000,
        idle_seconds: float = 5.0,
        load_seconds: float = 5.0,
        quick: bool = False,
        as_json: bool = False,
        seed: int = 1,
        durable: bool = False,
    ) -> int:
        seen.update(quick=quick, as_json=as_json, durable=durable)
        print(json.dumps({"groups": 60}))
        return 0

    monkeypatch.setattr("nodes.bench.groups.main_report", fake)
    result = CliRunner().invoke(main, ["bench", "groups", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    assert seen == {"quick": True, "as_json": True, "durable": False}
    result = CliRunner().invoke(main, ["bench", "groups", "--quick", "--durable"])
    assert result.exit_code == 0, result.output
    assert seen == {"quick": True, "as_json": False, "durable": True}
    assert json.loads(result.output) == {"groups": 60}
