"""One simulated run per seed: a safety phase under faults, then a liveness phase
with the network healed, then the linearizability check of the client history.

Everything random comes from the seed, so ``run_seed(seed)`` replays exactly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from random import Random

from nodes.lincheck import check
from nodes.raft.core import RaftConfig

from .cluster import Cluster
from .invariants import InvariantViolation
from .network import Faults
from .node import encode_op
from .workload import Workload


@dataclass(slots=True)
class SimParams:
    sizes: tuple[int, ...] = (3, 5)
    safety_ms: float = 8000.0
    liveness_bound_ms: float = 5000.0
    clients: int = 4
    snapshot_interval: int = 40
    nemesis_every_ms: tuple[float, float] = (150.0, 900.0)


@dataclass(slots=True)
class SimResult:
    seed: int
    ok: bool
    size: int = 0
    error: str = ""
    simulated_ms: float = 0.0
    wall_s: float = 0.0
    ops: int = 0
    acked_writes: int = 0
    messages: int = 0
    elections: int = 0
    faults: list[str] = field(default_factory=list)

    def line(self) -> str:
        status = "ok" if self.ok else f"FAILED: {self.error}"
        return (
            f"seed={self.seed} nodes={self.size} sim={self.simulated_ms / 1000:.1f}s "
            f"ops={self.ops} msgs={self.messages} terms={self.elections} {status}"
        )


class Nemesis:
    """Crashes, restarts, partitions (symmetric and one-way) and heals, at random."""

    def __init__(self, cluster: Cluster, rng: Random, every_ms: tuple[float, float]) -> None:
        self.cluster = cluster
        self.rng = rng
        self.every_ms = every_ms
        self.next_at = rng.uniform(*every_ms)
        self.log: list[str] = []

    def step(self) -> None:
        c = self.cluster
        if c.now < self.next_at:
            return
        self.next_at = c.now + self.rng.uniform(*self.every_ms)
        ids = list(c.ids)
        down = [n for n in ids if n not in c.nodes]
        up = [n for n in ids if n in c.nodes]
        choice = self.rng.random()
        if choice < 0.2 and up:
            victim = c.leader() if self.rng.random() < 0.5 and c.leader() else self.rng.choice(up)
            c.crash(victim)
            self._say(f"crash {victim}")
        elif choice < 0.45 and down:
            n = self.rng.choice(down)
            c.restart(n)
            self._say(f"restart {n}")
        elif choice < 0.6:
            side = set(self.rng.sample(ids, self.rng.randint(1, len(ids) // 2)))
            c.network.heal()
            c.network.partition(side, set(ids) - side)
            self._say(f"partition {sorted(side)}")
        elif choice < 0.7:
            a, b = self.rng.sample(ids, 2)
            c.network.partition({a}, {b}, one_way=True)
            self._say(f"one-way {a}->{b}")
        elif choice < 0.8 and c.leader():
            lead = c.leader()
            assert lead is not None
            c.network.heal()
            c.network.isolate(lead, set(ids))
            self._say(f"isolate leader {lead}")
        else:
            c.network.heal()
            self._say("heal")

    def _say(self, what: str) -> None:
        self.log.append(f"{self.cluster.now:.0f}ms {what}")


def run_seed(seed: int, params: SimParams | None = None) -> SimResult:
    p = params or SimParams()
    rng = Random(seed)
    size = rng.choice(p.sizes)
    faults = Faults(drop=rng.choice([0.0, 0.02, 0.08]), duplicate=rng.choice([0.0, 0.03]),
                    slow=rng.choice([0.0, 0.05]))
    # small batches and windows make old-term entries travel apart from the new
    # leader's no-op, which is what the Figure 8 scenario needs
    raft_config = RaftConfig(
        max_batch_bytes=rng.choice([40, 200, 1 << 20]),
        max_inflight=rng.choice([1, 4, 64]),
        snapshot_chunk_bytes=rng.choice([64, 4096]),
    )
    cluster = Cluster(size, seed=rng.randrange(1 << 30), faults=faults,
                      snapshot_interval=p.snapshot_interval, raft_config=raft_config)
    workload = Workload(cluster, Random(rng.random()), clients=p.clients + rng.randrange(4),
                        timeout_ms=rng.choice([150.0, 400.0, 1000.0]))
    nemesis = Nemesis(cluster, Random(rng.random()), p.nemesis_every_ms)
    result = SimResult(seed=seed, ok=False, size=size)
    t0 = time.perf_counter()
    try:
        # safety phase: faults everywhere, invariants checked after every event
        def during_faults() -> None:
            nemesis.step()
            workload.step()

        cluster.run_for(p.safety_ms, during_faults)
        # liveness phase: heal, restart everyone, stop faults
        cluster.network.heal()
        cluster.network.faults = Faults()
        for nid in cluster.ids:
            cluster.restart(nid)
        start = cluster.now
        leader = cluster.wait_for_leader(p.liveness_bound_ms)
        if leader is None:
            raise InvariantViolation(
                f"liveness: no leader within {p.liveness_bound_ms:.0f} ms after healing"
            )
        index = cluster.nodes[leader].raft.propose(encode_op({"kind": "write", "key": "_live", "value": seed}))
        cluster.nodes[leader].handle_ready()
        remaining = p.liveness_bound_ms - (cluster.now - start)
        committed = cluster.run_until(
            cluster.now + remaining, workload.step,
            stop=lambda: all(n.last_applied >= index for n in cluster.nodes.values()),
        )
        if not committed:
            raise InvariantViolation(
                f"liveness: a proposal at index {index} was not applied everywhere within "
                f"{p.liveness_bound_ms:.0f} ms after healing"
            )
        workload.active = False
        cluster.run_until(cluster.now + 2 * workload.timeout_ms, workload.step, stop=workload.idle)
        verdict = check(workload.history)
        if not verdict.ok:
            raise InvariantViolation(f"linearizability ({verdict.key}): {verdict.explanation}")
        result.ok = True
    except InvariantViolation as e:
        result.error = str(e)
    except Exception as e:  # a crash of the core is a failure of the run, with its seed
        result.error = f"{type(e).__name__}: {e}"
    result.wall_s = time.perf_counter() - t0
    result.simulated_ms = cluster.now
    result.ops = len(workload.history)
    result.acked_writes = len(workload.acked_writes)
    result.messages = cluster.network.sent
    result.elections = len(cluster.invariants.leader_of_term)
    result.faults = nemesis.log
    return result
