"""One PySyncObj node for the ``arena bench --vs pysyncobj`` comparison, as a process.

    python -m nodes.bench.pysyncobj_node --self 127.0.0.1:P --partners 127.0.0.1:Q ... \\
        --control 127.0.0.1:C [--batch | --no-batch]

It runs a :class:`BenchObj` (a ``SyncObj`` subclass holding a replicated dict with
``@replicated`` ``set`` and ``incr``) configured as the comparison requires: election
timeout 150-300 ms (``raftMinTimeout=0.15``, ``raftMaxTimeout=0.30``), batching of
AppendEntries per ``--batch``/``--no-batch``, no dynamic membership change, and no
journal nor full-dump file, so the log and the snapshots stay in memory and nothing
is fsynced (PySyncObj's default, and how DESIGN.md quotes its numbers). PySyncObj's
own thread (``autoTick``) drives Raft; this module never calls into it except through
the thread-safe ``_applyCommand`` queue behind the replicated methods and read-only
accessors.

``appendEntriesPeriod`` (the heartbeat, default 0.1 s) has to be lowered:
``SyncObjConf.validate()`` asserts ``raftMinTimeout > 3 * appendEntriesPeriod``, so
with a 150 ms minimum it must be below 50 ms; we use 45 ms (``--heartbeat``). With
batching on, a proposal waits for the next heartbeat to be replicated, so this period
sets PySyncObj's batched latency. ``connectionRetryTime`` is lowered from 5 s to 0.5 s
so that a restarted node is reconnected quickly between failover trials; it plays no
part in the measured failover (the survivors stay connected to each other).

Control channel: a ZeroMQ REP socket bound on ``--control``; each request is a JSON
object ``{"op": NAME, ...}`` and each reply a JSON object with ``"ok"``:

``status``
    ``self``, ``pid``, ``batch``, ``is_leader``, ``leader`` (address or null), ``term``,
    ``commit_idx``, ``last_applied``, ``log_len`` (entries held), ``partners``, ``partners_connected``,
    ``has_quorum``, ``ready``, ``keys`` (size of the replicated dict), ``rss_kb``
    (VmRSS from /proc/self/status) and, when asked with ``"digest": true``, ``digest``
    (CRC32 of the dict's sorted items, to check that the replicas are identical).
``burst`` ``commits, clients, window, value_size, timeout_s, call_timeout_s``
    ``commits`` pipelined ``set`` calls with callbacks from ``clients`` logical
    clients, each keeping at most ``window`` calls in flight (null: all of its calls
    issued at once), the next call issued from the callback of the previous one. A
    call whose callback has not come after ``call_timeout_s`` is given up (PySyncObj
    can drop callbacks around leader changes) and the client goes on. Replies
    ``committed``, ``errors`` (failed callbacks, by FAIL_REASON in ``error_codes``),
    ``timeouts``, ``seconds`` (first call issued to last call finished),
    ``commits_per_s`` (``committed / seconds``), ``terms_elapsed`` (elections seen
    during the burst) and ``still_leader``; ``ok`` is false past ``timeout_s``.
``latency`` ``writes, warmup, value_size, timeout_s, deadline_s``
    ``warmup + writes`` synchronous ``set(..., sync=True)`` one at a time; replies
    ``samples_ms`` (the ``writes`` measured ones), ``errors`` and ``truncated`` (the
    series stopped at ``deadline_s``).
``write`` ``deadline_s, retry_interval_s, max_in_flight``
    Writes until one commits, for the failover measurement: a new attempt whenever one
    fails and every ``retry_interval_s`` while none has answered (at most
    ``max_in_flight`` outstanding). Replies ``t_commit`` (``time.monotonic()`` in the
    callback of the first committed write; CLOCK_MONOTONIC is system-wide on Linux,
    so the driver compares it with its own kill time), ``attempts``, ``errors``, or
    ``ok: false`` with ``error`` when the deadline passes.
``stop``
    Replies, then exits the process at once.

The node also exits by itself when its parent process goes away (it polls
``os.getppid()``), so a driver killed with SIGKILL leaves no stray node behind.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import zmq
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjException, replicated

__all__ = ["BenchObj", "make_conf", "main", "read_rss_kb"]

log = logging.getLogger("pysyncobj_node")

ELECTION_TIMEOUT = (0.15, 0.30)
DEFAULT_HEARTBEAT = 0.045
KEYSPACE = 1000


def make_conf(batch: bool, heartbeat: float = DEFAULT_HEARTBEAT) -> SyncObjConf:
    """The SyncObjConf every node of the comparison runs with."""
    return SyncObjConf(
        raftMinTimeout=ELECTION_TIMEOUT[0],
        raftMaxTimeout=ELECTION_TIMEOUT[1],
        appendEntriesPeriod=heartbeat,
        appendEntriesUseBatch=batch,
        dynamicMembershipChange=False,
        journalFile=None,
        fullDumpFile=None,
        connectionRetryTime=0.5,
    )


class BenchObj(SyncObj):
    """A replicated dict with two replicated commands."""

    def __init__(self, self_addr: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(self_addr, partners, conf)
        # Set after SyncObj.__init__ so that it is part of the replicated (snapshotted)
        # state; setdefault because PySyncObj's thread may already have applied a
        # command (a restarted node catching up) and created it in ``_store``.
        self.__dict__.setdefault("_data", {})

    def _store(self) -> dict[str, Any]:
        return self.__dict__.setdefault("_data", {})

    @replicated
    def set(self, key: str, value: Any) -> Any:
        self._store()[key] = value
        return value

    @replicated
    def incr(self, key: str, by: int = 1) -> int:
        store = self._store()
        store[key] = int(store.get(key, 0)) + by
        return store[key]

    def size(self) -> int:
        return len(self._store())

    def digest(self) -> str:
        """CRC32 of the replicated dict's sorted items, to compare replicas."""
        for _ in range(10):
            try:
                items = sorted(self._store().items())
            except RuntimeError:  # changed by PySyncObj's thread while copying
                continue
            return f"{zlib.crc32(repr(items).encode()):08x}"
        return "busy"


