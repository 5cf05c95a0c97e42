"""The simulator on durable storage (STYLE.md habit 4: "crash-restart that keeps
only what was fsynced"): whole seeded runs on DiskStorage with crashes inside
storage steps, torn WAL writes that recovery cuts, ``abandon()`` that writes
nothing, the seed's choice of storage and Raft parameters, and replay of a disk
seed. Every assertion names its seed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from random import Random

import pytest

from nodes.raft.messages import ClusterConfig, Entry, HardState
from nodes.sim.cluster import Cluster
from nodes.sim.node import encode_op
from nodes.sim.run import SeedPlan, SimParams, run_seed
from nodes.sim.storage_hosts import TORN_WRITE, DiskHost
from nodes.storage import DiskStorage

ROOT = Path(__file__).resolve().parents[2]
DISK_SEEDS = (4, 7, 8, 9, 12, 17)  # among them: torn writes, wipe, rejoin, transfers, storage faults


def test_whole_simulator_runs_on_disk_with_crash_points_pass() -> None:
    """Reference: STYLE.md habit 4 and paper Figure 2. A handful of seeds, every one
    on DiskStorage: the safety phase (network faults, crashes between and inside
    storage steps, torn writes, membership changes, transfers), then liveness,
    then the linearizability check -- all pass, and the crashes really happened."""
    died = []
    changes = 0
    events: set[str] = set()
    for seed in DISK_SEEDS:
        r = run_seed(seed, SimParams(disk=True))
        assert r.ok and r.disk, f"seed={seed}: {r.line()}"
        died += [line for line in r.faults if " died: " in line]
        changes += r.members_changed
        events |= {line.split()[1] for line in r.faults}
    assert len(died) >= 4, f"seeds={DISK_SEEDS}: only {died} crashed inside a storage step"
    assert any(TORN_WRITE in line for line in died), f"seeds={DISK_SEEDS}: no torn write: {died}"
    assert changes >= 5, f"seeds={DISK_SEEDS}: only {changes} membership changes"
    wanted = {"transfer", "retire", "wipe", "rejoin", "new", "arm-crash", "refused", "storage"}
    assert wanted <= events, f"seeds={DISK_SEEDS}: never {sorted(wanted - events)}"


def test_storage_faults_on_a_minority_lose_no_committed_entry_and_are_repaired() -> None:
    """Issue 11 (FAST'18, TigerBeetle's fault model): a node goes down and its disk
    loses an fsynced suffix, is wiped, or has a bit flipped. Every seed passes: no
    committed entry lost (leader completeness and state machine safety checked after
    every event), a linearizable history with every acknowledged write, and in the
    liveness phase every member repaired (not recovering) and applying."""
    kinds: set[str] = set()
    for seed in (7, 12, 15):  # without recovery, seed 15 loses a committed entry
        r = run_seed(seed, SimParams(disk=True))
        assert r.ok, f"seed={seed}: {r.line()}"
        storage = [line for line in r.faults if line.split()[1] == "storage"]
        assert storage, f"seed={seed}: no storage fault"
        kinds |= {line.split()[2] for line in storage}
    assert kinds == {"lose-suffix", "wipe", "flip"}, kinds


def test_a_disk_seed_replays_identically_whatever_its_directory_is_called() -> None:
    """Reference: STYLE.md habit 3. Two runs of one disk seed use two temporary
    directories with different names, yet fault log and outcome are the same."""
    seed = 7
    first = run_seed(seed, SimParams(disk=True, safety_ms=3000))
    second = run_seed(seed, SimParams(disk=True, safety_ms=3000))
    assert first.ok, f"seed={seed}: {first.line()}"
    assert (first.faults, first.line()) == (second.faults, second.line()), f"seed={seed}"


def test_the_seed_runs_about_half_on_disk_and_draws_one_entry_batches_and_one_message_windows() -> None:
    """Reference: STYLE.md habit 3, and the Figure 8 lesson (paper 5.4.2): one entry
    per AppendEntries and one in flight make old-term entries travel apart from
    a new leader's first entry, so the per-seed parameters include both."""
    plans = [SeedPlan.draw(seed, SimParams()) for seed in range(400)]
    on_disk = sum(p.on_disk for p in plans)
    assert 160 <= on_disk <= 240, f"{on_disk} of 400 seeds on disk"
    assert any(p.raft_config.max_batch_bytes == 1 for p in plans)
    assert any(p.raft_config.max_inflight == 1 for p in plans)
    assert any(p.raft_config.max_batch_bytes == 1 and p.raft_config.max_inflight == 1
               for p in plans)
    forced = SeedPlan.draw(5, SimParams(disk=True))
    assert forced.on_disk and forced.raft_config == plans[5].raft_config, (
        "forcing the storage must leave the seed's other choices alone"
    )


