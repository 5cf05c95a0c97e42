"""etcd's side of ``arena bench --vs etcd``: Arena's workloads on a 3-member etcd 3.5
cluster on loopback (:mod:`nodes.bench.etcd_cluster`), durable, with a grpcio client.

The workloads mirror :mod:`nodes.bench.arena_side`, with the same keys and values
(``k<client>-<n % 100>`` and the writer's counter: Arena sends it as a msgpack int,
etcd as its decimal digits):

``latency``
    one client, one put at a time to the leader: p50/p99/max.
``throughput``
    ``clients`` clients (each its own gRPC connection to the leader) in 2 load
    processes, each keeping ``window`` puts in flight; median of 3 bursts.
    ``unbatched``: one Put per put (Arena: its client's batching off);
    ``batched``: Txns of 32 puts (Arena: its client's batching on). Each burst also
    reports the CPU time per put of the three servers and of the load processes.
    The rate counts acknowledged puts only (as on Arena's side); ``failed`` and
    ``errors`` (gRPC code and etcd's message, counted) say how many failed and why.
``failover``
    put, kill -9 the leader by pid, then a client that rotates over the live
    members, each attempt with a deadline of ``FAILOVER_ATTEMPT_S`` (and a 20 ms
    pause after an immediate error, as Arena's client), until a put is
    acknowledged; the time from the kill to that acknowledgement. The killed member
    restarts on its data and catches up before the next trial.
``memory``
    RSS of every member after ``memory_commits`` puts (Txns of 32), etcd's defaults
    otherwise (no compaction: it keeps every revision).

``arena bench --vs etcd`` runs them through :func:`alternate`: each workload on
Arena, then at once on etcd, each on a fresh cluster.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import etcd_wire as wire
from .arena_side import FAILOVER_REQUEST_TIMEOUT_S
from .etcd_cluster import EtcdCluster, EtcdError, Member, sigterm_raises
from .stats import summarize

__all__ = ["BATCH", "FAILOVER_ATTEMPT_S", "WORKLOADS", "alternate", "run"]

WORKLOADS = frozenset({"latency", "throughput", "failover", "memory"})
ORDER = ("latency", "throughput", "failover", "memory")  # of the pairs in :func:`alternate`
BATCH = 32  # puts per Txn in the batched throughput
WINDOW = 128  # puts in flight per client, as Arena's and PySyncObj's clients
FAILOVER_ATTEMPT_S = FAILOVER_REQUEST_TIMEOUT_S  # per-attempt deadline of the failover clients
RETRY_PAUSE_S = 0.02  # after an attempt fails at once (Arena's client waits the same)


def _say(msg: str) -> None:
    print(f"[etcd] {msg}", file=sys.stderr, flush=True)


def key(client: int, n: int) -> bytes:
    return f"k{client}-{n % 100}".encode()


def value(n: int) -> bytes:
    return str(n).encode()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pids: Iterable[int]) -> float:
    """User + system CPU seconds consumed so far by ``pids``."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields_ = f.read().rsplit(")", 1)[1].split()
        total += (int(fields_[11]) + int(fields_[12])) / tick
    return total


# --- load processes -------------------------------------------------------------------


def _load_worker(target: str, first_client: int, clients: int, puts: int, window: int,
                 batch: int, out: Any, start: Any) -> None:
    """``clients`` clients (one connection each), ``window`` puts in flight each."""
    import grpc

    channels = [grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(clients)]
    method = wire.PUT if batch == 1 else wire.TXN
    calls = [ch.unary_unary(method) for ch in channels]
    for k, ch in enumerate(channels):  # connect every client before the start signal
        ch.unary_unary(wire.PUT)(wire.encode_put(key(first_client + k, 0), b"0"), timeout=30)
    out.put("ready")
    done: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    per = puts // clients // batch * batch
    sent = [0] * clients
    failed = 0
    errors: dict[str, int] = {}  # "CODE: details" of failed calls, counted

    def submit(k: int) -> None:
        n = sent[k]
        c = first_client + k
        if batch == 1:
            request = wire.encode_put(key(c, n), value(n))
        else:
            request = wire.encode_txn_puts((key(c, n + j), value(n + j)) for j in range(batch))
        calls[k].future(request, timeout=60).add_done_callback(
            lambda f, k=k: done.put((k, f)))
        sent[k] += batch

    start.wait()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for k in range(clients):
        while sent[k] < per and sent[k] < window:
            submit(k)
    finished = 0
    while finished < per * clients:
        k, fut = done.get()
        finished += batch
        exc = fut.exception()
        if exc is not None:
            failed += batch
            what = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.RpcError) \
                else repr(exc)
            errors[what] = errors.get(what, 0) + 1
        if sent[k] < per:
            submit(k)
    elapsed = time.perf_counter() - t0
    out.put({"commits": per * clients, "seconds": elapsed, "failed": failed,
             "cpu_s": time.process_time() - cpu0, "errors": errors})
    for ch in channels:
        ch.close()


