"""Elections on the seeded whole-cluster simulator (virtual clock, 10 ms ticks,
150-300 ms election timeouts, 50 ms heartbeats, pre-vote and check-quorum on).
Every assertion names its seed: replay with the same ``Cluster(size, seed)``."""

from __future__ import annotations

from collections import Counter
from random import Random

import pytest

from nodes.raft.core import RaftConfig
from nodes.raft.messages import AppendEntries, Message, RequestVote, RequestVoteResponse
from nodes.raft.ready import Role
from nodes.sim.cluster import Cluster

CFG = RaftConfig()
TICK_MS = 10.0
HEARTBEAT_MS = CFG.heartbeat_ticks * TICK_MS
ELECTION_MAX_MS = CFG.election_ticks_max * TICK_MS


def record(c: Cluster) -> list[Message]:
    """Every message any node hands to the network, in order."""
    sent: list[Message] = []
    send = c.network.send

    def recording_send(now: float, m: Message) -> None:
        sent.append(m)
        send(now, m)

    c.network.send = recording_send  # type: ignore[method-assign]
    return sent


def kind(m: Message) -> str:
    name = type(m).__name__
    if getattr(m, "pre_vote", False):
        return "Pre" + name
    if isinstance(m, AppendEntries) and not m.entries:
        return "Heartbeat"
    return name


def agreed_leader(c: Cluster, among: set[str]) -> str | None:
    """A leader in ``among`` that every node of ``among`` follows, in one term."""
    nodes = [c.nodes[n] for n in among if n in c.nodes]
    leads = [n.id for n in nodes if n.raft.role is Role.LEADER]
    if len(leads) != 1:
        return None
    term = c.nodes[leads[0]].raft.term
    if all(n.raft.leader_id == leads[0] and n.raft.term == term for n in nodes):
        return leads[0]
    return None


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("seed", range(6))
def test_an_initial_election_elects_one_leader_everyone_follows(size: int, seed: int) -> None:
    """Reference: paper 5.2. Within a bound of simulated time (one maximum election
    timeout plus a few round trips, with margin for a split vote) there is exactly
    one leader, and every node knows it."""
    c = Cluster(size, seed)
    bound = 3 * ELECTION_MAX_MS
    ok = c.run_until(bound, stop=lambda: agreed_leader(c, set(c.ids)) is not None)
    assert ok, f"seed={seed} size={size}: no agreed leader within {bound} ms"
    lead = agreed_leader(c, set(c.ids))
    assert c.leaders() == [lead], f"seed={seed}"
    assert c.nodes[lead].raft.term <= 2, f"seed={seed}: {c.nodes[lead].raft.term} terms needed"


@pytest.mark.parametrize("seed", range(4))
def test_a_new_leader_is_elected_after_the_leader_is_cut_off(seed: int) -> None:
    """Reference: paper 5.2 and thesis 6.2: the others elect a new leader of a later
    term; once healed, the old leader follows it."""
    c = Cluster(5, seed)
    old = c.wait_for_leader(1000)
    assert old is not None, f"seed={seed}"
    old_term = c.nodes[old].raft.term
    c.network.isolate(old, set(c.ids))
    cut_at = c.now
    rest = set(c.ids) - {old}
    bound = 4 * ELECTION_MAX_MS
    ok = c.run_until(c.now + bound, stop=lambda: agreed_leader(c, rest) is not None)
    assert ok, f"seed={seed}: no new leader within {bound} ms of cutting off {old}"
    new = agreed_leader(c, rest)
    assert new != old and c.nodes[new].raft.term > old_term, f"seed={seed}"
    # thesis 6.2: the old leader notices within two check-quorum windows
    step_down_by = cut_at + 2 * CFG.election_ticks_min * TICK_MS + TICK_MS
    assert c.run_until(step_down_by, stop=lambda: c.nodes[old].raft.role is not Role.LEADER), (
        f"seed={seed}: the cut-off leader {old} still leads at {c.now} ms")
    c.network.heal()
    c.run_for(3 * HEARTBEAT_MS)
    assert agreed_leader(c, set(c.ids)) == new, f"seed={seed}: the old leader did not rejoin"


