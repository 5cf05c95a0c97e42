"""`arena bench` runs end to end and reports every metric it measures. Speed is
judged by the benchmark's own ratios, never by this test."""

from __future__ import annotations

import json

from click.testing import CliRunner

from nodes.cli import main


def test_arena_bench_quick_reports_every_workload_as_json() -> None:
    result = CliRunner().invoke(main, [
        "bench", "--quick", "--json", "--workloads", "throughput,latency,failover,broadcast"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    ours = report["arena"]
    assert ours["throughput"]["commits_per_s"] > 0 and ours["throughput"]["failed"] == 0
    rates = sorted(r["commits_per_s"] for r in ours["throughput"]["runs"])
    assert len(rates) == 3 and rates[1] == round(ours["throughput"]["commits_per_s"])  # the median
    assert ours["latency"]["single_client"]["count"] == 200
    for mode, fsync in (("durable", True), ("in_memory", False)):
        embedded = ours["latency"]["embedded"][mode]
        assert embedded["count"] == 200 and embedded["failed"] == 0 and embedded["fsync"] is fsync
    assert len(ours["failover"]["trials"]) == 3  # --quick runs 3 trials
    assert ours["broadcast"]["count"] == ours["broadcast"]["subscribers"] * ours["broadcast"]["writes"]
    metrics = {row["metric"] for row in report["comparison"]}
    assert {"throughput", "latency p50 (1 client)", "failover p50"} <= metrics