def test_the_command_line_disk_option_puts_every_seed_on_disk() -> None:
    """Reference: STYLE.md habit 12. ``python -m nodes.sim --seeds 2 --disk``."""
    done = subprocess.run(
        [sys.executable, "-m", "nodes.sim", "--seeds", "2", "--disk", "--duration", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[-1] == "2 seeds, 2 passed, 0 failed", done.stdout
    assert all(" disk " in line for line in lines if line.startswith("seed=")), done.stdout
    assert "simulated s per wall s" in lines[-2]


def test_a_torn_wal_write_is_cut_at_restart_and_the_node_catches_up() -> None:
    """Reference: the storage's recovery rule (a torn record at the very end of the
    log is a write the crash interrupted, never acknowledged): the simulator cuts
    the batch being written a few bytes short and kills the node before its
    fsync; the reopened storage cuts the torn record and the node rejoins."""
    seed = 4
    host = DiskHost(Random(seed), segment_bytes=4096)
    c = Cluster(3, seed, storage_host=host)
    try:
        lead = c.wait_for_leader(3000)
        assert lead is not None
        victim = next(n for n in c.ids if n != lead)
        c.arm_crash(victim, TORN_WRITE)
        for k in range(20):
            node = c.nodes[lead]
            node.raft.propose(encode_op({"kind": "write", "key": f"k{k}", "value": k}))
            node.handle_ready()
            c.run_for(3)
        assert host.fired[TORN_WRITE] == 1 and victim not in c.nodes, f"seed={seed}"
        assert host.torn_bytes_cut > 0, f"seed={seed}"
        assert c.restart(victim), f"seed={seed}"
        storage = c.storages[victim]
        assert isinstance(storage, DiskStorage)
        assert storage.fsyncs["wal.repair"] == 1, f"seed={seed}: no torn tail was cut"
        index = c.nodes[lead].raft.log.last_index
        assert c.run_until(c.now + 2000, stop=lambda: c.nodes[victim].last_applied >= index)
        assert c.nodes[victim].sm.data == c.nodes[lead].sm.data, f"seed={seed}"
    finally:
        c.close()


def test_abandon_releases_the_directory_without_writing_the_lazily_kept_commit(
    tmp_path: Path,
) -> None:
    """Reference: DiskStorage's docstring ("a commit index that moved since the last
    hard-state write is written" by close()). A crash must not do that write:
    abandon() lets go of the lock and descriptors and leaves the files as they are."""
    config = ClusterConfig(frozenset({"n1"}))
    path = tmp_path / "n1"
    storage = DiskStorage(path, "n1", "c", config, fsync=False)
    storage.save(HardState(1, "n1", 0), [Entry(1, 1, b"a"), Entry(2, 1, b"b")])
    storage.save(HardState(1, "n1", 2), [])  # only the commit moved: kept in memory
    before = (path / "hardstate").read_bytes()
    storage.abandon()
    storage.abandon()  # idempotent
    assert (path / "hardstate").read_bytes() == before
    again = DiskStorage(path, "n1", "c", fsync=False)  # the lock was released
    state = again.load()
    assert state.hard_state == HardState(1, "n1", 0) and len(state.entries) == 2
    again.save(HardState(1, "n1", 2), [])
    again.close()  # a clean stop does write it
    assert DiskStorage(path, "n1", "c").load().hard_state.commit == 2


@pytest.mark.parametrize(
    ("point", "skip"),
    [("wal.write", 2), ("wal.fsync", 2), ("wal.rollover", 0), ("snapshot.rename", 0),
     ("compact.delete", 0), ("save.done", 3)],
)
def test_a_node_crashed_inside_a_storage_step_restarts_from_its_directory(
    point: str, skip: int,
) -> None:
    """Reference: paper Figure 2 with the storage's crash points: whichever step of a
    save the crash interrupts, the node reopens its directory, passes the
    durability check (its term, vote and committed entries are there) and
    catches up with the leader."""
    seed = 11
    host = DiskHost(Random(seed), segment_bytes=512)
    c = Cluster(3, seed, storage_host=host, snapshot_interval=8)
    try:
        lead = c.wait_for_leader(3000)
        assert lead is not None
        victim = next(n for n in c.ids if n != lead)
        c.arm_crash(victim, point, skip=skip)
        for k in range(30):
            node = c.nodes[lead]
            node.raft.propose(encode_op({"kind": "write", "key": f"k{k % 4}", "value": k}))
            node.handle_ready()
            c.run_for(4)
        assert host.fired[point] == 1 and victim not in c.nodes, f"seed={seed}: {point}"
        checked = c.invariants.restarts_checked
        assert c.restart(victim), f"seed={seed}"
        assert c.invariants.restarts_checked == checked + 1
        index = c.nodes[lead].raft.log.last_index
        assert c.run_until(c.now + 2000, stop=lambda: c.nodes[victim].last_applied >= index)
        assert c.nodes[victim].sm.data == c.nodes[lead].sm.data, f"seed={seed}"
    finally:
        c.close()
