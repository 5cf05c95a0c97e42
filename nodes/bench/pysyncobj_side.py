"""PySyncObj's side of ``arena bench --vs pysyncobj``: the same workloads on a cluster
of real PySyncObj 0.3.17 processes on loopback.

:func:`run` starts ``nodes`` processes of :mod:`nodes.bench.pysyncobj_node` on free
ports, drives them through their control sockets and returns plain metrics:

``throughput``
    on a cluster with batching on (PySyncObj's default and its throughput mode): a
    warm-up burst, then ``throughput_repeats`` bursts of ``commits`` pipelined ``set``
    calls with callbacks, issued on the leader by ``clients`` logical clients (inside
    the leader's process: PySyncObj has no client protocol, its writers live in a
    node) each keeping at most ``window`` calls in flight (None: all of its calls at
    once). Commits/s of a burst = committed / (first call to last call finished); the
    reported figure is the median burst. A call PySyncObj never answers is given up
    after 5 s and counted in ``timeouts``.
``latency``
    one client on the leader, one synchronous ``set(..., sync=True)`` at a time:
    ``unbatched`` on a cluster with ``appendEntriesUseBatch=False`` (PySyncObj's
    low-latency mode: the figure to compare with) and ``batched`` on the batching
    cluster (a proposal waits for the next heartbeat there); and
    ``unbatched_via_follower``: the same writer on a follower, which forwards each
    command to the leader and returns once it has applied it (four hops, as for a
    client process talking to a node).
``failover``
    ``failover_trials`` times: wait for a stable cluster (one leader everybody agrees
    on, everybody connected, a probe write committed and applied everywhere), SIGKILL
    the leader by pid, ask a surviving node to write until one write commits, and
    record kill -> commit in ms; then restart the killed node with the same arguments
    (its log is in memory, so it comes back empty and catches up) and wait for a
    stable cluster again. Runs on the unbatched cluster unless ``failover_batch``.
``memory``
    VmRSS of every node, idle right after start and after the cluster has committed
    ``commits`` writes (the throughput burst when it ran, else a burst of its own),
    on the batching cluster.

Every write is ``set(key, value)`` with ``value_size`` bytes of value and keys
cycling over 1000 per client, so the replicated dict stays small. Nothing is
persisted: PySyncObj runs with no journal file (as DESIGN.md quotes it).

Every process started is stopped by its pid before :func:`run` returns or raises
(SIGTERM is turned into an exception while it runs, in the main thread), and a node
exits by itself if the driver dies. Progress goes to stderr; nothing to stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from nodes.bench import BenchError, sigterm_raises
from nodes.bench.stats import summarize
from nodes.local import free_ports

__all__ = ["DEFAULT_WINDOW", "WORKLOADS", "BenchError", "run"]

WORKLOADS = frozenset({"throughput", "latency", "failover", "memory"})

ELECTION_TIMEOUT_S = (0.15, 0.30)
HEARTBEAT_S = 0.045  # appendEntriesPeriod; see nodes.bench.pysyncobj_node
# Calls in flight per throughput client. With batching, a round of proposals takes
# about two heartbeats, so PySyncObj's rate is ~clients * window / 0.1 s until the CPU
# is the limit: 8 x 128 gives ~10,000-16,000 commits/s, its figure in DESIGN.md. With
# None (every call at once) it chews through one 20,000-entry backlog at 40,000-90,000/s
# on a quiet machine, but on a loaded one the same backlog starves its heartbeats into
# elections, DISCARDED/LEADER_CHANGED errors and callbacks that never come, and the
# rate swings by 10x from run to run. Use the same window on both sides.
DEFAULT_WINDOW = 128
NODE_MODULE = "nodes.bench.pysyncobj_node"


def _progress(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[pysyncobj] {msg}", file=sys.stderr, flush=True)


class _Control:
    """REQ client to one node's control socket, with a timeout on every call."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], addr: str) -> None:
        self.ctx = ctx
        self.endpoint = f"tcp://{addr}"
        self.sock: zmq.Socket[bytes] | None = None

    def _socket(self) -> zmq.Socket[bytes]:
        if self.sock is None:
            sock = self.ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.REQ_RELAXED, 1)
            sock.setsockopt(zmq.REQ_CORRELATE, 1)
            sock.connect(self.endpoint)
            self.sock = sock
        return self.sock

    def call(self, op: str, wait_s: float, **params: Any) -> dict[str, Any]:
        sock = self._socket()
        sock.send(json.dumps({"op": op, **params}).encode())
        if not sock.poll(int(wait_s * 1000), zmq.POLLIN):
            self.close()  # a REQ socket that missed its reply is reset
            raise TimeoutError(f"{op} to {self.endpoint}: no reply in {wait_s:.1f} s")
        reply = json.loads(sock.recv())
        if not isinstance(reply, dict):
            raise BenchError(f"{op} to {self.endpoint}: bad reply {reply!r}")
        return reply

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None


