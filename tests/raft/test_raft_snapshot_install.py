"""InstallSnapshot (paper section 7) to a follower the leader's log has left
behind: sent in chunks, resent on loss, restarted after the follower crashes
mid-way, and ending with the follower in the leader's state. Run on the seeded
simulator, in memory and on DiskStorage; every assertion names its seed."""

from __future__ import annotations

from random import Random

import pytest

from nodes.raft.core import RaftConfig
from nodes.raft.messages import InstallSnapshot, Message
from nodes.sim.cluster import Cluster
from nodes.sim.storage_hosts import DiskHost

CHUNK = 32
INTERVAL = 10


@pytest.fixture(params=["memory", "disk"])
def storage(request: pytest.FixtureRequest) -> str:
    return request.param


def make_cluster(seed: int, storage: str) -> Cluster:
    host = DiskHost(Random(seed), segment_bytes=1024) if storage == "disk" else None
    return Cluster(3, seed, raft_config=RaftConfig(snapshot_chunk_bytes=CHUNK),
                   snapshot_interval=INTERVAL, storage_host=host)


def put(c: Cluster, key: str, value: object) -> None:
    c.write(key, value)


def record_snapshot_chunks(c: Cluster, to: str) -> list[InstallSnapshot]:
    """Every InstallSnapshot the leader sends to ``to`` (before the network drops any)."""
    sent: list[InstallSnapshot] = []
    send = c.network.send

    def recording(now: float, m: Message) -> None:
        if isinstance(m, InstallSnapshot) and m.recipient == to:
            sent.append(m)
        send(now, m)

    c.network.send = recording  # type: ignore[method-assign]
    return sent


def leave_follower_behind(c: Cluster, seed: int) -> tuple[str, str]:
    """Elect, cut one follower off, then write until the leader's snapshot covers far
    more than the follower's log (so only a snapshot can bring it back)."""
    lead = c.wait_for_leader(3000)
    assert lead is not None, f"seed={seed}: no leader"
    follower = next(n for n in c.ids if n != lead)
    for k in range(12):  # the follower takes a snapshot of its own first
        put(c, f"early{k}", k)
        c.run_for(5)
    c.run_for(100)
    c.network.isolate(follower, set(c.ids))
    for k in range(60):
        put(c, f"key{k % 20}", f"value-{k}-" + "x" * (k % 9))
        c.run_for(4)
    c.run_for(100)
    behind = c.nodes[follower].raft.log.last_index
    assert c.nodes[lead].raft.log.offset_index > behind + INTERVAL, (
        f"seed={seed}: the leader did not compact past the follower"
    )
    return lead, follower


def settle(c: Cluster, seed: int, within_ms: float = 5000) -> int:
    """Commit a marker through the leader; wait until every node applied it."""
    index = c.settle(within_ms, marker=seed)
    assert index is not None, (
        f"seed={seed}: no leader, or the marker not applied everywhere, in {within_ms} ms")
    return index


def assert_same_state(c: Cluster, lead: str, follower: str, seed: int) -> None:
    f, leader = c.nodes[follower], c.nodes[lead]
    assert f.sm.data == leader.sm.data, f"seed={seed}: the follower's state differs"
    assert f.last_applied == leader.last_applied, f"seed={seed}"
    assert f.raft.log.offset_index > INTERVAL, f"seed={seed}: it never installed a snapshot"


@pytest.mark.parametrize("seed", range(2))
def test_a_far_behind_follower_receives_the_snapshot_in_chunks_and_ends_in_the_leaders_state(
    seed: int, storage: str, closing: list[Cluster],
) -> None:
    """Reference: paper 7. "the leader must occasionally send snapshots to followers
    that lag behind ... split into chunks for transmission", each at its byte
    offset, the last one marked done; the follower "discards its entire log" (it
    holds nothing past the snapshot) and resets its state machine from it."""
    c = make_cluster(seed, storage)
    closing.append(c)
    lead, follower = leave_follower_behind(c, seed)
    chunks = record_snapshot_chunks(c, follower)
    c.network.heal()
    settle(c, seed)
    assert len(chunks) >= 3, f"seed={seed}: {len(chunks)} chunks for a multi-chunk snapshot"
    # (the leader may first finish an older snapshot it began while the follower was
    # cut off; the newest one is what brings the follower up to date)
    meta = max((m.meta for m in chunks), key=lambda meta: meta.index)
    one = [m for m in chunks if m.meta == meta]
    offsets = sorted({m.offset for m in one})
    assert offsets == list(range(0, offsets[-1] + 1, CHUNK)), f"seed={seed}: {offsets}"
    assert all(len(m.data) <= CHUNK for m in one), f"seed={seed}"
    assert any(m.done for m in one) and all(m.done == (m.offset == offsets[-1]) for m in one)
    snap = c.storages[follower].snapshot()
    assert snap is not None and snap.meta.index >= meta.index, f"seed={seed}"
    assert_same_state(c, lead, follower, seed)


@pytest.mark.parametrize("seed", range(2))
def test_a_snapshot_install_interrupted_by_the_followers_crash_starts_again_and_converges(
    seed: int, storage: str, closing: list[Cluster],
) -> None:
    """Reference: paper 7 (InstallSnapshot). Chunks received before a crash live only
    in memory: the restarted follower answers the next chunk with offset 0 and the
    leader sends the snapshot again from the start, to the same end state."""
    c = make_cluster(seed, storage)
    closing.append(c)
    lead, follower = leave_follower_behind(c, seed)
    chunks = record_snapshot_chunks(c, follower)
    c.network.heal()
    # a chunk at offset 2 * CHUNK means the follower acknowledged two chunks
    got_two = c.run_until(c.now + 2000, stop=lambda: any(m.offset >= 2 * CHUNK for m in chunks))
    assert got_two, f"seed={seed}: the transfer did not get going"
    assert not any(m.done for m in chunks), f"seed={seed}: the snapshot was too small"
    c.crash(follower)
    before = len(chunks)
    c.run_for(60)
    c.restart(follower)
    settle(c, seed)
    interrupted = chunks[before - 1].meta
    again = [(m.meta.index, m.offset) for m in chunks[before:]]
    assert any(index >= interrupted.index and offset == 0 for index, offset in again), (
        f"seed={seed}: after the crash the transfer did not start again: {again}"
    )
    assert_same_state(c, lead, follower, seed)


@pytest.mark.parametrize("seed", range(2))
def test_lost_snapshot_chunks_are_resent_until_the_install_completes(
    seed: int, storage: str, closing: list[Cluster],
) -> None:
    """Reference: paper 7 and 5.3 ("the leader retries ... indefinitely"): with half
    of the chunks lost on the way, the leader resends the outstanding chunk (its
    heartbeat doubles as the resend) and the install still completes."""
    c = make_cluster(seed, storage)
    closing.append(c)
    lead, follower = leave_follower_behind(c, seed)
    lossy = Random(seed)
    deliver = c.network.send

    def lose_half(now: float, m: Message) -> None:
        if isinstance(m, InstallSnapshot) and lossy.random() < 0.5:
            return
        deliver(now, m)

    c.network.send = lose_half  # type: ignore[method-assign]
    chunks_sent = record_snapshot_chunks(c, follower)  # before the loss
    c.network.heal()
    settle(c, seed, within_ms=10_000)
    offsets = [m.offset for m in chunks_sent]
    assert len(offsets) > len(set(offsets)), f"seed={seed}: no chunk was resent: {offsets}"
    assert_same_state(c, lead, follower, seed)
