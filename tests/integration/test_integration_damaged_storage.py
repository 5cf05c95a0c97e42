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
