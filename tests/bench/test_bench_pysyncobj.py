"""The PySyncObj side of ``arena bench --vs pysyncobj`` on real processes, and the
benchmark statistics."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest

from nodes.bench.stats import percentile, ratio, summarize

HAS_PYSYNCOBJ = importlib.util.find_spec("pysyncobj") is not None
needs_pysyncobj = pytest.mark.skipif(
    not HAS_PYSYNCOBJ,
    reason="pysyncobj is not installed (it comes with the bench extra: pip install -e '.[bench]')",
)


# -- stats (pure) ------------------------------------------------------------------


def test_summarize_one_to_hundred_is_nearest_rank() -> None:
    s = summarize([float(x) for x in range(100, 0, -1)])  # unsorted on purpose
    assert s == {"count": 100, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0, "mean": 50.5}


def test_summarize_small_inputs() -> None:
    assert summarize([7.0]) == {
        "count": 1,
        "p50": 7.0,
        "p90": 7.0,
        "p99": 7.0,
        "max": 7.0,
        "mean": 7.0,
    }
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert (s["p50"], s["p90"], s["p99"], s["max"], s["mean"]) == (2.0, 4.0, 4.0, 4.0, 2.5)
    # nearest rank never invents a value between two samples
    s = summarize([1.0, 10.0])
    assert s["p50"] == 1.0 and s["p90"] == 10.0


def test_summarize_empty_has_the_same_keys() -> None:
    s = summarize([])
    assert set(s) == {"count", "p50", "p90", "p99", "max", "mean"}
    assert s["count"] == 0 and math.isnan(s["p50"]) and math.isnan(s["max"])


def test_percentile_bounds() -> None:
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_ratio_direction() -> None:
    assert ratio(20_000, 10_000, higher_is_better=True) == 2.0
    assert ratio(0.4, 0.8, higher_is_better=False) == 2.0  # half the latency: 2x better
    assert ratio(1.6, 0.8, higher_is_better=False) == 0.5
    assert math.isinf(ratio(1.0, 0.0, higher_is_better=True))
    assert math.isnan(ratio(0.0, 0.0, higher_is_better=True))
    assert math.isnan(ratio(float("nan"), 1.0, higher_is_better=True))


# -- PySyncObj on real processes -------------------------------------------------------


def _children() -> set[int]:
    """Pids of this process's live children (from /proc), to check nothing is left."""
    me = os.getpid()
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            out.add(int(entry.name))
    return out


def test_the_latency_target_is_judged_on_the_client_process_and_like_for_like_rows_have_none(
) -> None:
    from nodes.bench.report import compare

    ours = {"latency": {"single_client": {"p50": 0.8, "p99": 1.2},
                        "embedded": {"durable": {"p50": 0.5}, "in_memory": {"p50": 0.25}}}}
    theirs = {"latency": {"unbatched": {"p50": 0.3, "p99": 0.5},
                          "unbatched_via_follower": {"p50": 0.4}}}
    rows = {r.metric: r for r in compare(ours, theirs)}
    target = rows["latency p50 (1 client)"]
    assert (target.ours, target.theirs, target.met) == (0.8, 0.3, False)
    four = next(r for m, r in rows.items() if m.startswith("latency p50, 4 hops"))
    assert (four.ours, four.theirs, four.met) == (0.8, 0.4, None)
    durable = rows["latency p50, in-leader writer, durable"]
    in_memory = rows["latency p50, in-leader writer, fsync off"]
    assert (durable.ours, durable.theirs, durable.met) == (0.5, 0.3, None)
    assert in_memory.ratio == 0.3 / 0.25 and in_memory.met is None
    # under 1 ms and no worse than PySyncObj's leader writer: met
    ours["latency"]["single_client"]["p50"] = 0.3
    assert {r.metric: r for r in compare(ours, theirs)}["latency p50 (1 client)"].met is True


@needs_pysyncobj
def test_pysyncobj_throughput_and_latency(tmp_path: Path) -> None:
    from nodes.bench.pysyncobj_side import run

    before = _children()
    r = run(
        {"throughput", "latency"},
        commits=300,
        batched_latency_writes=20,
        tmp_dir=tmp_path,
        quiet=True,
    )
    assert _children() <= before, "node processes left running"

    tp = r["throughput"]
    assert tp["commits"] == 300 and tp["clients"] == 8 and tp["window"] == 128
    assert tp["commits_per_s"] > 0
    assert len(tp["runs"]) == 3
    assert all(r["committed"] + r["errors"] + r["timeouts"] == 300 for r in tp["runs"])
    for mode in ("unbatched", "batched"):
        lat = r["latency"][mode]
        assert set(lat) >= {"count", "p50", "p90", "p99", "max", "mean"}
        assert lat["count"] > 0 and lat["errors"] == 0
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert r["latency"]["unbatched"]["count"] == 300
    via = r["latency"]["unbatched_via_follower"]
    assert via["count"] == 300 and via["errors"] == 0 and via["p50"] > 0
    assert r["latency"]["batched"]["count"] == 20
    # batching makes a lone synchronous write wait for a heartbeat
    assert r["latency"]["batched"]["p50"] > r["latency"]["unbatched"]["p50"]
    assert r["config"]["pysyncobj"] == "0.3.17"
    identical = r["checks"]["replicas_identical"]
    assert set(identical) == {"batching_on", "batching_off"}
    assert all(isinstance(v, bool) for v in identical.values())
    assert isinstance(r["checks"]["critical_log_lines"], int)


@needs_pysyncobj
def test_pysyncobj_failover(tmp_path: Path) -> None:
    from nodes.bench.pysyncobj_side import run

    before = _children()
    r = run({"failover", "memory"}, commits=300, failover_trials=2, tmp_dir=tmp_path, quiet=True)
    assert _children() <= before, "node processes left running"

    fo = r["failover"]
    assert fo["failed"] == 0 and fo["count"] == 2 and len(fo["trials"]) == 2
    assert all(t > 0 for t in fo["trials"])
    # no leader can be elected before the 150 ms minimum election timeout has run out
    # since the last heartbeat (sent at most 45 ms before the kill)
    assert fo["p50"] > 100
    assert fo["max"] < 5000

    mem = r["memory"]
    assert len(mem["rss_mb_per_node"]) == 3 and len(mem["rss_mb_per_node_idle"]) == 3
    assert all(5 < m < 500 for m in mem["rss_mb_per_node"])
    assert mem["commits"] >= 300
