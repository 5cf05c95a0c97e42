"""``arena bench``: run Arena's workloads (and PySyncObj's, with ``--vs pysyncobj``)
in the same run, and report ratios against the project's targets.

Targets (2-core machine, 3 nodes): throughput at least 3x PySyncObj's; single-
client p50 latency no worse than PySyncObj's unbatched one and under 1 ms (judged
on Arena's client process against PySyncObj's writer in its leader, the strictest
pairing; the like-for-like pairings are reported beside it, without a target);
failover p50 under 300 ms and max under 500 ms; broadcast p99 under 10 ms;
RSS under 60 MB per node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .stats import ratio


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    ours: float
    theirs: float | None
    unit: str
    higher_is_better: bool
    target: str
    met: bool | None

    @property
    def ratio(self) -> float | None:
        if self.theirs is None:
            return None
        return ratio(self.ours, self.theirs, self.higher_is_better)

    def to_dict(self) -> dict[str, Any]:
        r = self.ratio
        return {"metric": self.metric, "arena": _num(self.ours), "pysyncobj": _num(self.theirs),
                "unit": self.unit, "ratio": _num(r), "target": self.target, "met": self.met}


def _num(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), 3)


def _get(d: dict, *path: str) -> float | None:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return float(d) if isinstance(d, int | float) else None


def compare(ours: dict, theirs: dict | None) -> list[Row]:
    t = theirs or {}
    rows: list[Row] = []
    tp = _get(ours, "throughput", "commits_per_s")
    if tp is not None:
        their = _get(t, "throughput", "commits_per_s")
        met = None if their is None else tp >= 3 * their
        rows.append(Row("throughput", tp, their, "commits/s", True, ">= 3x PySyncObj", met))
    p50 = _get(ours, "latency", "single_client", "p50")
    if p50 is not None:
        their = _get(t, "latency", "unbatched", "p50")
        met = p50 < 1.0 and (their is None or p50 <= their)
        rows.append(Row("latency p50 (1 client)", p50, their, "ms", False,
                        "<= PySyncObj unbatched, < 1 ms", met))
        p99 = _get(ours, "latency", "single_client", "p99")
        if p99 is not None:
            rows.append(Row("latency p99 (1 client)", p99, _get(t, "latency", "unbatched", "p99"),
                            "ms", False, "-", None))
        via = _get(t, "latency", "unbatched_via_follower", "p50")
        if via is not None:
            # Arena's client process against PySyncObj's writer on a follower
            rows.append(Row("latency p50, 4 hops", p50, via, "ms", False, "-", None))
    for mode, label in (("durable", "durable"), ("in_memory", "fsync off")):
        emb = _get(ours, "latency", "embedded", mode, "p50")
        if emb is not None:  # both writers inside the leader's process
            rows.append(Row(f"latency p50, in-leader writer, {label}", emb,
                            _get(t, "latency", "unbatched", "p50"), "ms", False, "-", None))
    fo50 = _get(ours, "failover", "p50")
    if fo50 is not None:
        rows.append(Row("failover p50", fo50, _get(t, "failover", "p50"), "ms", False,
                        "< 300 ms", fo50 < 300))
        fomax = _get(ours, "failover", "max") or math.nan
        rows.append(Row("failover max", fomax, _get(t, "failover", "max"), "ms", False,
                        "< 500 ms", fomax < 500))
    bc = _get(ours, "broadcast", "p99")
    if bc is not None:
        rows.append(Row("broadcast p99 (50 subscribers)", bc, None, "ms", False, "< 10 ms",
                        bc < 10))
    rss = _get(ours, "memory", "max_rss_mb")
    if rss is not None:
        their_list = t.get("memory", {}).get("rss_mb_per_node") if isinstance(t.get("memory"), dict) else None
        their = max(their_list) if their_list else None
        rows.append(Row(f"RSS per node after {ours['memory']['commits']:,} commits", rss, their,
                        "MB", False, "< 60 MB", rss < 60))
    cu = _get(ours, "catchup", "seconds")
    if cu is not None:
        rows.append(Row(f"catch-up of a restarted node ({ours['catchup']['behind_by_commits']:,} "
                        "commits behind)", cu, None, "s", False, "-", None))
    return rows


def render(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    caption = None
    if any(r.metric.startswith(("latency p50, 4 hops", "latency p50, in-leader")) for r in rows):
        caption = ("latency (1 client): Arena's client process vs PySyncObj's writer in its "
                   "leader; 4 hops: the same client vs PySyncObj's writer on a follower; "
                   "in-leader writer: both inside the leader's process (PySyncObj in memory)")
    table = Table(title=title, caption=caption)
    for col in ("metric", "Arena", "PySyncObj", "ratio", "target", "met"):
        table.add_column(col)
    for r in rows:
        ratio_s = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        theirs = "-" if r.theirs is None else f"{r.theirs:,.2f} {r.unit}"
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[r.met]
        table.add_row(r.metric, f"{r.ours:,.2f} {r.unit}", theirs, ratio_s, r.target, met)
    Console().print(table)