@pytest.mark.parametrize("seed", range(3))
def test_many_elections_with_random_disconnects_keep_one_leader_per_term(seed: int) -> None:
    """Reference: paper 5.2 (Election Safety: at most one leader per term) and
    liveness: whenever a majority (4 of 7) is connected, it agrees on a leader within
    a bound; when it is not, nobody leads for long (thesis 6.2). MIT 6.824's
    "multiple elections" test, on a virtual clock."""
    rng = Random(seed)
    c = Cluster(7, seed)
    leaders_seen: dict[int, set[str]] = {}

    def watch() -> None:
        for nid in c.leaders():
            leaders_seen.setdefault(c.nodes[nid].raft.term, set()).add(nid)

    assert c.wait_for_leader(1000), f"seed={seed}"
    forced = 0
    for rnd in range(12):
        lead = c.leader()
        c.network.heal()
        down = set(rng.sample(c.ids, rng.randint(0, 4)))
        if rnd % 2 == 0 and lead is not None and len(down) < 3:
            down.add(lead)  # make sure leaders change hands
            forced += 1
        for nid in down:
            c.network.isolate(nid, set(c.ids))
        up = set(c.ids) - down
        if len(up) >= 4:
            bound = 6 * ELECTION_MAX_MS
            ok = c.run_until(c.now + bound, watch,
                             stop=lambda up=up: agreed_leader(c, up) is not None)
            assert ok, f"seed={seed} round={rnd}: {sorted(up)} connected, no leader in {bound} ms"
            c.run_for(2 * HEARTBEAT_MS, watch)
        else:
            c.run_for(3 * ELECTION_MAX_MS, watch)
            assert c.leaders() == [], (
                f"seed={seed} round={rnd}: only {sorted(up)} connected, yet {c.leaders()} lead"
            )
    twice = {t: ls for t, ls in leaders_seen.items() if len(ls) > 1}
    assert not twice, f"seed={seed}: two leaders in one term: {twice}"
    assert len(leaders_seen) > forced, f"seed={seed}: only {sorted(leaders_seen)} terms had leaders"


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_election_costs_four_messages_per_peer(size: int, seed: int) -> None:
    """Reference: paper 5.2 and thesis 9.6: one uncontested election with pre-vote is
    PreVote, PreVoteResponse, RequestVote, RequestVoteResponse per peer, i.e.
    4 x (n - 1) messages; the no-op then costs one AppendEntries and one response per
    peer before the leader commits it (2 x (n - 1)), and the commit index reaches
    the followers in at most one heartbeat each. Seeds with a single campaigner."""
    c = Cluster(size, seed)
    sent = record(c)
    lead = c.wait_for_leader(1000)
    assert lead is not None, f"seed={seed}"
    c.run_until(c.now + 100, stop=lambda: c.nodes[lead].raft.commit >= 1)
    c.run_for(5)  # what is in flight lands (delays are at most 2 ms); no heartbeat yet
    counts = Counter(kind(m) for m in sent)
    campaigners = {m.sender for m in sent if isinstance(m, RequestVote)}
    peers = size - 1
    assert campaigners == {lead}, f"seed={seed}: {campaigners} campaigned"
    assert counts["PreRequestVote"] == counts["PreRequestVoteResponse"] == peers, (
        f"seed={seed}: {counts}")
    assert counts["RequestVote"] == counts["RequestVoteResponse"] == peers, (
        f"seed={seed}: {counts}")
    assert counts["AppendEntries"] == peers, f"seed={seed}: {counts}"
    assert counts["AppendEntriesResponse"] == peers + counts["Heartbeat"], f"seed={seed}: {counts}"
    assert counts["Heartbeat"] <= peers and len(sent) <= 7 * peers, f"seed={seed}: {counts}"
    assert all(isinstance(m, RequestVote | RequestVoteResponse | AppendEntries)
               or kind(m) == "AppendEntriesResponse" for m in sent)


@pytest.mark.parametrize("size", [3, 5])
def test_an_idle_leader_sends_one_heartbeat_per_peer_per_heartbeat_interval(size: int) -> None:
    """Reference: paper 5.2 ("leaders send periodic heartbeats ... to all followers"):
    over 1 simulated second an idle cluster exchanges about peers x (1000 ms /
    heartbeat interval) heartbeats, each answered once, and nothing else."""
    seed = 3
    c = Cluster(size, seed)
    assert c.wait_for_leader(1000), f"seed={seed}"
    c.run_for(500)  # let the no-op commit reach everyone
    sent = record(c)
    c.run_for(1000)
    counts = Counter(kind(m) for m in sent)
    peers = size - 1
    beats = int(1000 / HEARTBEAT_MS)
    assert set(counts) == {"Heartbeat", "AppendEntriesResponse"}, f"seed={seed}: {counts}"
    # (the answers to the last round may still be in flight when the second ends)
    assert 0 <= counts["Heartbeat"] - counts["AppendEntriesResponse"] <= peers, (
        f"seed={seed}: {counts}")
    assert peers * (beats - 1) <= counts["Heartbeat"] <= peers * (beats + 1), (
        f"seed={seed}: {counts}, expected about {peers * beats} heartbeats")
