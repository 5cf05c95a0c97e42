"""Issue 11, item 1, on real processes: a follower whose disk was damaged (a flipped
byte in the middle of its WAL segment) or wiped (its directory moved away, as the
old error message advised) must not help elect a leader that lacks acknowledged
writes. It comes back recovering, stays out of elections until its peers have
repaired it, and no acknowledged write is lost."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from integration_helpers import leader_of, wait_for

from client.api import Client
from nodes.local import LocalCluster
from nodes.storage.wal import list_segments, record_offsets


def _flip_a_byte_mid_segment(data_dir: Path) -> None:
    segment = list_segments(data_dir / "wal")[-1].path
    offsets = record_offsets(segment)
    assert len(offsets) > 100, f"{segment} holds {len(offsets)} records"
    middle = offsets[len(offsets) // 2]
    data = bytearray(segment.read_bytes())
    data[middle + 12] ^= 0x5A  # inside the body: the checksum no longer matches
    segment.write_bytes(bytes(data))


def _nobody_leads(c: Client, among: list[str], seconds: float) -> None:
    """Observe ``among`` for ``seconds`` (many election timeouts): no leader, ever."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for nid in among:
            s = c.status(nid, timeout=0.3)
            assert s is None or s["role"] != "leader", f"{nid} was elected: {s}"


@pytest.mark.parametrize("damage", ["flipped byte", "wiped directory"])
def test_a_damaged_follower_elects_nobody_without_the_leader_and_loses_no_write(
    make_cluster: Callable[..., LocalCluster], client_for: Callable[..., Client], damage: str
) -> None:
    lc = make_cluster(3)
    c = client_for(lc)
    leader = wait_for(lambda: leader_of(c), 10, "a leader")
    a, b = [n for n in lc.cluster.ids() if n != leader]
    for i in range(20):
        c.put(f"k{i}", i)
    lc.pause(b)
    for i in range(20, 120):
        c.put(f"k{i}", i)  # acknowledged by the leader and a
    for nid in lc.cluster.ids():
        lc.kill(nid)

    a_dir = lc.cluster.data_dir(a)
    if damage == "flipped byte":
        _flip_a_byte_mid_segment(a_dir)
    else:  # what the old message said to do: move the directory away, start again
        shutil.move(a_dir, a_dir.with_name(f"{a}.damaged"))
    lc.start(a)
    lc.start(b)
    # before the fix: with a flipped byte a refused to start; on an empty directory
    # it voted for b, which won term 2 without the 100 writes
    wait_for(lambda: c.status(a, timeout=0.3) is not None, 10, f"{a} up")
    _nobody_leads(c, [a, b], seconds=3.0)
    assert (c.status(a) or {}).get("recovering") is True

    lc.start(leader)
    wait_for(lambda: leader_of(c), 10, "a leader once the old leader is back")
    wait_for(lambda: (c.status(a, timeout=0.3) or {}).get("recovering") is False, 10,
             f"{a} repaired by its peers")
    assert [c.get(f"k{i}") for i in range(120)] == list(range(120))
    c.put("after", "repair")
    commit = c.status(leader_of(c) or leader)["commit"]
    # the repaired node holds everything too: it applies up to the new write
    wait_for(lambda: c.status(a)["applied"] >= commit, 10, f"{a} applying up to {commit}")


def test_the_join_procedure_of_multihost_md_adds_a_voter(
    make_cluster: Callable[..., LocalCluster], client_for: Callable[..., Client]
) -> None:
    """docs/MULTIHOST.md section 6, step by step: add n4 to the file, start it with
    --join on an empty directory, ask the leader to add_node; it becomes a voter
    holding every write."""
    import dataclasses
    import subprocess
    import sys

    from nodes.clusterfile import NodeAddress, load
    from nodes.local import free_ports

    lc = make_cluster(3)
    c = client_for(lc)
    wait_for(lambda: leader_of(c), 10, "a leader")
    for i in range(10):
        c.put(f"j{i}", i)
    r, cl, p = (f"tcp://127.0.0.1:{port}" for port in free_ports(3))
    n4 = NodeAddress("n4", r, cl, p)
    cf = dataclasses.replace(lc.cluster, nodes=(*lc.cluster.nodes, n4))
    cf.write(lc.cluster_path)  # step 1: the new file (the running nodes keep theirs)
    cf = load(lc.cluster_path)
    log = open(lc.directory / "n4.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(  # step 2
        [sys.executable, "-m", "nodes", "node", "--id", "n4", "--cluster",
         str(lc.cluster_path), "--join"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    try:
        with Client(cf) as c4:
            c4.admin("add_node", {"id": "n4", "raft": r, "client": cl, "pub": p})  # step 3
            wait_for(lambda: "n4" in ((c4.status(leader_of(c4) or "n1") or {}).get("voters") or []),
                     15, "n4 promoted to voter")
            wait_for(lambda: (c4.status("n4") or {}).get("applied", 0)
                     >= c4.status(leader_of(c4) or "n1")["commit"], 10, "n4 caught up")
            assert [c4.get(f"j{i}") for i in range(10)] == list(range(10))
            assert (c4.status("n4") or {}).get("recovering") is False
    finally:
        proc.kill()
        proc.wait(10)
        log.close()