@dataclass
class _Node:
    index: int
    raft_addr: str
    control_addr: str
    argv: list[str]
    log_path: Path
    control: _Control
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class _Cluster:
    """``n`` PySyncObj processes, all started and stopped by pid."""

    ctx: zmq.Context[zmq.Socket[bytes]]
    n: int
    batch: bool
    log_dir: Path
    started: list[subprocess.Popen[bytes]]  # every process ever started, for cleanup
    quiet: bool
    heartbeat: float = HEARTBEAT_S
    nodes: list[_Node] = field(default_factory=list)
    committed: int = 0  # bench writes committed on this cluster so far

    def start(self, timeout_s: float = 30.0) -> int:
        ports = free_ports(2 * self.n)
        raft = [f"127.0.0.1:{p}" for p in ports[: self.n]]
        ctl = [f"127.0.0.1:{p}" for p in ports[self.n :]]
        mode = "batch" if self.batch else "nobatch"
        for i in range(self.n):
            argv = [
                sys.executable, "-m", NODE_MODULE,
                "--self", raft[i],
                "--partners", *[a for j, a in enumerate(raft) if j != i],
                "--control", ctl[i],
                "--batch" if self.batch else "--no-batch",
                "--heartbeat", repr(self.heartbeat),
            ]  # fmt: skip
            log_path = self.log_dir / f"pysyncobj-{mode}-node{i}.log"
            self.nodes.append(_Node(i, raft[i], ctl[i], argv, log_path, _Control(self.ctx, ctl[i])))
        for node in self.nodes:
            self.spawn(node)
        return self.wait_stable(timeout_s)

    def spawn(self, node: _Node) -> None:
        with open(node.log_path, "ab") as log:
            proc = subprocess.Popen(
                node.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
            )
        self.started.append(proc)
        node.proc = proc

    def kill(self, node: _Node) -> None:
        """SIGKILL by pid (no reaping: the caller does it when timing allows)."""
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGKILL)

    def reap(self, node: _Node) -> None:
        if node.proc is not None:
            node.proc.wait(timeout=10)
        node.control.close()

    def status(
        self, node: _Node, timeout_s: float = 2.0, digest: bool = False
    ) -> dict[str, Any] | None:
        if not node.alive:
            return None
        try:
            reply = node.control.call("status", timeout_s, digest=digest)
        except (TimeoutError, zmq.ZMQError):
            return None
        return reply if reply.get("ok") else None

    def call(self, node: _Node, op: str, wait_s: float, **params: Any) -> dict[str, Any]:
        if not node.alive:
            raise BenchError(f"node {node.raft_addr} is not running (see {node.log_path})")
        try:
            reply = node.control.call(op, wait_s, **params)
        except TimeoutError as exc:
            raise BenchError(str(exc)) from exc
        if not reply.get("ok"):
            raise BenchError(f"{op} on {node.raft_addr} failed: {reply.get('error')}")
        return reply

    def _stable_leader(self) -> _Node | None:
        """The leader, if every node is up, connected, and agrees on one leader."""
        statuses = [self.status(node) for node in self.nodes]
        if any(s is None for s in statuses):
            return None
        leaders = [
            node for node, s in zip(self.nodes, statuses, strict=True) if s and s["is_leader"]
        ]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        for s in statuses:
            assert s is not None
            if s["leader"] != leader.raft_addr or s["partners_connected"] != self.n - 1:
                return None
        return leader

    def wait_stable(self, timeout_s: float) -> int:
        """Wait for a stable cluster: all nodes up and connected, one agreed leader, a
        probe write committed by it and applied on every node. Returns the leader's
        index; raises BenchError at the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise BenchError(
                        f"node {node.raft_addr} exited with {node.proc.returncode}"
                        f" (see {node.log_path})"
                    )
            leader = self._stable_leader()
            if leader is None:
                time.sleep(0.05)
                continue
            try:
                remaining = max(0.5, deadline - time.monotonic())
                # one write (a new attempt only if one fails), so that no duplicate
                # lands after the check below
                self.call(
                    leader,
                    "write",
                    remaining + 2.0,
                    deadline_s=remaining,
                    retry_interval_s=remaining,
                )
            except BenchError:
                continue
            target = (self.status(leader) or {}).get("commit_idx")
            if target is None:
                continue
            while time.monotonic() < deadline:
                statuses = [self.status(node) for node in self.nodes]
                if all(s is not None and s["last_applied"] >= target for s in statuses):
                    if self._stable_leader() is leader:
                        return leader.index
                    break
                time.sleep(0.02)
        states = {n.raft_addr: self.status(n) for n in self.nodes}
        raise BenchError(f"no stable PySyncObj cluster after {timeout_s:.0f} s: {states}")

    def replicas_identical(self) -> bool:
        """After a stable point with no write in flight: same applied index and the
        same replicated dict (by digest) on every node."""
        self.wait_stable(30.0)
        deadline = time.monotonic() + 5.0
        while True:
            statuses = [self.status(node, timeout_s=10.0, digest=True) for node in self.nodes]
            if all(s is not None for s in statuses):
                applied = {s["last_applied"] for s in statuses if s}
                digests = {s["digest"] for s in statuses if s}
                if len(applied) == 1 and len(digests) == 1:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def rss_mb(self) -> list[float]:
        out = []
        for node in self.nodes:
            s = self.status(node)
            if s is None:
                raise BenchError(f"no status from {node.raft_addr}")
            out.append(round(s["rss_kb"] / 1024.0, 2))
        return out

    def stop(self) -> None:
        """Stop every node of this cluster by pid: ask, then SIGTERM, then SIGKILL."""
        for node in self.nodes:
            if node.alive:
                with contextlib.suppress(TimeoutError, zmq.ZMQError, ValueError):
                    node.control.call("stop", 1.0)
        for node in self.nodes:
            if node.proc is not None:
                _stop_proc(node.proc)
            node.control.close()


def _stop_proc(proc: subprocess.Popen[bytes], grace_s: float = 2.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.wait(timeout=grace_s)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def _burst(
    cluster: _Cluster,
    leader: _Node,
    commits: int,
    clients: int,
    window: int | None,
    value_size: int,
) -> dict[str, Any]:
    timeout_s = 60.0 + commits / 200.0
    reply = cluster.call(
        leader, "burst", timeout_s + 5.0,
        commits=commits, clients=clients, window=window, value_size=value_size,
        timeout_s=timeout_s, call_timeout_s=5.0,
    )  # fmt: skip
    cluster.committed += int(reply["committed"])
    return reply


def _latency(cluster: _Cluster, leader: _Node, writes: int, value_size: int) -> dict[str, Any]:
    warmup = min(50, max(5, writes // 10))
    deadline_s = 60.0 + writes * 0.25
    reply = cluster.call(
        leader, "latency", deadline_s + 10.0,
        writes=writes, warmup=warmup, value_size=value_size, timeout_s=5.0, deadline_s=deadline_s,
    )  # fmt: skip
    cluster.committed += len(reply["samples_ms"])
    summary: dict[str, Any] = summarize(reply["samples_ms"])
    summary["samples_ms"] = [round(x, 3) for x in reply["samples_ms"]]
    summary["errors"] = reply["errors"]
    if reply["truncated"]:
        summary["truncated"] = True
    return summary


def _failover(cluster: _Cluster, trials: int, quiet: bool) -> dict[str, Any]:
    times_ms: list[float] = []
    details: list[dict[str, Any]] = []
    failed = 0
    leader_idx = cluster.wait_stable(30.0)
    for t in range(trials):
        victim = cluster.nodes[leader_idx]
        survivor = next(n for n in cluster.nodes if n is not victim)
        t_kill = time.monotonic()
        cluster.kill(victim)
        try:
            reply = cluster.call(survivor, "write", 15.0, deadline_s=10.0, retry_interval_s=0.05)
        except BenchError as exc:
            failed += 1
            _progress(f"failover {t + 1}/{trials}: {exc}", quiet)
            reply = None
        cluster.reap(victim)
        if reply is not None:
            ms = (float(reply["t_commit"]) - t_kill) * 1000.0
            times_ms.append(ms)
            details.append(
                {"killed": victim.raft_addr, "ms": round(ms, 3), "attempts": reply["attempts"]}
            )
            _progress(f"failover {t + 1}/{trials}: {ms:.0f} ms (killed {victim.raft_addr})", quiet)
        cluster.spawn(victim)
        leader_idx = cluster.wait_stable(60.0)
    result: dict[str, Any] = {"trials": [round(x, 3) for x in times_ms], **summarize(times_ms)}
    result["failed"] = failed
    result["details"] = details
    return result


def _scan_logs(log_dir: Path) -> dict[str, Any]:
    """Count what PySyncObj logged at ERROR and CRITICAL level in this run's node logs."""
    critical = errors = 0
    sample = None
    for path in sorted(log_dir.glob("pysyncobj-*.log")):
        with open(path, errors="replace") as f:
            for line in f:
                if " CRITICAL " in line:
                    critical += 1
                    if sample is None:
                        sample = line.split(" CRITICAL ", 1)[1].strip()
                elif " ERROR " in line:
                    errors += 1
    return {"critical_log_lines": critical, "error_log_lines": errors, "sample_critical": sample}


