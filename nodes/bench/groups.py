"""Many Raft groups on 3 node hosts: idle CPU, failover after kill -9, write throughput spread vs one.

Three node host processes (``python -m nodes.host.shell``) on loopback run
replicas of G groups (default 1,000), first leaders spread over the nodes
(group g led by node g mod 3). Measured:

- **idle CPU** per node once every group is quiescent: CPU seconds per wall
  second over ``--idle-seconds`` (target: under 5% of a core);
- **failover**: node n1 is killed with SIGKILL; for every group it led, the time
  from the kill to the first commit of that group's new leader (its no-op of
  the new term): p50, p99, max (target: p99 under 1 s);
- **write throughput**: every leader keeps one write in flight per group for
  ``--load-seconds``, with leaders spread over 3 nodes, then on a fresh cluster
  with every leader on n1; the ratio says what spreading leaders buys.

Storage is in memory (``MemoryWal``) by default: this measures the host, its
batching and its quiescence, not a disk. ``--durable`` puts every node on a
``SharedWal`` (fsync on) in a temporary directory: one fsync per loop turn for
all of a node's groups. ``--quick`` is a smoke run (a test uses it), not a
measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

from nodes.bench import BenchError
from nodes.local import free_ports

IDS = ["n1", "n2", "n3"]


@dataclass
class GroupsReport:
    groups: int
    durable: bool = False  # SharedWal on disk (fsync on), else MemoryWal
    idle_cpu_percent: dict[str, float] = field(default_factory=dict)
    failover_groups: int = 0
    failover_p50_ms: float = 0.0
    failover_p99_ms: float = 0.0
    failover_max_ms: float = 0.0
    failover_missing: int = 0
    spread_commits_per_s: float = 0.0
    one_commits_per_s: float = 0.0
    spread_over_one: float = 0.0
    leaders_spread: dict[str, int] = field(default_factory=dict)
    leaders_one: dict[str, int] = field(default_factory=dict)


class Nodes:
    """Three node host processes and their control sockets; stopped by pid."""

    def __init__(self, groups: int, place: str, seed: int, data_dir: Path | None = None) -> None:
        ports = free_ports(2 * len(IDS))
        self.peer_addrs = [f"tcp://127.0.0.1:{p}" for p in ports[: len(IDS)]]
        self.control_addrs = [f"tcp://127.0.0.1:{p}" for p in ports[len(IDS) :]]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ctx = zmq.Context.instance()
        self.socks: dict[str, zmq.Socket] = {}
        for k, nid in enumerate(IDS):
            self.procs[nid] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nodes.host.shell",
                    "--id",
                    nid,
                    "--ids",
                    ",".join(IDS),
                    "--peers",
                    ",".join(self.peer_addrs),
                    "--control",
                    self.control_addrs[k],
                    "--groups",
                    str(groups),
                    "--place",
                    place,
                    "--seed",
                    str(seed * 10 + k),
                    *(["--data-dir", str(data_dir / nid)] if data_dir else []),
                ],
                stdin=subprocess.DEVNULL,
            )
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self.control_addrs[k])
            self.socks[nid] = s

    def ask(self, nid: str, req: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        s = self.socks[nid]
        s.send(msgpack.packb(req))
        if not s.poll(timeout * 1000):
            code = self.procs[nid].poll()
            raise BenchError(
                f"node {nid} did not answer {req['op']!r} in {timeout:g} s"
                + (f" (it exited with status {code})" if code is not None else "")
            )
        return msgpack.unpackb(s.recv(), strict_map_key=False)

    def wait(
        self, what: str, check: Any, timeout: float, nids: list[str] | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = {nid: self.ask(nid, {"op": "status"}) for nid in (nids or IDS)}
            if check(st):
                return st
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{what}: not reached in {timeout:g} s; last status: "
                    + json.dumps(
                        {
                            n: {k: v for k, v in s.items() if k in ("roles", "quiesced", "down")}
                            for n, s in st.items()
                        }
                    )
                )
            time.sleep(0.1)  # polling an outside process's status, not synchronising

    def kill(self, nid: str) -> float:
        t = time.monotonic()
        os.kill(self.procs[nid].pid, signal.SIGKILL)
        self.procs[nid].wait()
        return t

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        for s in self.socks.values():
            s.close(0)


def _start(
    groups: int, place: str, seed: int, timeout: float, data_dir: Path | None = None
) -> tuple[Nodes, dict[str, Any]]:
    nodes = Nodes(groups, place, seed, data_dir)
    try:
        nodes.wait(
            "every node hears the others",
            lambda st: all(len(s["heard_from"]) == len(IDS) - 1 for s in st.values()),
            timeout,
        )
        for op in ("create", "campaign"):  # every node has every group before any campaign
            for nid in IDS:
                nodes.ask(nid, {"op": op})
        st = nodes.wait(
            f"{groups} groups elected and quiescent",
            lambda st: all(s["quiesced"] == groups for s in st.values()),
            timeout,
        )
        want = _placement(groups, place)
        if _leaders(st) != want:
            # elected elsewhere than placed (durable: a new replica recovers before it
            # campaigns): every node hands its misplaced groups to their placed leader
            for nid in IDS:
                nodes.ask(nid, {"op": "place"})
            st = nodes.wait(
                f"leaders placed {want} and quiescent",
                lambda st: _leaders(st) == want
                and all(s["quiesced"] == groups for s in st.values()),
                timeout,
            )
        return nodes, st
    except BaseException:
        nodes.close()
        raise


def _placement(groups: int, place: str) -> dict[str, int]:
    if place == "one":
        return {nid: (groups if nid == IDS[0] else 0) for nid in IDS}
    return {nid: sum(1 for g in range(groups) if g % len(IDS) == k) for k, nid in enumerate(IDS)}


def _leaders(st: dict[str, Any]) -> dict[str, int]:
    return {nid: s["roles"].get("leader", 0) for nid, s in st.items()}


def _load(nodes: Nodes, seconds: float) -> float:
    for nid in IDS:
        nodes.socks[nid].send(msgpack.packb({"op": "load", "seconds": seconds, "window": 1}))
    total = 0
    for nid in IDS:
        s = nodes.socks[nid]
        if not s.poll((seconds + 10) * 1000):
            raise BenchError(f"node {nid} did not finish its write load")
        r = msgpack.unpackb(s.recv())
        total += r["commits"]
    return total / seconds


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else 0.0


def run_groups(
    groups: int,
    idle_seconds: float,
    load_seconds: float,
    seed: int = 1,
    settle_timeout: float = 120.0,
    log: Any = print,
    durable: bool = False,
) -> GroupsReport:
    """``durable``: every node keeps its groups in a SharedWal (fsync on) in a
    temporary directory, removed afterwards."""
    if durable:
        with tempfile.TemporaryDirectory(prefix="arena-groups-") as tmp:
            return _run_groups(groups, idle_seconds, load_seconds, seed, settle_timeout, log,
                               Path(tmp))
    return _run_groups(groups, idle_seconds, load_seconds, seed, settle_timeout, log, None)


def _run_groups(
    groups: int,
    idle_seconds: float,
    load_seconds: float,
    seed: int,
    settle_timeout: float,
    log: Any,
    data_dir: Path | None,
) -> GroupsReport:
    rep = GroupsReport(groups, durable=data_dir is not None)
    nodes, st = _start(groups, "spread", seed, settle_timeout,
                       data_dir / "spread" if data_dir else None)
    try:
        rep.leaders_spread = _leaders(st)
        log(
            f"{groups} groups elected and quiescent; leaders {rep.leaders_spread}; peer nodes "
            f"deemed down so far: {[s['node_downs'] for s in st.values()]}"
        )
        before = {nid: nodes.ask(nid, {"op": "status"}) for nid in IDS}
        time.sleep(idle_seconds)  # the measurement window itself
        after = {nid: nodes.ask(nid, {"op": "status"}) for nid in IDS}
        for nid in IDS:
            cpu = after[nid]["cpu"] - before[nid]["cpu"]
            wall = after[nid]["now"] - before[nid]["now"]
            rep.idle_cpu_percent[nid] = round(100 * cpu / wall, 2)
        log(f"idle CPU per node (% of a core): {rep.idle_cpu_percent}")

        rep.spread_commits_per_s = round(_load(nodes, load_seconds), 1)
        log(f"write throughput, leaders spread: {rep.spread_commits_per_s} commits/s")
        nodes.wait(
            "groups quiescent again",
            lambda st: all(s["quiesced"] == groups for s in st.values()),
            settle_timeout,
        )

        led = [
            gid
            for gid, lead in nodes.ask("n1", {"op": "status"})["leaders"].items()
            if lead == "n1"
        ]
        log(f"after the load, n1 leads {len(led)} groups")
        t_kill = nodes.kill("n1")
        survivors = IDS[1:]

        def recovered(st: dict[str, Any]) -> bool:
            return all(any(s["led_at"].get(gid, 0.0) > t_kill for s in st.values()) for gid in led)

        try:
            st = nodes.wait("every group n1 led elects and commits", recovered, 30.0, survivors)
        except BenchError:
            st = {nid: nodes.ask(nid, {"op": "status"}) for nid in survivors}
        lat = []
        for gid in led:
            times = [s["led_at"][gid] for s in st.values() if s["led_at"].get(gid, 0.0) > t_kill]
            if times:
                lat.append((min(times) - t_kill) * 1000)
        rep.failover_groups = len(led)
        rep.failover_missing = len(led) - len(lat)
        rep.failover_p50_ms = round(_pct(lat, 0.50), 1)
        rep.failover_p99_ms = round(_pct(lat, 0.99), 1)
        rep.failover_max_ms = round(max(lat, default=0.0), 1)
        log(
            f"failover of {len(led)} groups after kill -9 of n1: p50 {rep.failover_p50_ms} ms, "
            f"p99 {rep.failover_p99_ms} ms, max {rep.failover_max_ms} ms, "
            f"{rep.failover_missing} without a new leader"
        )
    finally:
        nodes.close()

    nodes, st = _start(groups, "one", seed + 1, settle_timeout,
                       data_dir / "one" if data_dir else None)
    try:
        rep.leaders_one = _leaders(st)
        rep.one_commits_per_s = round(_load(nodes, load_seconds), 1)
        log(
            f"write throughput, every leader on n1 ({rep.leaders_one}): "
            f"{rep.one_commits_per_s} commits/s"
        )
    finally:
        nodes.close()
    if rep.one_commits_per_s:
        rep.spread_over_one = round(rep.spread_commits_per_s / rep.one_commits_per_s, 2)
    return rep


def render(rep: GroupsReport) -> str:
    idle = max(rep.idle_cpu_percent.values(), default=0.0)
    rows = [
        ("groups", f"{rep.groups} on 3 nodes",
         "durable (SharedWal, fsync on)" if rep.durable else "in memory"),
        (
            "idle CPU, worst node",
            f"{idle:.2f}% of a core",
            "< 5%: " + ("met" if idle < 5 else "NOT met"),
        ),
        (
            "failover p50 / p99 / max",
            f"{rep.failover_p50_ms:.0f} / {rep.failover_p99_ms:.0f} / {rep.failover_max_ms:.0f} ms "
            f"({rep.failover_groups} groups)",
            "p99 < 1 s: "
            + ("met" if rep.failover_p99_ms < 1000 and not rep.failover_missing else "NOT met"),
        ),
        ("writes, leaders spread", f"{rep.spread_commits_per_s:,.0f} commits/s", ""),
        ("writes, all leaders on n1", f"{rep.one_commits_per_s:,.0f} commits/s", ""),
        ("spread / one", f"{rep.spread_over_one:.2f}x", ""),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:<36} {c}" for a, b, c in rows)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--groups", type=int, default=1000)
    p.add_argument("--idle-seconds", type=float, default=5.0)
    p.add_argument("--load-seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="60 groups, 1 s windows: a smoke run")
    p.add_argument("--json", action="store_true")
    p.add_argument("--durable", action="store_true",
                   help="every node on a shared write-ahead log (fsync on) in a temporary directory")


def run(args: argparse.Namespace) -> int:
    return main_report(
        args.groups, args.idle_seconds, args.load_seconds, args.quick, args.json, args.seed,
        args.durable,
    )


def main_report(
    groups: int = 1000,
    idle_seconds: float = 5.0,
    load_seconds: float = 5.0,
    quick: bool = False,
    as_json: bool = False,
    seed: int = 1,
    durable: bool = False,
) -> int:
    if quick:
        groups, idle_seconds, load_seconds = min(groups, 60), 1.0, 1.0
    log = (lambda s: print(s, file=sys.stderr)) if as_json else print
    try:
        rep = run_groups(groups, idle_seconds, load_seconds, seed, log=log, durable=durable)
    except BenchError as e:
        print(f"arena bench groups: {e}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(rep), indent=2) if as_json else render(rep))
    return 0
