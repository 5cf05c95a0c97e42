"""Arena's side of ``arena bench``: real node processes on loopback, durable (fsync).

Workloads (each returns plain data; ``nodes.bench.report`` pairs them with
PySyncObj's figures measured in the same run):

- throughput (median of 3 bursts): pipelined commits per second from several concurrent clients,
  run in separate load processes (``window`` requests in flight per client);
- latency: one client, one write at a time (p50/p99/max); and, to compare like for
  like with PySyncObj, a writer inside the leader's process (``embedded.py``),
  durable and in memory;
- failover: kill -9 the leader, time until a client's next write commits;
  the killed node is restarted and caught up before the next trial;
- broadcast: 50 subscribers on the leader's PUB; time from the leader's
  timestamp in the entry (taken when it proposed) to receipt by each subscriber;
- memory: RSS of every node after N commits with snapshots on;
- catchup: a follower is stopped, N more commits land, it restarts; time until
  it has applied everything the leader had committed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from client.api import Client, wait_until
from client.link import ClusterLink

from .. import codec
from ..clusterfile import ClusterFile, Timing, load
from ..local import LocalCluster
from . import embedded
from .stats import summarize

WORKLOADS = ("throughput", "latency", "failover", "broadcast", "memory", "catchup")
# per-request deadline of the failover client: one heartbeat, and the same for etcd's
# (nodes.bench.etcd_side.FAILOVER_ATTEMPT_S). An etcd follower forwards a put to the
# leader it last heard from and, that leader dead, answers nothing until the deadline:
# a longer one would measure the client's patience more than etcd's failover.
FAILOVER_REQUEST_TIMEOUT_S = 0.05


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- load processes ---------------------------------------------------------------


def _load_worker(cluster_path: str, clients: int, commits: int, window: int,
                 out: Any, start: Any, batching: bool = True) -> None:
    """Run ``clients`` logical clients, each keeping ``window`` puts in flight
    (``batching``: the client library's transport batching on or off)."""
    cf = load(cluster_path)
    ctx = zmq.Context()
    links = [ClusterLink(cf, request_timeout=2.0, deadline=30.0, ctx=ctx) for _ in range(clients)]
    for link in links:
        link.batching = batching
    # open every session (seq 1 goes alone), then wait for the start signal
    for link in links:
        link.wait(link.submit("kv", {"op": "put", "key": "warm", "value": 0}))
    start.wait()
    per = commits // clients
    sent = [0] * clients
    done = [0] * clients
    failed = 0
    t0, cpu0 = time.perf_counter(), time.process_time()

    def on_done(k: int) -> Any:
        def cb(c: Any) -> None:
            nonlocal failed
            done[k] += 1
            if not c.ok:
                failed += 1
        return cb

    while sum(done) < per * clients:
        for k, link in enumerate(links):
            while sent[k] < per and sent[k] - done[k] < window:
                link.submit("kv", {"op": "put", "key": f"k{k}-{sent[k] % 100}", "value": sent[k]},
                            on_done(k))
                sent[k] += 1
        for link in links:
            link.poll(0)
    elapsed = time.perf_counter() - t0
    out.put({"commits": per * clients, "seconds": elapsed, "failed": failed,
             "cpu_s": time.process_time() - cpu0})
    for link in links:
        link.close()
    ctx.term()


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids``."""
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def throughput_runs(lc: LocalCluster, commits: int, clients: int, runs: int = 3,
                    batching: bool = True) -> dict:
    """The median of ``runs`` bursts, as the PySyncObj side reports (one burst on a
    shared 2-core machine can be off by a third)."""
    bursts = []
    for k in range(runs):
        bursts.append(throughput(lc, commits, clients, batching=batching))
        _say(f"  throughput run {k + 1}/{runs}{'' if batching else ' (client batching off)'}: "
             f"{bursts[-1]['commits_per_s']:.0f} commits/s, "
             f"{bursts[-1]['server_cpu_us_per_commit']:.0f} us server CPU per commit")
    median = sorted(bursts, key=lambda b: b["commits_per_s"])[(runs - 1) // 2]
    return {**median, "runs": [{"commits_per_s": round(b["commits_per_s"]), "seconds": b["seconds"],
                                "failed": b["failed"],
                                "server_cpu_us_per_commit": b["server_cpu_us_per_commit"],
                                "client_cpu_us_per_commit": b["client_cpu_us_per_commit"]}
                               for b in bursts],
            "failed": sum(b["failed"] for b in bursts)}


def throughput(lc: LocalCluster, commits: int, clients: int, processes: int = 2,
               window: int = 128, batching: bool = True) -> dict:
    """``clients`` logical clients in ``processes`` load processes, each keeping
    ``window`` commands in flight (128, as the PySyncObj side does); ``batching``
    off sends every command as a request of its own (etcd's unbatched puts).
    ``server_cpu_us_per_commit``: CPU time of every node process during the burst;
    ``client_cpu_us_per_commit``: of the load processes. ``commits_per_s`` counts
    the commands acknowledged as committed, not those answered with an error."""
    mpctx = mp.get_context("spawn")
    out, start = mpctx.Queue(), mpctx.Event()
    procs = [mpctx.Process(target=_load_worker,
                           args=(str(lc.cluster_path), max(1, clients // processes),
                                 commits // processes, window, out, start, batching))
             for _ in range(processes)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every load process open its sessions (start is a barrier below)
    pids = [pid for nid in lc.cluster.ids() if (pid := lc.pid(nid)) and lc.alive(nid)]
    cpu0 = _cpu_s(pids)
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=300) for _ in procs]
    elapsed = time.perf_counter() - t0
    cpu = _cpu_s(pids) - cpu0
    for p in procs:
        p.join(10)
    total = sum(r["commits"] for r in results)
    failed = sum(r["failed"] for r in results)  # answered with an error: not commits
    return {"commits_per_s": (total - failed) / elapsed, "commits": total, "clients": clients,
            "window": window, "batching": batching, "failed": failed,
            "seconds": round(elapsed, 3), "server_cpu_us_per_commit": round(cpu / total * 1e6, 1),
            "client_cpu_us_per_commit": round(sum(r["cpu_s"] for r in results) / total * 1e6, 1)}


def latency(c: Client, writes: int) -> dict:
    c.put("lat", 0)
    samples = []
    for i in range(writes):
        t0 = time.perf_counter()
        c.put("lat", i)
        samples.append((time.perf_counter() - t0) * 1000)
    return {"single_client": summarize(samples), "writes": writes,
            "samples_ms": [round(x, 3) for x in samples]}


def failover(lc: LocalCluster, c: Client, trials: int,
             request_timeout: float = FAILOVER_REQUEST_TIMEOUT_S) -> dict:
    """``request_timeout``: how long the client waits for one node's answer before it
    resends to the next (etcd's failover client gets the same deadline per attempt)."""
    times = []
    for t in range(trials):
        lead = c.wait_for_leader(10)
        c.put("fo", t)
        lc.kill(lead)
        saved, c.link.request_timeout = c.link.request_timeout, request_timeout
        t0 = time.perf_counter()
        try:
            c.put("fo", -t)  # fails over inside the client until it commits
        finally:
            c.link.request_timeout = saved
        times.append((time.perf_counter() - t0) * 1000)
        lc.start(lead)
        target = c.status(c.wait_for_leader(10))["commit"]
        wait_until(lambda n=lead, t=target: (c.status(n, timeout=0.3) or {}).get("applied", 0) >= t,
              20, f"{lead} catching up")
        _say(f"  failover trial {t + 1}/{trials}: {times[-1]:.0f} ms")
    return {"trials": [round(x, 1) for x in times], **summarize(times),
            "request_timeout_s": request_timeout}


def broadcast(lc: LocalCluster, c: Client, subscribers: int, writes: int) -> dict:
    lead = c.wait_for_leader(10)
    pub = lc.cluster.node(lead).pub
    ctx = zmq.Context()
    subs = []
    poller = zmq.Poller()
    for _ in range(subscribers):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, codec.UPDATE_TOPIC)
        s.connect(pub)
        subs.append(s)
        poller.register(s, zmq.POLLIN)
    time.sleep(0.5)  # slow joiner: let every SUB finish connecting before measuring
    samples: list[float] = []
    link = c.link
    pending = 0
    sent = 0
    while sent < writes or pending:
        if sent < writes and pending == 0:
            link.submit("kv", {"op": "put", "key": "bc", "value": sent})
            sent += 1
            pending = subscribers
        link.poll(0)
        for s, _ in poller.poll(5):
            while True:
                try:
                    _, payload = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                now_ms = time.time() * 1000
                u = codec.decode_update(payload, lc.cluster.cluster_id)
                if u.machine == "kv" and u.command and u.command.get("key") == "bc":
                    samples.append(max(0.0, now_ms - u.clock_ms))
                    pending -= 1
    for s in subs:
        s.close(0)
    ctx.term()
    return {"subscribers": subscribers, "writes": writes, **summarize(samples)}


def memory(lc: LocalCluster, commits: int, clients: int) -> dict:
    t = throughput(lc, commits, clients)
    rss = {nid: round(_rss_mb(lc.pid(nid) or 0), 1) for nid in lc.cluster.ids()}
    return {"commits": t["commits"], "rss_mb_per_node": rss, "max_rss_mb": max(rss.values()),
            "sustained_commits_per_s": round(t["commits_per_s"]), "seconds": t["seconds"]}


def catchup(lc: LocalCluster, c: Client, commits: int, clients: int) -> dict:
    ids = lc.cluster.ids()
    lead = c.wait_for_leader(10)
    follower = next(n for n in ids if n != lead)
    lc.stop(follower)
    throughput(lc, commits, clients)
    target = c.status(lead)["commit"]
    t0 = time.perf_counter()
    lc.start(follower)
    wait_until(lambda: (c.status(follower, timeout=0.3) or {}).get("applied", 0) >= target, 300,
          f"{follower} catching up")
    return {"node": follower, "behind_by_commits": commits,
            "seconds": round(time.perf_counter() - t0, 3), "target_index": target}


def run(workloads: set[str], nodes: int = 3, commits: int = 20_000, clients: int = 8,
        latency_writes: int = 1000, failover_trials: int = 20, subscribers: int = 50,
        memory_commits: int = 1_000_000, tmp_dir: Path | None = None,
        snapshot_interval: int = 10_000, unbatched_throughput: bool = False) -> dict:
    """``unbatched_throughput``: with ``throughput``, also measure it with the client
    library's batching off (``results["throughput_unbatched"]``, the like-for-like
    figure for etcd's one-Put-per-put clients)."""
    unknown = workloads - set(WORKLOADS)
    if unknown:
        raise ValueError(f"unknown workloads {sorted(unknown)}; choose from {WORKLOADS}")
    tmp = tempfile.TemporaryDirectory(prefix="arena-bench-") if tmp_dir is None else None
    base = Path(tmp.name) if tmp else tmp_dir
    assert base is not None
    lc = LocalCluster.create(base / "arena", nodes, timing=Timing(election_ms=(150.0, 300.0)),
                             snapshot_interval=snapshot_interval)
    results: dict[str, Any] = {"nodes": nodes, "durable": True}
    try:
        lc.start_all()
        with Client(lc.cluster, deadline=30.0) as c:
            c.wait_for_leader(15)
            if "latency" in workloads:
                _say("arena: latency")
                results["latency"] = latency(c, latency_writes)
                # like for like with PySyncObj: the writer inside the leader's process
                results["latency"]["embedded"] = embedded.run(base / "embedded", latency_writes)
            if "throughput" in workloads:
                _say("arena: throughput")
                results["throughput"] = throughput_runs(lc, commits, clients)
                if unbatched_throughput:
                    _say("arena: throughput, client batching off")
                    results["throughput_unbatched"] = throughput_runs(lc, commits, clients,
                                                                      batching=False)
            if "broadcast" in workloads:
                _say("arena: broadcast")
                results["broadcast"] = broadcast(lc, c, subscribers, 200)
            if "failover" in workloads:
                _say("arena: failover")
                results["failover"] = failover(lc, c, failover_trials)
            if "memory" in workloads:
                _say(f"arena: memory after {memory_commits} commits")
                results["memory"] = memory(lc, memory_commits, clients)
            if "catchup" in workloads:
                _say("arena: catch-up")
                results["catchup"] = catchup(lc, c, max(commits, 10_000), clients)
    finally:
        lc.kill_all()
        if tmp is not None:
            tmp.cleanup()
    return results


def cluster_of(lc: LocalCluster) -> ClusterFile:
    return lc.cluster