def throughput(cluster: EtcdCluster, commits: int, clients: int, batch: int,
               processes: int = 2, window: int = WINDOW) -> dict[str, Any]:
    """One burst of ``commits`` puts to the leader."""
    lead = cluster.wait_stable(30.0)
    mpctx = mp.get_context("spawn")
    out, start = mpctx.Queue(), mpctx.Event()
    per_proc = max(1, clients // processes)
    procs = [mpctx.Process(target=_load_worker, daemon=True,
                           args=(lead.target, p * per_proc, per_proc, commits // processes,
                                 window, batch, out, start))
             for p in range(processes)]
    for p in procs:
        p.start()
    try:
        for _ in procs:  # every load process has connected its clients
            if out.get(timeout=60) != "ready":
                raise EtcdError("a load process reported before it was ready")
        pids = cluster.pids()
        cpu0 = cpu_s(pids)
        t0 = time.perf_counter()
        start.set()
        results = [out.get(timeout=600) for _ in procs]
        elapsed = time.perf_counter() - t0
        cpu = cpu_s(pids) - cpu0
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
    total = sum(r["commits"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for what, n in r["errors"].items():
            errors[what] = errors.get(what, 0) + n
    failed = sum(r["failed"] for r in results)  # answered with an error: not commits
    return {"commits_per_s": (total - failed) / elapsed, "commits": total,
            "clients": per_proc * processes, "window": window, "batch": batch,
            "failed": failed, "errors": errors, "seconds": round(elapsed, 3),
            "server_cpu_us_per_commit": round(cpu / total * 1e6, 1),
            "client_cpu_us_per_commit": round(sum(r["cpu_s"] for r in results) / total * 1e6, 1)}


def throughput_runs(cluster: EtcdCluster, commits: int, clients: int, batch: int,
                    runs: int = 3) -> dict[str, Any]:
    bursts = []
    for k in range(runs):
        bursts.append(throughput(cluster, commits, clients, batch))
        b = bursts[-1]
        _say(f"throughput (batch {batch}) run {k + 1}/{runs}: {b['commits_per_s']:.0f} puts/s, "
             f"{b['server_cpu_us_per_commit']:.0f} us server CPU per put"
             + (f", {b['failed']} failed: {b['errors']}" if b["failed"] else ""))
    median = sorted(bursts, key=lambda b: b["commits_per_s"])[(runs - 1) // 2]
    return {**median, "failed": sum(b["failed"] for b in bursts),
            "runs": [{"commits_per_s": round(b["commits_per_s"]), "seconds": b["seconds"],
                      "failed": b["failed"], "errors": b["errors"],
                      "server_cpu_us_per_commit": b["server_cpu_us_per_commit"],
                      "client_cpu_us_per_commit": b["client_cpu_us_per_commit"]}
                     for b in bursts]}


# --- one client -----------------------------------------------------------------------


def latency(cluster: EtcdCluster, writes: int, warmup: int = 50) -> dict[str, Any]:
    lead = cluster.wait_stable(30.0)
    put = lead.channel().unary_unary(wire.PUT)
    samples = []
    for i in range(warmup + writes):
        request = wire.encode_put(b"lat", value(i))
        t0 = time.perf_counter()
        put(request, timeout=5.0)
        if i >= warmup:
            samples.append((time.perf_counter() - t0) * 1000)
    return {"single_client": summarize(samples), "writes": writes,
            "samples_ms": [round(x, 3) for x in samples]}


def _put_until_acked(cluster: EtcdCluster, members: list[Member], k: bytes, v: bytes,
                     deadline_s: float) -> tuple[float, int]:
    """Rotate over ``members`` until one acknowledges the put; (ack time, attempts)."""
    import grpc

    end = time.perf_counter() + deadline_s
    attempts = 0
    while time.perf_counter() < end:
        m = members[attempts % len(members)]
        attempts += 1
        t_try = time.perf_counter()
        try:
            cluster.put(m, k, v, timeout_s=FAILOVER_ATTEMPT_S)
            return time.perf_counter(), attempts
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                time.sleep(max(0.0, RETRY_PAUSE_S - (time.perf_counter() - t_try)))
    raise EtcdError(f"no member acknowledged a put within {deadline_s:.0f} s after the kill")


def failover(cluster: EtcdCluster, trials: int) -> dict[str, Any]:
    times: list[float] = []
    details = []
    for t in range(trials):
        lead = cluster.wait_stable(60.0)
        cluster.put(lead, b"fo", value(t))
        live = [m for m in cluster.members if m is not lead]
        start = cluster.members.index(lead)  # begin with the member after the leader
        live.sort(key=lambda m: (cluster.members.index(m) - start) % cluster.size)
        t_kill = time.perf_counter()
        cluster.kill(lead)
        t_ack, attempts = _put_until_acked(cluster, live, b"fo", value(-t), 30.0)
        ms = (t_ack - t_kill) * 1000
        times.append(ms)
        details.append({"killed": lead.name, "ms": round(ms, 1), "attempts": attempts})
        _say(f"failover trial {t + 1}/{trials}: {ms:.0f} ms ({attempts} attempts)")
        cluster.reap(lead)
        cluster.spawn(lead)
    cluster.wait_stable(60.0)
    return {"trials": [round(x, 1) for x in times], **summarize(times), "details": details,
            "attempt_timeout_s": FAILOVER_ATTEMPT_S}


def memory(cluster: EtcdCluster, commits: int, clients: int) -> dict[str, Any]:
    idle = {m.name: round(rss_mb(m.pid), 1) for m in cluster.members}
    t = throughput(cluster, commits, clients, BATCH)
    cluster.wait_stable(60.0)  # every member has applied everything
    rss = {m.name: round(rss_mb(m.pid), 1) for m in cluster.members}
    return {"commits": t["commits"], "rss_mb_per_node": rss, "max_rss_mb": max(rss.values()),
            "rss_mb_per_node_idle": idle, "sustained_commits_per_s": round(t["commits_per_s"]),
            "seconds": t["seconds"]}


def run(workloads: Iterable[str], nodes: int = 3, commits: int = 20_000, clients: int = 8,
        latency_writes: int = 1000, failover_trials: int = 20, memory_commits: int = 1_000_000,
        tmp_dir: Path | None = None, throughput_repeats: int = 3) -> dict[str, Any]:
    """Run ``workloads`` (a subset of :data:`WORKLOADS`) on a fresh ``nodes``-member etcd.

    Data directories go to ``tmp_dir`` (a new temporary directory in the system's temp
    dir, the filesystem Arena's bench uses, when None; removed afterwards unless the
    run failed, when its path is printed). Raises EtcdUnavailable when etcd or grpcio
    is not installed, EtcdError when the cluster misbehaves.
    """
    wanted = set(workloads)
    unknown = wanted - WORKLOADS
    if unknown:
        raise ValueError(f"unknown workloads {sorted(unknown)}; choose from {sorted(WORKLOADS)}")
    own = tmp_dir is None
    base = Path(tmp_dir) if tmp_dir is not None else Path(tempfile.mkdtemp(
        prefix="arena-bench-etcd-"))
    ok = False
    try:
        with sigterm_raises(), EtcdCluster(base, size=nodes) as cluster:
            _say(f"starting {nodes} members (heartbeat {cluster.heartbeat_ms} ms, election "
                 f"{cluster.election_ms} ms), data in {base}")
            lead = cluster.start()
            version = cluster.status(lead)
            results: dict[str, Any] = {"config": {
                "etcd": version.version if version else "?", "nodes": cluster.size,
                "heartbeat_ms": cluster.heartbeat_ms, "election_ms": cluster.election_ms,
                "pre_vote": True, "durable": True, "data_dir": str(base)}}
            if "latency" in wanted:
                _say("latency (one client)")
                results["latency"] = latency(cluster, latency_writes)
            if "throughput" in wanted:
                results["throughput"] = {
                    "unbatched": throughput_runs(cluster, commits, clients, 1, throughput_repeats),
                    "batched": throughput_runs(cluster, commits, clients, BATCH,
                                               throughput_repeats)}
            if "failover" in wanted:
                _say("failover")
                results["failover"] = failover(cluster, failover_trials)
            if "memory" in wanted:
                _say(f"memory after {memory_commits} puts")
                results["memory"] = memory(cluster, memory_commits, clients)
        ok = True
        return results
    finally:
        if own:
            if ok:
                shutil.rmtree(base, ignore_errors=True)
            else:
                _say(f"run failed; etcd data and logs kept in {base}")


def alternate(workloads: set[str], arena_run: Callable[[set[str]], dict[str, Any]],
              etcd_run: Callable[[set[str]], dict[str, Any]], sample_floor: Callable[[], None],
              arena_workloads: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run each workload etcd has on Arena, then at once on etcd (each on a fresh
    cluster), so that the two figures of a row are measured minutes apart, not a
    whole run apart: the load on a shared machine moves by 3x in that time. The
    floor is sampled before each pair and at the end; Arena's other workloads run
    last. Returns (Arena's results, etcd's), merged over the pairs."""
    unknown = workloads - set(arena_workloads)
    if unknown:
        raise ValueError(f"unknown workloads {sorted(unknown)}; choose from "
                         f"{sorted(arena_workloads)}")
    ours: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    for w in ORDER:
        if w in workloads:
            sample_floor()
            ours.update(arena_run({w}))
            theirs.update(etcd_run({w}))
    rest = workloads - WORKLOADS
    if rest:
        ours.update(arena_run(rest))
    sample_floor()
    return ours, theirs
