"""Flood: a victim's latency and the cluster's elections while one client floods the leader.

``arena bench flood`` (or ``python -m nodes.bench flood``) starts a fresh cluster of
3 node processes per case, a victim client that does a put then a get every 10 ms
on the leader, and, in a separate process, one flooder that sends the leader
requests as fast as the socket takes them (``window`` in flight).

The flooder follows the leader, as any client does, so an election does not end the
flood. The cases:

- ``none``: no flood (the victim's unloaded baseline);
- ``pipelined``: puts under one client id;
- ``new-ids``: puts, a new client id per request (a per-client-id limit never
  sees the same id twice);
- ``rate-limited``: ``pipelined`` against a cluster with ``rate_limit = 200``.

Per case: the victim's operations, p50/p99/max latency, and the elections (the
number of term changes seen on any node during the case); the flooder's answers
by outcome. The target (issue 11): 0 elections and a victim p99 within 5x its
unloaded p99.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zmq

from .. import codec, security
from ..clusterfile import Timing, load
from ..local import LocalCluster
from .stats import percentile

CASES = ("none", "pipelined", "new-ids", "rate-limited")
VICTIM_PERIOD_S = 0.010
FLOOD_WINDOW = 2_000
RATE_LIMIT = 200.0


@dataclass(slots=True)
class CaseResult:
    case: str
    victim_ops: int
    victim_p50_ms: float
    victim_p99_ms: float
    victim_max_ms: float
    victim_errors: int
    elections: int
    flood_sent: int = 0
    flood_answers: dict[str, int] = field(default_factory=dict)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the flooder (its own process) ---------------------------------------------------


def flood(cluster_path: str, node: str, mode: str, seconds: float,
          window: int = FLOOD_WINDOW) -> dict[str, Any]:
    """Send put requests to ``node`` for ``seconds``, ``window`` unanswered at most,
    following the leader when told of another; ``mode`` "new-ids" uses a new client
    id per request. Returns the answers counted by outcome."""
    cf = load(cluster_path)
    ctx = zmq.Context()
    keys = security.client_keys(cf)

    def connect(nid: str) -> zmq.Socket:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, window)
        if keys is not None:
            security.make_client(s, keys, cf.security.server_public_keys[nid])
        s.connect(cf.node(nid).client)
        return s

    sock = connect(node)
    answers: dict[str, int] = {}
    sent = 0
    inflight = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            while inflight < window:
                sent += 1
                client_id = f"flood-{sent}" if mode == "new-ids" else "flood"
                seq = 1 if mode == "new-ids" else sent
                frame = codec.encode_request(cf.cluster_id, codec.Request(
                    sent, client_id, "submit",
                    {"machine": "kv", "seq": seq,
                     "cmd": {"op": "put", "key": f"flood{sent % 64}", "value": sent}}))
                try:
                    sock.send(frame, zmq.NOBLOCK)
                except zmq.Again:
                    sent -= 1
                    break
                inflight += 1
            if sock.poll(1):
                while True:
                    try:
                        data = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    inflight -= 1
                    try:
                        resp = codec.decode_response(data, cf.cluster_id)
                    except codec.ProtocolError:
                        answers["undecodable"] = answers.get("undecodable", 0) + 1
                        continue
                    outcome = "ok" if resp.ok else (resp.error.code if resp.error else "error")
                    answers[outcome] = answers.get(outcome, 0) + 1
                    hint = resp.error.leader_id if resp.error else None
                    if outcome == "not_leader" and hint and hint != node and hint in cf.ids():
                        # follow the new leader, as a real client (or a real flooder) does
                        node = hint
                        sock.close(0)
                        sock = connect(node)
                        answers["followed_leader"] = answers.get("followed_leader", 0) + 1
                        inflight = 0
                        break
            elif inflight >= window:
                inflight = max(0, inflight - 1)  # an answer dropped by the node: move on
    finally:
        sock.close(0)
        ctx.term()
    return {"sent": sent, "answers": answers}


# --- the victim and the cases ---------------------------------------------------------


def _terms(c: Any, lc: LocalCluster) -> dict[str, int]:
    out = {}
    for nid in lc.cluster.ids():
        s = c.status(nid, timeout=0.5)
        if s is not None:
            out[nid] = int(s["term"])
    return out


def run_case(case: str, seconds: float, directory: Path) -> CaseResult:
    from client.api import Client, Rejected, TimeoutError_, Unavailable

    rate = RATE_LIMIT if case == "rate-limited" else 0.0
    lc = LocalCluster.create(directory / case, 3, timing=Timing(election_ms=(150.0, 300.0)),
                             rate_limit=rate, rate_burst=int(rate) or 200)
    proc: subprocess.Popen | None = None
    try:
        lc.start_all()
        with Client(lc.cluster) as victim:
            lead = victim.wait_for_leader(15)
            victim.put("victim", 0)  # opens the session, warms the path
            terms_before = _terms(victim, lc)
            if case != "none":
                proc = subprocess.Popen(
                    [sys.executable, "-m", "nodes.bench.flood", "--worker", case,
                     "--cluster", str(lc.cluster_path), "--node", lead,
                     "--seconds", f"{seconds + 0.5:g}"],
                    stdout=subprocess.PIPE, text=True)
                time.sleep(0.5)  # the flood is under way before the victim's clock starts
            latencies: list[float] = []
            errors = 0
            deadline = time.monotonic() + seconds
            next_op = time.monotonic()
            i = 0
            while time.monotonic() < deadline:
                i += 1
                for op in ("put", "get"):
                    t = time.perf_counter()
                    try:
                        if op == "put":
                            victim.put("victim", i)
                        else:
                            victim.get("victim")
                        latencies.append(time.perf_counter() - t)
                    except (Rejected, TimeoutError_, Unavailable):
                        errors += 1
                next_op += VICTIM_PERIOD_S
                pause = next_op - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    next_op = time.monotonic()
            flood_out: dict[str, Any] = {"sent": 0, "answers": {}}
            if proc is not None:
                out, _ = proc.communicate(timeout=30)
                flood_out = json.loads(out.strip().splitlines()[-1])
            terms_after = _terms(victim, lc)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        lc.kill_all()
    start_term = max(terms_before.values(), default=0)
    elections = max(terms_after.values(), default=start_term) - start_term
    ms = sorted(x * 1000 for x in latencies) or [float("nan")]
    return CaseResult(case, len(latencies), round(percentile(ms, 50), 2),
                      round(percentile(ms, 99), 2), round(max(ms), 2), errors, elections,
                      flood_out["sent"], flood_out["answers"])


def run_cases(cases: list[str], seconds: float) -> list[CaseResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="arena-flood-") as tmp:
        for case in cases:
            _say(f"flood: case {case} ({seconds:g} s)")
            results.append(run_case(case, seconds, Path(tmp)))
    return results


def verdict(results: list[CaseResult]) -> dict[str, Any]:
    """Issue 11's target: 0 elections, and victim p99 within 5x the unloaded p99."""
    base = next((r.victim_p99_ms for r in results if r.case == "none"), None)
    return {r.case: {"elections_ok": r.elections == 0,
                     "p99_ratio": round(r.victim_p99_ms / base, 2) if base else None,
                     "p99_ok": (r.victim_p99_ms <= 5 * base) if base else None}
            for r in results}


