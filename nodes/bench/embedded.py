"""Latency with the writer inside the leader's process: Arena as a library.

PySyncObj is a library: its writer calls a replicated method in the leader's own
process, so a write is two network hops (leader -> follower -> leader) and, as the
comparison runs it, no fsync. Arena's ``latency`` workload times a separate client
process instead (four hops, fsync on a majority). This workload measures Arena the
way PySyncObj is measured, so the two can be compared like for like: three
processes, each a :class:`nodes.consensus.Consensus` node (mechanism ``raft``,
ZeroMQ between processes, ``DiskStorage`` in a temporary directory, no batching
window), and the leader's process awaiting ``propose`` one write at a time.

It runs twice: ``durable`` (every acknowledged write fsynced on a majority) and
``in_memory`` (fsync off: PySyncObj's own mode). The difference between the two is
the price of durability on this disk.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import sys
import time
from pathlib import Path
from typing import Any

from ..local import free_ports
from .stats import summarize

MODES = {"durable": True, "in_memory": False}


def _node(nid: str, addrs: dict[str, str], data_dir: str, fsync: bool, writes: int,
          warmup: int, out: Any, stop: Any) -> None:
    """One Consensus node process; the one that leads measures and reports."""
    from nodes.consensus import Consensus

    async def main() -> None:
        peers = {p: a for p, a in addrs.items() if p != nid}
        c = Consensus(nid, transport="zmq", address=addrs[nid], peers=peers,
                      data_dir=data_dir, fsync=fsync, batch_updates=False,
                      election_timeout=(0.15, 0.30))
        await c.start_async()
        try:
            await c.wait_for_leader(15)
            if c.is_leader():
                samples: list[float] = []
                failed = 0
                for i in range(warmup + writes):
                    t0 = time.perf_counter()
                    ok = await c.propose("lat", i)
                    dt = (time.perf_counter() - t0) * 1000
                    if not ok:
                        failed += 1
                    elif i >= warmup:
                        samples.append(dt)
                out.put({"leader": nid, "samples_ms": samples, "failed": failed})
            while not stop.is_set():
                await asyncio.sleep(0.02)
        finally:
            await c.stop()

    asyncio.run(main())


def measure(base: Path, fsync: bool, writes: int, nodes: int = 3,
            warmup: int = 100, timeout_s: float = 120.0) -> dict[str, Any]:
    """Start ``nodes`` processes, let the leader write ``writes`` times, stop them all."""
    ctx = mp.get_context("spawn")  # a fresh interpreter: no ZeroMQ context inherited
    ids = [f"e{k + 1}" for k in range(nodes)]
    addrs = {nid: f"tcp://127.0.0.1:{port}" for nid, port in zip(ids, free_ports(nodes), strict=True)}
    out = ctx.Queue()
    stop = ctx.Event()
    procs = [ctx.Process(target=_node, args=(nid, addrs, str(base / nid), fsync, writes, warmup,
                                             out, stop), daemon=True) for nid in ids]
    for p in procs:
        p.start()
    try:
        try:
            reply = out.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"no leader measured {writes} writes within {timeout_s:.0f} s "
                               f"(fsync={fsync})") from None
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
    summary: dict[str, Any] = summarize(reply["samples_ms"])
    summary["failed"] = reply["failed"]
    summary["fsync"] = fsync
    summary["samples_ms"] = [round(x, 3) for x in reply["samples_ms"]]
    return summary


def run(base: Path, writes: int) -> dict[str, Any]:
    results = {}
    for name, fsync in MODES.items():
        print(f"arena: latency, writer in the leader's process ({name})", file=sys.stderr,
              flush=True)
        results[name] = measure(base / name, fsync, writes)
    return results