def read_rss_kb() -> int:
    """VmRSS of this process in kB (0 where /proc is not available)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Controller:
    """Answers the control requests; runs in the main thread, never in PySyncObj's."""

    def __init__(self, obj: BenchObj, self_addr: str, batch: bool) -> None:
        self.obj = obj
        self.self_addr = self_addr
        self.batch = batch
        self.stopping = False

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(self, f"op_{op}", None)
        if handler is None:
            return {"ok": False, "error": f"unknown op {op!r}"}
        try:
            return handler(req)
        except Exception as exc:  # a bad request must not kill the node
            log.exception("op %s failed", op)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    # -- status ---------------------------------------------------------------------

    def op_status(self, req: dict[str, Any]) -> dict[str, Any]:
        obj = self.obj
        partners = list(obj.otherNodes)
        leader = obj._getLeader()
        return {
            "ok": True,
            "self": self.self_addr,
            "pid": os.getpid(),
            "batch": self.batch,
            "is_leader": bool(obj._isLeader()),
            "leader": None if leader is None else str(leader.id),
            "term": obj.raftCurrentTerm,
            "commit_idx": obj.raftCommitIndex,
            "last_applied": obj.raftLastApplied,
            "log_len": obj._getRaftLogSize(),
            "partners": len(partners),
            "partners_connected": sum(1 for p in partners if obj.isNodeConnected(p)),
            "has_quorum": bool(obj.hasQuorum),
            "ready": bool(obj.isReady()),
            "keys": obj.size(),
            "digest": obj.digest() if req.get("digest") else None,
            "rss_kb": read_rss_kb(),
        }

    # -- throughput -----------------------------------------------------------------

    def op_burst(self, req: dict[str, Any]) -> dict[str, Any]:
        commits = int(req["commits"])
        clients = max(1, int(req.get("clients", 1)))
        window_raw = req.get("window")
        value = "x" * int(req.get("value_size", 16))
        timeout_s = float(req.get("timeout_s", 120.0))
        call_timeout_s = float(req.get("call_timeout_s", 5.0))
        if commits <= 0:
            return {"ok": True, "committed": 0, "errors": 0, "seconds": 0.0, "commits_per_s": 0.0}

        quota = [commits // clients + (1 if c < commits % clients else 0) for c in range(clients)]
        window = max(quota) if window_raw is None else max(1, int(window_raw))
        issued = [0] * clients
        in_flight = [0] * clients
        # call id -> (client, issue time); ids grow with time, so the oldest come first
        pending: dict[int, tuple[int, float]] = {}
        next_id = [0]
        lock = threading.Lock()
        done = threading.Event()
        counts = {"finished": 0, "committed": 0, "errors": 0, "timeouts": 0, "late": 0}
        codes: dict[int, int] = {}
        t_end = [0.0]
        obj = self.obj
        term_before = obj.raftCurrentTerm

        def take(c: int) -> tuple[int, int] | None:
            """Reserve client c's next call if quota and window allow (lock held)."""
            if issued[c] >= quota[c] or in_flight[c] >= window:
                return None
            issued[c] += 1
            in_flight[c] += 1
            next_id[0] += 1
            pending[next_id[0]] = (c, time.monotonic())
            return next_id[0], issued[c]

        def finish(c: int, outcome: str) -> tuple[int, int] | None:
            """Account for one finished call of client c and reserve its next (lock held)."""
            in_flight[c] -= 1
            counts["finished"] += 1
            counts[outcome] += 1
            if counts["finished"] == commits:
                t_end[0] = time.perf_counter()
                done.set()
            return take(c)

        def issue(c: int, call: tuple[int, int]) -> None:
            cid, seq = call
            obj.set(f"c{c}-{seq % KEYSPACE}", value, callback=functools.partial(on_result, cid))

        def on_result(cid: int, _res: Any, err: int) -> None:  # PySyncObj's thread
            with lock:
                entry = pending.pop(cid, None)
                if entry is None:  # already counted as timed out
                    counts["late"] += 1
                    return
                c = entry[0]
                if err == FAIL_REASON.SUCCESS:
                    nxt = finish(c, "committed")
                else:
                    codes[int(err)] = codes.get(int(err), 0) + 1
                    nxt = finish(c, "errors")
            if nxt is not None:
                issue(c, nxt)

        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        # Round-robin the first window of every client, so that they start together.
        for _ in range(window):
            for c in range(clients):
                with lock:
                    nxt = take(c)
                if nxt is not None:
                    issue(c, nxt)
        # A callback PySyncObj never calls (it happens around leader changes) would
        # stall a client for ever: like a real client, give up on a call after
        # call_timeout_s, count it as timed out, and go on with the next one.
        while not done.wait(0.05):
            now = time.monotonic()
            if now > deadline:
                break
            reissue: list[tuple[int, tuple[int, int]]] = []
            with lock:
                while pending:
                    cid, (c, t_issue) = next(iter(pending.items()))
                    if now - t_issue < call_timeout_s:
                        break
                    del pending[cid]
                    nxt = finish(c, "timeouts")
                    if nxt is not None:
                        reissue.append((c, nxt))
            for c, nxt in reissue:
                issue(c, nxt)
        finished = done.is_set()
        with lock:
            committed = counts["committed"]
            seconds = (t_end[0] if finished else time.perf_counter()) - t0
            result: dict[str, Any] = {
                "ok": finished,
                "committed": committed,
                "errors": counts["errors"],
                "error_codes": {str(k): v for k, v in sorted(codes.items())},
                "timeouts": counts["timeouts"],
                "late_callbacks": counts["late"],
                "seconds": seconds,
                "commits_per_s": committed / seconds if seconds > 0 else 0.0,
                "clients": clients,
                "window": None if window_raw is None else window,
                "terms_elapsed": obj.raftCurrentTerm - term_before,
                "still_leader": bool(obj._isLeader()),
            }
        if not finished:
            result["error"] = f"burst not finished after {timeout_s} s"
        return result

    # -- latency --------------------------------------------------------------------

    def op_latency(self, req: dict[str, Any]) -> dict[str, Any]:
        writes = int(req["writes"])
        warmup = int(req.get("warmup", 0))
        value = "x" * int(req.get("value_size", 16))
        timeout_s = float(req.get("timeout_s", 5.0))
        deadline = time.monotonic() + float(req.get("deadline_s", 300.0))
        samples: list[float] = []
        errors: list[str] = []
        truncated = False
        obj = self.obj
        for i in range(warmup + writes):
            if time.monotonic() > deadline:
                truncated = True
                break
            t0 = time.perf_counter()
            try:
                obj.set(f"lat-{i % KEYSPACE}", value, sync=True, timeout=timeout_s)
            except SyncObjException as exc:
                errors.append(str(exc.errorCode))
                continue
            dt_ms = (time.perf_counter() - t0) * 1000.0
            if i >= warmup:
                samples.append(dt_ms)
        return {
            "ok": True,
            "samples_ms": samples,
            "errors": len(errors),
            "error_codes": sorted(set(errors)),
            "truncated": truncated,
        }

    # -- one write, for failover ------------------------------------------------------

    def op_write(self, req: dict[str, Any]) -> dict[str, Any]:
        t_start = time.monotonic()
        deadline = t_start + float(req.get("deadline_s", 10.0))
        retry_interval = float(req.get("retry_interval_s", 0.05))
        max_in_flight = int(req.get("max_in_flight", 64))
        cond = threading.Condition()
        state: dict[str, Any] = {"t_commit": None, "in_flight": 0, "errors": 0, "codes": set()}
        attempts = 0
        obj = self.obj

        def on_result(_res: Any, err: int) -> None:  # PySyncObj's thread
            now = time.monotonic()
            with cond:
                state["in_flight"] -= 1
                if err == FAIL_REASON.SUCCESS:
                    if state["t_commit"] is None:
                        state["t_commit"] = now
                else:
                    state["errors"] += 1
                    state["codes"].add(int(err))
                cond.notify_all()

        last_issue = float("-inf")
        with cond:
            while state["t_commit"] is None:
                now = time.monotonic()
                if now >= deadline:
                    break
                idle = state["in_flight"] == 0
                if idle or (
                    now - last_issue >= retry_interval and state["in_flight"] < max_in_flight
                ):
                    attempts += 1
                    state["in_flight"] += 1
                    last_issue = now
                    cond.release()
                    try:
                        obj.set("failover", attempts, callback=on_result)
                    finally:
                        cond.acquire()
                    continue
                wait_s = deadline - now
                if state["in_flight"] < max_in_flight:
                    wait_s = min(wait_s, retry_interval - (now - last_issue))
                cond.wait(max(0.0005, wait_s))  # woken early by any callback
            t_commit = state["t_commit"]
            errors, codes = state["errors"], sorted(state["codes"])
        if t_commit is None:
            return {
                "ok": False,
                "error": f"no write committed within {deadline - t_start:.1f} s",
                "attempts": attempts,
                "errors": errors,
                "error_codes": codes,
            }
        return {
            "ok": True,
            "t_commit": t_commit,
            "t_start": t_start,
            "attempts": attempts,
            "errors": errors,
            "error_codes": codes,
        }

    def op_stop(self, req: dict[str, Any]) -> dict[str, Any]:
        self.stopping = True
        return {"ok": True}


def _watch_parent(ppid: int) -> None:
    while True:
        if os.getppid() != ppid:
            os._exit(3)
        time.sleep(0.5)


def serve(controller: Controller, control_addr: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.bind(f"tcp://{control_addr}")
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    try:
        while not controller.stopping:
            if not poller.poll(200):
                continue
            raw = sock.recv()
            try:
                req = json.loads(raw)
                if not isinstance(req, dict):
                    raise ValueError("request is not a JSON object")
            except ValueError as exc:
                sock.send_json({"ok": False, "error": f"bad request: {exc}"})
                continue
            sock.send_json(controller.handle(req))
    finally:
        sock.close()
        ctx.term()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m nodes.bench.pysyncobj_node", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--self", dest="self_addr", required=True, help="host:port of this node's Raft server"
    )
    p.add_argument("--partners", nargs="*", default=[], help="host:port of the other nodes")
    p.add_argument("--control", required=True, help="host:port for the control REP socket")
    p.add_argument(
        "--batch", action=argparse.BooleanOptionalAction, default=True, help="appendEntriesUseBatch"
    )
    p.add_argument(
        "--heartbeat", type=float, default=DEFAULT_HEARTBEAT, help="appendEntriesPeriod, s"
    )
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format=f"%(asctime)s {args.self_addr} %(name)s %(levelname)s %(message)s",
    )
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    obj = BenchObj(args.self_addr, list(args.partners), make_conf(args.batch, args.heartbeat))
    controller = Controller(obj, args.self_addr, args.batch)
    serve(controller, args.control)
    # Exit at once: the reply to "stop" has been flushed (LINGER) and nothing here is
    # durable, so there is nothing PySyncObj's thread would need to finish.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