def render(results: list[CaseResult], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    v = verdict(results)
    t = Table(title=f"arena bench flood (3 nodes, victim put+get every 10 ms, {seconds:g} s)")
    for col in ("flood", "victim ops", "p50 ms", "p99 ms", "max ms", "p99 / unloaded",
                "elections", "flood answers"):
        t.add_column(col)
    for r in results:
        ratio = v[r.case]["p99_ratio"]
        answers = ", ".join(f"{k} {n}" for k, n in sorted(r.flood_answers.items()))
        t.add_row(r.case, str(r.victim_ops), f"{r.victim_p50_ms:g}", f"{r.victim_p99_ms:g}",
                  f"{r.victim_max_ms:g}", "" if ratio is None else f"{ratio:g}x",
                  str(r.elections), answers or "-")
    Console().print(t)


def main_report(cases: list[str], seconds: float, as_json: bool) -> int:
    results = run_cases(cases, seconds)
    if as_json:
        print(json.dumps({"seconds": seconds, "cases": [asdict(r) for r in results],
                          "verdict": verdict(results)}, indent=2))
    else:
        render(results, seconds)
    return 0


# --- python -m nodes.bench flood ------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--seconds", type=float, default=5.0, help="victim run per case")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown flood case(s) {unknown}; choose from {', '.join(CASES)}")
    return main_report(cases, args.seconds, args.json)


def _worker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m nodes.bench.flood --worker")
    p.add_argument("--worker", required=True, choices=CASES[1:])
    p.add_argument("--cluster", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--seconds", type=float, required=True)
    a = p.parse_args(argv)
    print(json.dumps(flood(a.cluster, a.node, "new-ids" if a.worker == "new-ids" else "one-id",
                           a.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
