"""Node hosts on the shared write-ahead log (``nodes.storage.shared.SharedWal``):
a crash of the whole node (the objects dropped, the directory reopened) reloads
every group as it acknowledged it, and one turn of many groups costs one fsync."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.host.cluster import HostCluster
from nodes.host.host import HostOptions
from nodes.raft.ready import Role
from nodes.storage.shared import SharedWal

IDS = ["n1", "n2", "n3"]


class Crash(Exception):
    pass


def durable_cluster(
    tmp_path: Path, groups: int, lead: str | None = None, **wal_options: int
) -> HostCluster:
    hooks: dict[str, str | None] = {nid: None for nid in IDS}

    def factory(nid: str) -> SharedWal:
        def hook(point: str) -> None:
            if hooks[nid] == point:
                hooks[nid] = None
                raise Crash(f"{nid} crashed at {point}")

        return SharedWal(tmp_path / nid, fsync=False, node_id=nid, cluster_id="t", crash_hook=hook,
                         **wal_options)  # type: ignore[arg-type]

    c = HostCluster(IDS, HostOptions(quiesce_ticks=0), seed=1, wal_factory=factory)
    c.crash_at = hooks  # type: ignore[attr-defined]
    for gid in range(1, groups + 1):
        c.create(gid, IDS, lead=lead or IDS[gid % 3])
    for _ in range(100):
        c.tick()
        c.stabilize()
        if all(c.leader(gid) for gid in range(1, groups + 1)):
            break
    assert all(c.leader(gid) for gid in range(1, groups + 1)), "groups on SharedWal never elected"
    return c


def state(c: HostCluster, nid: str) -> dict[int, tuple[int, str | None, list[tuple[int, int, bytes]]]]:
    out = {}
    for gid, g in c.hosts[nid].groups.items():
        r = g.raft
        out[gid] = (r.term, r.vote, [(e.index, e.term, e.data) for e in r.log.entries])
    return out


def test_a_crashed_host_reloads_every_group_as_it_acknowledged_it(tmp_path: Path) -> None:
    c = durable_cluster(tmp_path, groups=6)
    for k in range(3):
        for gid in range(1, 7):
            c.propose(gid, b"g%d-%d" % (gid, k))
        c.stabilize()
    before = state(c, "n1")
    assert sum(len(log) for _, _, log in before.values()) >= 6 * 3
    c.kill("n1")
    c.restart("n1")
    after = state(c, "n1")
    assert sorted(after) == list(range(1, 7))
    for gid, (term, vote, log) in before.items():
        t2, v2, log2 = after[gid]
        assert (t2, v2) == (term, vote), f"g{gid}: term/vote {term}/{vote} reloaded as {t2}/{v2}"
        assert log2[: len(log)] == log, f"g{gid}: log {log} reloaded as {log2}"
        assert not c.hosts["n1"].groups[gid].raft.recovering, f"g{gid} reopened as damaged"
    # and it works on: every group commits a write proposed after the restart on every node
    for _ in range(60):
        c.tick()
        c.stabilize()
    for gid in range(1, 7):
        c.propose(gid, b"after")
        c.stabilize()
        c.tick(times=2)
        c.stabilize()
        for nid in IDS:
            r = c.hosts[nid].groups[gid].raft
            assert r.log.entries[-1].data == b"after" and r.commit == r.log.last_index, (nid, gid)


def test_a_crash_inside_the_sync_loses_only_what_that_turn_had_not_acknowledged(
    tmp_path: Path,
) -> None:
    c = durable_cluster(tmp_path, groups=4, lead="n1")
    c.stabilize()
    before = state(c, "n1")
    host = c.hosts["n1"]
    for gid in range(1, 5):
        host.propose(gid, b"lost-%d" % gid)
    c.crash_at["n1"] = "wal.fsync"  # type: ignore[attr-defined]
    with pytest.raises(Crash):
        host.turn()  # the batches of this turn never leave: nobody acknowledged them
    c.kill("n1")
    c.restart("n1")
    after = state(c, "n1")
    for gid, (term, vote, log) in before.items():
        assert after[gid][:2] == (term, vote)
        assert after[gid][2][: len(log)] == log, f"g{gid} lost an acknowledged entry"


def test_one_turn_of_many_groups_is_one_fsync(tmp_path: Path) -> None:
    groups = 40
    c = durable_cluster(tmp_path, groups=groups, lead="n1")
    c.stabilize()
    host = c.hosts["n1"]
    assert all(host.groups[gid].raft.role is Role.LEADER for gid in range(1, groups + 1))
    wal = c.wals["n1"]
    assert isinstance(wal, SharedWal)
    last = {gid: host.groups[gid].storage.last_index for gid in range(1, groups + 1)}
    for gid in range(1, groups + 1):
        host.propose(gid, b"x")
    syncs_before, all_before = wal.fsyncs["wal"], wal.fsync_count
    turn = host.turn()
    assert turn.synced
    assert wal.fsyncs["wal"] - syncs_before == 1, wal.fsyncs
    assert wal.fsync_count - all_before == 1, f"more than the WAL's fsync: {wal.fsyncs}"
    for gid in range(1, groups + 1):
        assert host.groups[gid].storage.last_index == last[gid] + 1, f"g{gid} not written"


def test_the_node_host_process_with_a_data_dir_reopens_its_groups(tmp_path: Path) -> None:
    """``python -m nodes.host.shell --data-dir``: the groups a node created are hosted
    again by the next process on that directory (in-process here: sockets closed)."""
    import argparse

    from nodes.host.shell import BenchNode
    from nodes.local import free_ports

    ports = free_ports(4)
    args = argparse.Namespace(
        id="n1", ids="n1,n2,n3", peers=",".join(f"tcp://127.0.0.1:{p}" for p in ports[:3]),
        control=f"tcp://127.0.0.1:{ports[3]}", groups=5, place="spread", tick_ms=10.0, seed=0,
        data_dir=str(tmp_path / "n1"),
    )

    def start() -> BenchNode:
        return BenchNode(args)

    def stop(node: BenchNode) -> None:
        node.storage.close()  # type: ignore[attr-defined]
        node.control.close(0)
        node.shell.close()

    node = start()
    try:
        assert isinstance(node.storage, SharedWal)
        for gid in range(5):
            node.host.create_group(gid, ["n1", "n2", "n3"])
        node.host.turn()
    finally:
        stop(node)
    node = start()
    try:
        assert sorted(node.host.groups) == list(range(5))
    finally:
        stop(node)


def test_a_host_hands_a_group_s_leadership_to_another_node(tmp_path: Path) -> None:
    c = durable_cluster(tmp_path, groups=2, lead="n1")
    c.stabilize()
    assert c.leader(1) == "n1"
    c.hosts["n1"].transfer_leadership(1, "n3")
    c._turns("n1")
    c.stabilize()
    assert c.leader(1) == "n3"
    assert c.leader(2) == "n1", "the other group moved too"


def test_a_busy_group_without_a_snapshot_interval_keeps_the_wal_bounded(tmp_path: Path) -> None:
    """The WAL names the groups pinning its oldest segment (too many live entries to
    copy forward); the host snapshots them, so the segments stop piling up."""
    c = durable_cluster(tmp_path, groups=2, lead="n1", segment_bytes=512, max_segments=2,
                        rewrite_entries=0)
    for k in range(150):
        c.propose(1, b"busy-%03d" % k)
        c.stabilize()
        if k % 10 == 9:  # heartbeats: followers learn the commit index (lazily notified)
            c.tick(times=6)
            c.stabilize()
    for nid in IDS:
        wal = c.wals[nid]
        assert isinstance(wal, SharedWal)
        assert len(wal.segments) <= 4, f"{nid}: {len(wal.segments)} segments kept"
        assert c.hosts[nid].groups[1].storage.snapshot() is not None, nid
    c.kill("n2")
    c.restart("n2")
    r = c.hosts["n2"].groups[1].raft
    assert r.log.last_index >= 150 and r.log.offset_index > 0