def run(
    workloads: Iterable[str],
    nodes: int = 3,
    commits: int = 20_000,
    clients: int = 8,
    failover_trials: int = 20,
    tmp_dir: str | Path | None = None,
    *,
    latency_writes: int | None = None,
    batched_latency_writes: int | None = None,
    window: int | None = DEFAULT_WINDOW,
    throughput_repeats: int = 3,
    value_size: int = 16,
    failover_batch: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run ``workloads`` (a subset of :data:`WORKLOADS`) on PySyncObj and return metrics.

    Returns a dict with a key per workload run, plus ``"config"``::

        {"throughput": {"commits_per_s", "clients", "commits", "window", "errors",
                        "timeouts", "elections", "runs": [per-burst dicts]},
         "latency": {"unbatched": summarize(ms), "batched": summarize(ms)},
         "failover": {"trials": [ms, ...], **summarize(trials), "failed", "details", "batch"},
         "memory": {"rss_mb_per_node": [...], "rss_mb_per_node_idle": [...], "commits": n},
         "checks": {"replicas_identical": {"batching_on": bool, "batching_off": bool},
                    "critical_log_lines": n, "error_log_lines": n, "sample_critical": str},
         "config": {...}}

    ``checks`` compares the replicated dicts of all nodes at the end of each cluster's
    workloads and counts the ERROR/CRITICAL lines PySyncObj logged (for instance its
    "truncating already-applied log entries" warning).

    ``window`` is the calls in flight per throughput client (see DEFAULT_WINDOW; None
    for no limit) and ``throughput_repeats`` the number of measured bursts (the median
    is reported). ``memory.commits`` counts every write the batching cluster committed
    before the measurement (warm-up and all bursts). ``latency_writes`` defaults to
    ``min(1000, commits)`` and ``batched_latency_writes`` to ``min(latency_writes,
    200)`` (a lone batched write waits about two heartbeats, ~100 ms).
    ``failover_batch`` runs failover on the batching cluster instead.
    ``tmp_dir`` receives the nodes' logs; when None a temporary directory is made and
    removed afterwards unless the run failed (its path is then printed to stderr).
    Raises :class:`BenchError` when the cluster misbehaves, ImportError when
    pysyncobj is not installed (``pip install -e '.[bench]'``).
    """
    wanted = set(workloads)
    unknown = wanted - WORKLOADS
    if unknown:
        raise ValueError(f"unknown workloads {sorted(unknown)}; choose from {sorted(WORKLOADS)}")
    if nodes < 1:
        raise ValueError("nodes must be >= 1")
    if "failover" in wanted and nodes < 3:
        raise ValueError("failover needs at least 3 nodes (a majority must survive the kill)")
    import pysyncobj.version  # fail early, in the driver, when the bench extra is missing

    lat_writes = min(1000, commits) if latency_writes is None else latency_writes
    blat_writes = min(lat_writes, 200) if batched_latency_writes is None else batched_latency_writes

    own_tmp = tmp_dir is None
    log_dir = Path(tempfile.mkdtemp(prefix="arena-bench-pysyncobj-")) if own_tmp else Path(tmp_dir)  # type: ignore[arg-type]
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen[bytes]] = []
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    results: dict[str, Any] = {
        "config": {
            "pysyncobj": pysyncobj.version.VERSION,
            "nodes": nodes,
            "election_timeout_s": list(ELECTION_TIMEOUT_S),
            "heartbeat_s": HEARTBEAT_S,
            "journal": None,
            "value_size": value_size,
        }
    }
    ok = False
    checks: dict[str, Any] = {"replicas_identical": {}}

    def phase(batch: bool, steps: list[tuple[str, Callable[[_Cluster, _Node], None]]]) -> None:
        if not steps:
            return
        cluster = _Cluster(ctx, nodes, batch, log_dir, started, quiet)
        try:
            label = "batching on" if batch else "batching off"
            _progress(f"starting {nodes} nodes ({label}), logs in {log_dir}", quiet)
            leader_idx = cluster.start()
            _progress(f"leader {cluster.nodes[leader_idx].raft_addr}", quiet)
            for name, step in steps:
                _progress(f"{name} ...", quiet)
                leader = cluster.nodes[cluster.wait_stable(30.0)]
                step(cluster, leader)
            same = cluster.replicas_identical()
            checks["replicas_identical"]["batching_on" if batch else "batching_off"] = same
            if not same:
                _progress(f"replicas differ ({label})!", quiet)
        finally:
            cluster.stop()

    def throughput(cluster: _Cluster, leader: _Node) -> None:
        warm = min(1000, max(1, commits // 10))
        _burst(cluster, leader, warm, clients, window, value_size)
        runs = []
        for _ in range(max(1, throughput_repeats)):
            leader = cluster.nodes[cluster.wait_stable(30.0)]
            reply = _burst(cluster, leader, commits, clients, window, value_size)
            runs.append(
                {
                    "commits_per_s": reply["commits_per_s"],
                    "committed": reply["committed"],
                    "errors": reply["errors"],
                    "timeouts": reply["timeouts"],
                    "elections": reply["terms_elapsed"],
                    "seconds": reply["seconds"],
                }
            )
            _progress(
                f"throughput run {len(runs)}: {reply['commits_per_s']:.0f} commits/s"
                f" ({reply['errors']} errors, {reply['timeouts']} timeouts,"
                f" {reply['terms_elapsed']} elections)",
                quiet,
            )
        rates = sorted(r["commits_per_s"] for r in runs)
        results["throughput"] = {
            "commits_per_s": rates[(len(rates) - 1) // 2],  # median (lower middle)
            "clients": clients,
            "commits": commits,
            "window": window,
            "errors": sum(r["errors"] for r in runs),
            "timeouts": sum(r["timeouts"] for r in runs),
            "elections": sum(r["elections"] for r in runs),
            "runs": runs,
        }
        _progress(f"throughput: {results['throughput']['commits_per_s']:.0f} commits/s", quiet)

    def memory(cluster: _Cluster, leader: _Node) -> None:
        if "throughput" not in results:
            _burst(cluster, leader, commits, clients, window, value_size)
        cluster.wait_stable(30.0)  # every node has applied everything
        rss = cluster.rss_mb()
        results["memory"] = {
            "rss_mb_per_node": rss,
            "rss_mb_per_node_idle": idle_rss,
            "commits": cluster.committed,
        }
        _progress(f"memory: {rss} MB after {cluster.committed} commits", quiet)

    def latency(batched: bool) -> Callable[[_Cluster, _Node], None]:
        def step(cluster: _Cluster, leader: _Node) -> None:
            summary = _latency(cluster, leader, blat_writes if batched else lat_writes, value_size)
            key = "batched" if batched else "unbatched"
            results.setdefault("latency", {})[key] = summary
            _progress(
                f"latency {key}: p50 {summary['p50']:.2f} ms, p99 {summary['p99']:.2f} ms", quiet
            )
            if not batched:
                # the writer on a follower: PySyncObj forwards to the leader and answers
                # once the follower applies, four hops as for Arena's client process
                follower = next(n for n in cluster.nodes if n is not leader)
                via = _latency(cluster, follower, lat_writes, value_size)
                results["latency"]["unbatched_via_follower"] = via
                _progress(f"latency unbatched, writer on a follower: p50 {via['p50']:.2f} ms, "
                          f"p99 {via['p99']:.2f} ms", quiet)

        return step

    def failover(cluster: _Cluster, leader: _Node) -> None:
        res = _failover(cluster, failover_trials, quiet)
        res["batch"] = cluster.batch
        results["failover"] = res
        _progress(f"failover: p50 {res['p50']:.0f} ms, max {res['max']:.0f} ms", quiet)

    idle_rss: list[float] = []

    def record_idle(cluster: _Cluster, leader: _Node) -> None:
        idle_rss.extend(cluster.rss_mb())

    batch_steps: list[tuple[str, Callable[[_Cluster, _Node], None]]] = []
    nobatch_steps: list[tuple[str, Callable[[_Cluster, _Node], None]]] = []
    if "memory" in wanted:
        batch_steps.append(("idle memory", record_idle))
    if "throughput" in wanted:
        batch_steps.append(("throughput", throughput))
    if "memory" in wanted:
        batch_steps.append(("memory", memory))
    if "latency" in wanted:
        batch_steps.append(("latency (batched)", latency(True)))
        nobatch_steps.append(("latency (unbatched)", latency(False)))
    if "failover" in wanted:
        (batch_steps if failover_batch else nobatch_steps).append(("failover", failover))

    try:
        with sigterm_raises():
            phase(True, batch_steps)
            phase(False, nobatch_steps)
        checks.update(_scan_logs(log_dir))
        if checks.get("critical_log_lines"):
            _progress(
                f"{checks['critical_log_lines']} CRITICAL lines in the node logs,"
                f" e.g. {checks['sample_critical']}",
                quiet,
            )
        results["checks"] = checks
        ok = True
    finally:
        for proc in started:  # belt and braces: every pid we started is gone
            _stop_proc(proc, grace_s=0.5)
        ctx.destroy(linger=0)
        if own_tmp:
            if ok:
                shutil.rmtree(log_dir, ignore_errors=True)
            else:
                _progress(f"run failed; node logs kept in {log_dir}", quiet)
    return results
