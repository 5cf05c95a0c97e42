"""Snapshots on DiskStorage in the simulator: a follower that crashes at any step of
installing a snapshot from the leader comes back and converges, and under a long
run with snapshots the log stays bounded, in memory and in the WAL on disk.
Every assertion names its seed."""

from __future__ import annotations

from random import Random

import pytest

from nodes.raft.core import RaftConfig
from nodes.sim.cluster import Cluster
from nodes.sim.network import Faults
from nodes.sim.storage_hosts import DiskHost
from nodes.sim.workload import Workload
from nodes.storage import DiskStorage

INTERVAL = 10


def put(c: Cluster, key: str, value: object) -> None:
    c.write(key, value)


def settle(c: Cluster, seed: int, within_ms: float = 5000) -> int:
    """Commit a marker through the leader; wait until every node applied it."""
    index = c.settle(within_ms, marker=seed)
    assert index is not None, (
        f"seed={seed}: no leader, or the marker not applied everywhere, in {within_ms} ms")
    return index


def wal_bytes(host: DiskHost, nid: str) -> int:
    return sum(p.stat().st_size for p in (host.path(nid) / "wal").iterdir())


@pytest.mark.parametrize(
    "point",
    ["snapshot.write", "snapshot.fsync", "snapshot.rename", "snapshot.dirsync",
     "compact.delete", "save.done"],
)
def test_a_follower_that_crashes_at_any_step_of_a_snapshot_install_recovers_and_converges(
    point: str, closing: list[Cluster],
) -> None:
    """Reference: paper 7 with the storage's crash points: a crash before the
    snapshot file is renamed into place leaves the old snapshot and log (the
    install never happened: the leader sends it again); after it, the new one.
    Either way the restarted follower converges to the leader's state."""
    seed = 3
    host = DiskHost(Random(seed), segment_bytes=512)
    c = Cluster(3, seed, raft_config=RaftConfig(snapshot_chunk_bytes=64),
                snapshot_interval=INTERVAL, storage_host=host)
    closing.append(c)
    lead = c.wait_for_leader(3000)
    assert lead is not None
    follower = next(n for n in c.ids if n != lead)
    for k in range(15):  # the follower's own snapshot and segments, for compact.delete
        put(c, f"early{k}", k)
        c.run_for(5)
    c.run_for(100)
    assert c.nodes[follower].raft.log.offset_index > 0, f"seed={seed}"
    c.network.isolate(follower, set(c.ids))
    for k in range(50):
        put(c, f"key{k % 7}", k)
        c.run_for(4)
    c.run_for(100)
    assert c.nodes[lead].raft.log.offset_index > c.nodes[follower].raft.log.last_index
    node = c.nodes[follower]
    c.arm_crash(follower, point)
    c.network.heal()
    fired = c.run_until(c.now + 3000, stop=lambda: host.fired[point] > 0)
    assert fired and follower not in c.nodes, f"seed={seed}: no crash at {point}"
    assert node.saving is not None and node.saving.snapshot is not None, (
        f"seed={seed}: the crash at {point} did not interrupt the snapshot's install"
    )
    c.run_for(50)
    assert c.restart(follower), f"seed={seed}: {follower} could not reopen its directory"
    settle(c, seed)
    f = c.nodes[follower]
    assert f.sm.data == c.nodes[lead].sm.data, f"seed={seed}: the follower's state differs"
    assert f.raft.log.offset_index >= c.nodes[lead].raft.log.offset_index - INTERVAL


@pytest.mark.parametrize("seed", range(2))
def test_the_log_stays_bounded_in_memory_and_on_disk_under_a_long_run_with_snapshots(
    seed: int, closing: list[Cluster],
) -> None:
    """Reference: paper 7 ("the log grows ... without bound" unless compacted) and
    thesis 5.1: with a snapshot every ``INTERVAL`` entries, a long run under load
    (with a follower crashing and restarting) keeps every node's in-memory log and
    its WAL bytes on disk within a fixed bound, though far more is written."""
    segment = 1024
    host = DiskHost(Random(seed), segment_bytes=segment)
    c = Cluster(3, seed, faults=Faults(drop=0.02), snapshot_interval=INTERVAL,
                raft_config=RaftConfig(max_inflight=4), storage_host=host)
    closing.append(c)
    workload = Workload(c, Random(seed), clients=6, timeout_ms=400.0)
    rng = Random(seed)
    most_entries = most_wal = 0
    written = {nid: 0 for nid in c.ids}

    next_sample = 0.0

    def sample() -> None:
        nonlocal most_entries, most_wal, next_sample
        workload.step()
        if c.now < next_sample:
            return
        next_sample = c.now + 5.0
        for nid, node in c.nodes.items():
            most_entries = max(most_entries, len(node.raft.log.entries))
            most_wal = max(most_wal, wal_bytes(host, nid))

    for _ in range(10):
        c.run_for(rng.uniform(1000, 2000), sample)
        victim = rng.choice([n for n in c.ids if n != c.leader()])
        storage = c.storages[victim]
        assert isinstance(storage, DiskStorage)
        written[victim] += storage.bytes_written["wal"]
        c.crash(victim)
        c.run_for(rng.uniform(50, 400), sample)
        c.restart(victim)
    settle(c, seed)
    for nid in c.ids:
        storage = c.storages[nid]
        assert isinstance(storage, DiskStorage)
        written[nid] += storage.bytes_written["wal"]
    commit = max(n.raft.commit for n in c.nodes.values())
    assert commit > 40 * INTERVAL, f"seed={seed}: too little load ({commit} entries)"
    assert most_entries <= 3 * INTERVAL, f"seed={seed}: {most_entries} entries in memory"
    assert most_wal <= 3 * segment, f"seed={seed}: the WAL grew to {most_wal} bytes"
    assert min(written.values()) > 10 * most_wal, f"seed={seed}: {written} vs {most_wal}"
