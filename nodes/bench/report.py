"""``arena bench``: run Arena's workloads (and PySyncObj's, with ``--vs pysyncobj``)
in the same run, and report ratios against the project's targets.

Targets (2-core machine, 3 nodes): throughput at least 3x PySyncObj's; single-
client p50 latency no worse than PySyncObj's unbatched one and under 1 ms (judged
on Arena's client process against PySyncObj's writer in its leader, the strictest
pairing; the like-for-like pairings are reported beside it, without a target);
failover p50 under 300 ms and max under 500 ms; broadcast p99 under 10 ms;
RSS under 60 MB per node.

Against etcd (``--vs etcd``, issue 13), like for like and in the same run: Arena
beats etcd on every row: single-client p50 no worse than etcd's and within 1.5x of
the durable floor measured in the same run (one fsync of 128 bytes + two ZeroMQ
round trips, :mod:`nodes.bench.floor`); unbatched throughput >= 1x with less server
CPU per put; batched throughput >= 1.5x; failover p50 and max no worse; RSS no more.
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
    rival: str = "PySyncObj"

    @property
    def ratio(self) -> float | None:
        if self.theirs is None:
            return None
        return ratio(self.ours, self.theirs, self.higher_is_better)

    def to_dict(self) -> dict[str, Any]:
        r = self.ratio
        return {"metric": self.metric, "arena": _num(self.ours),
                self.rival.lower(): _num(self.theirs), "unit": self.unit, "ratio": _num(r),
                "target": self.target, "met": self.met}


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


def _at_most(ours: float | None, theirs: float | None, factor: float = 1.0) -> bool | None:
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs):
        return None
    return ours <= theirs * factor


def compare_etcd(ours: dict, etcd: dict, floor: dict | None = None) -> list[Row]:
    """The rows of issue 13: Arena against etcd, like for like, in the same run."""
    rows: list[Row] = []

    def row(metric: str, a: float | None, e: float | None, unit: str, higher: bool,
            target: str, met: bool | None) -> None:
        if a is not None:
            rows.append(Row(metric, a, e, unit, higher, target, met, rival="etcd"))

    fl = _get(floor or {}, "durable_write_ms")
    p50, e50 = _get(ours, "latency", "single_client", "p50"), _get(etcd, "latency",
                                                                  "single_client", "p50")
    if p50 is not None:
        within = None if fl is None else p50 <= 1.5 * fl
        beats = _at_most(p50, e50)
        met = None if beats is None else beats and within is not False
        row("latency p50 (1 client)", p50, e50, "ms", False,
            "<= etcd, <= 1.5x floor" if fl is not None else "<= etcd", met)
        row("latency p99 (1 client)", _get(ours, "latency", "single_client", "p99"),
            _get(etcd, "latency", "single_client", "p99"), "ms", False, "-", None)
        if fl:
            row("latency p50 / durable floor", p50 / fl, None if e50 is None else e50 / fl, "x",
                False, "<= 1.5x", within)
    tp = _get(ours, "throughput_unbatched", "commits_per_s")
    etp = _get(etcd, "throughput", "unbatched", "commits_per_s")
    row("throughput, no client batching", tp, etp, "puts/s", True, ">= 1x",
        None if tp is None or etp is None else tp >= etp)
    cpu = _get(ours, "throughput_unbatched", "server_cpu_us_per_commit")
    ecpu = _get(etcd, "throughput", "unbatched", "server_cpu_us_per_commit")
    row("server CPU per put, no client batching", cpu, ecpu, "us", False, "<= etcd",
        _at_most(cpu, ecpu))
    row("client CPU per put, same", _get(ours, "throughput_unbatched",
                                         "client_cpu_us_per_commit"),
        _get(etcd, "throughput", "unbatched", "client_cpu_us_per_commit"), "us", False, "-", None)
    tb = _get(ours, "throughput", "commits_per_s")
    etb = _get(etcd, "throughput", "batched", "commits_per_s")
    row("throughput, batched (etcd: Txns of 32)", tb, etb, "puts/s", True, ">= 1.5x",
        None if tb is None or etb is None else tb >= 1.5 * etb)
    row("server CPU per put, batched", _get(ours, "throughput", "server_cpu_us_per_commit"),
        _get(etcd, "throughput", "batched", "server_cpu_us_per_commit"), "us", False, "-", None)
    row("client CPU per put, batched", _get(ours, "throughput", "client_cpu_us_per_commit"),
        _get(etcd, "throughput", "batched", "client_cpu_us_per_commit"), "us", False, "-", None)
    for stat in ("p50", "max"):
        a, e = _get(ours, "failover", stat), _get(etcd, "failover", stat)
        row(f"failover {stat} (kill -9 of the leader)", a, e, "ms", False, "<= etcd",
            _at_most(a, e))
    rss, erss = _get(ours, "memory", "max_rss_mb"), _get(etcd, "memory", "max_rss_mb")
    if rss is not None:
        n = ours["memory"]["commits"]
        row(f"RSS per node after {n:,} puts (max)", rss, erss, "MB", False, "<= etcd",
            _at_most(rss, erss))
    return rows


def etcd_caption(floor: dict | None, etcd: dict) -> str:
    cfg = etcd.get("config", {})
    hb, el = int(cfg.get("heartbeat_ms") or 0), int(cfg.get("election_ms") or 0)
    parts = [f"etcd {cfg.get('etcd', '?')}: heartbeat {hb} ms, election timeouts "
             f"{el}-{2 * el - hb} ms, pre-vote, fsync on"]
    if floor:
        parts.append(f"durable floor {floor['durable_write_ms']:.3f} ms = fsync of 128 B "
                     f"{floor['fsync_128b_p50']:.3f} ms + 2 x ZeroMQ round trip "
                     f"{floor['zmq_round_trip_p50']:.3f} ms (medians of "
                     f"{len(floor['samples'])} samples through this run)")
    return "; ".join(parts)


def render(rows: list[Row], title: str, caption: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    like_for_like = ("latency p50, 4 hops", "latency p50, in-leader")
    if caption is None and any(r.metric.startswith(like_for_like) for r in rows):
        caption = ("latency (1 client): Arena's client process vs PySyncObj's writer in its "
                   "leader; 4 hops: the same client vs PySyncObj's writer on a follower; "
                   "in-leader writer: both inside the leader's process (PySyncObj in memory)")
    table = Table(title=title, caption=caption)
    rival = rows[0].rival if rows else "PySyncObj"
    for col in ("metric", "Arena", rival, "ratio", "target", "met"):
        table.add_column(col)
    for r in rows:
        ratio_s = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        theirs = "-" if r.theirs is None else f"{r.theirs:,.2f} {r.unit}"
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[r.met]
        table.add_row(r.metric, f"{r.ours:,.2f} {r.unit}", theirs, ratio_s, r.target, met)
    Console().print(table)
