"""One simulated run per seed: a safety phase under faults (``nemesis.py``), then
a liveness phase with the network healed, then the linearizability check of the
client history.

Everything random comes from the seed, so ``run_seed(seed)`` replays exactly:
the cluster size, the fault rates, the Raft parameters, and whether the nodes
keep their state in memory or on ``DiskStorage`` (about half the seeds; a
temporary directory whose name plays no part)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from random import Random

from nodes.lincheck import check
from nodes.raft.core import RaftConfig
from nodes.raft.errors import NotLeader, TransferInProgress

from .cluster import Cluster
from .invariants import InvariantViolation
from .nemesis import Nemesis
from .network import Faults
from .node import encode_op
from .storage_hosts import DiskHost
from .workload import Workload

__all__ = ["Nemesis", "SeedPlan", "SimParams", "SimResult", "run_seed"]


@dataclass(slots=True)
class SimParams:
    sizes: tuple[int, ...] = (3, 5)
    safety_ms: float = 8000.0
    liveness_bound_ms: float = 5000.0
    clients: int = 4
    snapshot_interval: int = 40
    nemesis_every_ms: tuple[float, float] = (150.0, 900.0)
    disk: bool | None = None  # None: the seed decides (about half the seeds run on disk)
    storage_faults: bool = True  # disk runs: lost suffixes, wiped directories, flipped bits
    membership: bool = True  # membership changes and leadership transfers in the mix


@dataclass(slots=True)
class SimResult:
    seed: int
    ok: bool
    size: int = 0
    disk: bool = False
    error: str = ""
    simulated_ms: float = 0.0
    wall_s: float = 0.0
    ops: int = 0
    acked_writes: int = 0
    messages: int = 0
    elections: int = 0
    storage_crashes: int = 0  # crashes inside a storage step (disk runs)
    storage_faults: int = 0  # lost suffixes, wiped directories, flipped bits (disk runs)
    members_changed: int = 0  # membership changes proposed
    faults: list[str] = field(default_factory=list)

    def line(self) -> str:
        status = "ok" if self.ok else f"FAILED: {self.error}"
        return (
            f"seed={self.seed} nodes={self.size} {'disk' if self.disk else 'memory'} "
            f"sim={self.simulated_ms / 1000:.1f}s ops={self.ops} msgs={self.messages} "
            f"terms={self.elections} changes={self.members_changed} "
            f"storage-crashes={self.storage_crashes} storage-faults={self.storage_faults} {status}"
        )


@dataclass(frozen=True, slots=True)
class SeedPlan:
    """What a seed decides before the run starts (and the seeds for the rest)."""

    size: int
    faults: Faults
    raft_config: RaftConfig
    on_disk: bool
    segment_bytes: int
    host_seed: float
    cluster_seed: int
    clients: int
    timeout_ms: float
    workload_seed: float
    nemesis_seed: float

    @classmethod
    def draw(cls, seed: int, p: SimParams) -> SeedPlan:
        rng = Random(seed)
        size = rng.choice(p.sizes)
        faults = Faults(drop=rng.choice([0.0, 0.02, 0.08]), duplicate=rng.choice([0.0, 0.03]),
                        slow=rng.choice([0.0, 0.05]))
        # small batches and windows make old-term entries travel apart from the new
        # leader's no-op, which is what the Figure 8 scenario needs: one entry per
        # AppendEntries and one message in flight catch such bugs far more often
        raft_config = RaftConfig(
            max_batch_bytes=rng.choice([1, 40, 200, 1 << 20]),
            max_inflight=rng.choice([1, 4, 64]),
            snapshot_chunk_bytes=rng.choice([64, 4096]),
            # half the seeds run the node server's setting; no draw, so seeds replay
            lazy_commit_notify=seed % 2 == 1,
        )
        on_disk = rng.random() < 0.5  # drawn even when forced: the rest stays the same
        return cls(
            size=size,
            faults=faults,
            raft_config=raft_config,
            on_disk=on_disk if p.disk is None else p.disk,
            segment_bytes=rng.choice([512, 4096, 1 << 16]),
            host_seed=rng.random(),
            cluster_seed=rng.randrange(1 << 30),
            clients=p.clients + rng.randrange(4),
            timeout_ms=rng.choice([150.0, 400.0, 1000.0]),
            workload_seed=rng.random(),
            nemesis_seed=rng.random(),
        )


def run_seed(seed: int, params: SimParams | None = None) -> SimResult:
    p = params or SimParams()
    plan = SeedPlan.draw(seed, p)
    host = DiskHost(Random(plan.host_seed), segment_bytes=plan.segment_bytes) if plan.on_disk else None
    cluster = Cluster(plan.size, seed=plan.cluster_seed, faults=plan.faults,
                      snapshot_interval=p.snapshot_interval, raft_config=plan.raft_config,
                      storage_host=host)
    workload = Workload(cluster, Random(plan.workload_seed), clients=plan.clients,
                        timeout_ms=plan.timeout_ms)
    nemesis = Nemesis(cluster, Random(plan.nemesis_seed), p.nemesis_every_ms,
                      membership=p.membership, storage_faults=p.storage_faults)
    result = SimResult(seed=seed, ok=False, size=plan.size, disk=plan.on_disk)
    t0 = time.perf_counter()
    try:
        # safety phase: faults everywhere, invariants checked after every event
        def during_faults() -> None:
            nemesis.step()
            workload.step()

        # in slices, so that faults and clients go on even when every node is down
        # (no tick, no message: nothing else would wake them)
        end = cluster.now + p.safety_ms
        while cluster.now < end:
            cluster.run_until(min(cluster.now + 20.0, end), during_faults)
            during_faults()
        _liveness(cluster, workload, nemesis, p, seed)
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
    finally:
        cluster.close()
    result.wall_s = time.perf_counter() - t0
    result.simulated_ms = cluster.now
    result.ops = len(workload.history)
    result.acked_writes = len(workload.acked_writes)
    result.messages = cluster.network.sent
    result.elections = len(cluster.invariants.leader_of_term)
    result.faults = nemesis.log
    result.members_changed = nemesis.counts.get("change", 0)
    result.storage_faults = nemesis.counts.get("storage", 0)
    if host is not None:
        result.storage_crashes = sum(host.fired.values())
    return result


def _liveness(cluster: Cluster, workload: Workload, nemesis: Nemesis, p: SimParams,
              seed: int) -> None:
    """Heal, restart every server that was not retired, stop faults: a leader must
    come up and a new proposal reach every member of its configuration."""
    cluster.network.heal()
    cluster.network.faults = Faults()
    for nid in cluster.ids:
        cluster.host.disarm(nid)
    for nid in cluster.ids:
        if nid not in nemesis.retired:
            cluster.restart(nid)
    start = cluster.now
    deadline = start + p.liveness_bound_ms
    while True:  # a leadership transfer may still be under way: ask again shortly
        leader = cluster.wait_for_leader(deadline - cluster.now)
        if leader is None:
            raise InvariantViolation(
                f"liveness: no leader within {p.liveness_bound_ms:.0f} ms after healing"
            )
        node = cluster.nodes[leader]
        try:
            index = node.raft.propose(encode_op({"kind": "write", "key": "_live", "value": seed}))
            break
        except (NotLeader, TransferInProgress) as e:
            if cluster.now >= deadline:
                raise InvariantViolation(
                    f"liveness: {leader} refused every proposal for {p.liveness_bound_ms:.0f} "
                    f"ms after healing ({e})"
                ) from None
            cluster.run_for(5, workload.step)
    node.handle_ready()
    members = node.raft.config.members()
    if members & nemesis.retired:
        raise InvariantViolation(
            f"retired servers {sorted(members & nemesis.retired)} are members of "
            f"{leader}'s configuration {sorted(members)}"
        )
    remaining = p.liveness_bound_ms - (cluster.now - start)

    def applied_everywhere() -> bool:
        # ...and every member whose storage was damaged has been repaired by now
        return all(
            nid in cluster.nodes and cluster.nodes[nid].last_applied >= index
            and not cluster.nodes[nid].raft.recovering
            for nid in members
        )

    if not cluster.run_until(cluster.now + remaining, workload.step, stop=applied_everywhere):
        behind = sorted(
            nid for nid in members
            if nid not in cluster.nodes or cluster.nodes[nid].last_applied < index
        )
        unrepaired = sorted(
            nid for nid in members if nid in cluster.nodes and cluster.nodes[nid].raft.recovering
        )
        raise InvariantViolation(
            f"liveness: a proposal at index {index} was not applied by {behind} or its "
            f"storage not repaired on {unrepaired} (members {sorted(members)}) within "
            f"{p.liveness_bound_ms:.0f} ms after healing"
        )
