"""``arena chaos``: Jepsen-style testing on real processes.

Clients run compare-and-swap, put and read workloads on a few keys and record
a history (invoke, then ok, fail or unknown), while a nemesis kills, pauses,
partitions and restarts nodes. Alongside, every client writes keys of its own
exactly once. At the end the network is healed and every node brought back;
the register history is checked for linearizability with ``nodes.lincheck``,
and every acknowledged once-only write is read back. Every random choice
(the nemesis's and the clients') comes from ``--seed``.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from client.api import Client, NotLeaderError, Rejected, TimeoutError_, Unavailable

from .clusterfile import Timing
from .lincheck import Op, check
from .local import LocalCluster

NEMESES = ("kill", "pause", "partition", "restart")


@dataclass
class ChaosReport:
    seed: int
    duration_s: float
    nodes: int
    clients: int
    operations: int = 0
    ok: int = 0
    failed: int = 0
    unknown: int = 0
    acknowledged_writes: int = 0
    missing_writes: list[str] = field(default_factory=list)
    linearizable: bool = False
    lincheck_explanation: str = ""
    anomalies: int = 0
    faults: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.history: list[Op] = []
        self.acked_unique: dict[str, int] = {}

    def add(self, op: Op) -> None:
        with self.lock:
            self.history.append(op)


def _client_loop(lc: LocalCluster, name: str, rng: random.Random, keys: list[str],
                 stop: threading.Event, rec: _Recorder) -> None:
    c = Client(lc.cluster, client_id=f"chaos-{name}-{rng.randrange(1 << 30)}",
               request_timeout=0.3, deadline=2.0)
    seen: dict[str, object] = {}
    n = 0
    try:
        while not stop.is_set():
            n += 1
            key = rng.choice(keys)
            r = rng.random()
            t0 = time.monotonic()
            if r < 0.15:
                # a write of our own, exactly once: must survive whatever happens
                ukey = f"once-{name}-{n}"
                try:
                    c.put(ukey, n)
                    with rec.lock:
                        rec.acked_unique[ukey] = n
                except (TimeoutError_, Unavailable, NotLeaderError, Rejected):
                    pass
                continue
            if r < 0.5:
                kind, value, expected = "read", None, None
            elif r < 0.8:
                kind, value, expected = "write", f"{name}:{n}", None
            else:
                kind, value, expected = "cas", f"{name}:{n}", seen.get(key)
            status, succeeded = "ok", True
            try:
                if kind == "read":
                    value = c.get(key)
                    seen[key] = value
                elif kind == "write":
                    c.put(key, value)
                    seen[key] = value
                else:
                    succeeded = c.cas(key, expected, value)
                    if succeeded:
                        seen[key] = value
            except (TimeoutError_, Unavailable, NotLeaderError):
                status = "unknown"
            except Rejected:
                status = "fail"
            rec.add(Op(client=name, key=key, kind=kind, value=value, expected=expected,
                       invoke=t0, complete=time.monotonic() if status != "unknown" else None,
                       status=status, succeeded=succeeded))
    finally:
        c.close()


class ProcessNemesis:
    def __init__(self, lc: LocalCluster, rng: random.Random, kinds: tuple[str, ...],
                 admin: Client) -> None:
        self.lc = lc
        self.rng = rng
        self.kinds = kinds
        self.admin = admin
        self.log: list[str] = []
        self.t0 = time.monotonic()
        self.paused: set[str] = set()
        self.partitioned = False

    def say(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self.t0:6.2f}s {what}")

    def down(self) -> list[str]:
        return [n for n in self.lc.cluster.ids() if not self.lc.alive(n)]

    def step(self) -> None:
        ids = self.lc.cluster.ids()
        f = (len(ids) - 1) // 2
        faulty = len(self.down()) + len(self.paused) + (1 if self.partitioned else 0)
        kind = self.rng.choice(self.kinds)
        if faulty >= f or self.rng.random() < 0.35:
            self.recover_one()
            return
        up = [n for n in ids if self.lc.alive(n) and n not in self.paused]
        victim = self.rng.choice(up)
        if kind == "kill":
            self.lc.kill(victim)
            self.say(f"kill -9 {victim}")
        elif kind == "restart":
            self.lc.stop(victim)
            self.lc.start(victim)
            self.say(f"restart {victim} (SIGTERM, start)")
        elif kind == "pause":
            self.lc.pause(victim)
            self.paused.add(victim)
            self.say(f"pause {victim}")
        elif kind == "partition" and not self.partitioned:
            self._admin_all("partition", {"nodes": [victim]})
            self.partitioned = True
            self.say(f"partition {victim} away")

    def recover_one(self) -> None:
        if self.paused:
            n = self.paused.pop()
            self.lc.resume(n)
            self.say(f"resume {n}")
        elif self.down():
            n = self.down()[0]
            self.lc.start(n)
            self.say(f"start {n}")
        elif self.partitioned:
            self._admin_all("heal", {})
            self.partitioned = False
            self.say("heal")

    def recover_all(self) -> None:
        while self.paused or self.down() or self.partitioned:
            self.recover_one()
        self._admin_all("heal", {})

    def _admin_all(self, action: str, args: dict) -> None:
        for nid in self.lc.cluster.ids():
            if self.lc.alive(nid) and nid not in self.paused:
                try:
                    self.admin.admin(action, args, node=nid)
                except Exception as e:  # a node mid-restart may not answer
                    self.say(f"  {action} at {nid}: {e}")


def run_chaos(duration: float = 30.0, clients: int = 4, nodes: int = 3,
              nemeses: tuple[str, ...] = NEMESES, seed: int | None = None,
              directory: Path | None = None, every: tuple[float, float] = (0.5, 2.0),
              progress: bool = False) -> ChaosReport:
    seed = seed if seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    for n in nemeses:
        if n not in NEMESES:
            raise ValueError(f"unknown nemesis {n!r}; choose from {', '.join(NEMESES)}")
    report = ChaosReport(seed, duration, nodes, clients)
    tmp = tempfile.TemporaryDirectory(prefix="arena-chaos-") if directory is None else None
    base = Path(tmp.name) if tmp else directory
    assert base is not None
    lc = LocalCluster.create(base / "cluster", nodes, timing=Timing(election_ms=(150.0, 300.0)))
    rec = _Recorder()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    admin = Client(lc.cluster, deadline=1.0)
    try:
        lc.start_all()
        admin.wait_for_leader(15)
        keys = ["r0", "r1", "r2"]
        for i in range(clients):
            t = threading.Thread(target=_client_loop, daemon=True,
                                 args=(lc, f"c{i + 1}", random.Random(rng.random()), keys, stop, rec))
            t.start()
            threads.append(t)
        nemesis = ProcessNemesis(lc, random.Random(rng.random()), tuple(nemeses), admin)
        end = time.monotonic() + duration
        while time.monotonic() < end:
            time.sleep(min(rng.uniform(*every), max(0.0, end - time.monotonic())))
            if time.monotonic() < end:
                said = len(nemesis.log)
                nemesis.step()
                if progress:
                    for line in nemesis.log[said:]:
                        print(line, flush=True)
        nemesis.recover_all()
        stop.set()
        for t in threads:
            t.join(timeout=10)
        report.faults = nemesis.log
        admin.wait_for_leader(15)
        verify = Client(lc.cluster, deadline=10.0)
        try:
            for key, value in sorted(rec.acked_unique.items()):
                if verify.get(key) != value:
                    report.missing_writes.append(key)
        finally:
            verify.close()
        history = list(rec.history)
        verdict = check(history)
        report.operations = len(history) + len(rec.acked_unique)
        report.ok = sum(1 for o in history if o.status == "ok")
        report.failed = sum(1 for o in history if o.status == "fail")
        report.unknown = sum(1 for o in history if o.status == "unknown")
        report.acknowledged_writes = len(rec.acked_unique) + sum(
            1 for o in history if o.status == "ok" and o.kind in ("write", "cas"))
        report.linearizable = verdict.ok
        report.lincheck_explanation = verdict.explanation[:2000]
        report.anomalies = len(report.missing_writes) + (0 if verdict.ok else 1)
        return report
    finally:
        stop.set()
        admin.close()
        lc.kill_all()
        if tmp is not None:
            tmp.cleanup()
