"""Seeded random runs of three node hosts with several groups: batches dropped and
reordered, whole nodes killed (unsynced writes lost) and restarted, proposals
everywhere. Checked: one leader per group and term, the same entry at each
index of a group on every node that applied it, and, once the network heals,
every group elects a leader and commits again (quiescence, frozen follower
timers and the node-failure wake-up must not strand a group)."""

from __future__ import annotations

from random import Random

import pytest

from nodes.host.cluster import HostCluster
from nodes.host.host import HostOptions
from nodes.raft.ready import Role

IDS = ["n1", "n2", "n3"]
GROUPS = 4


def run(seed: int, steps: int = 400) -> None:
    rng = Random(seed)
    c = HostCluster(IDS, HostOptions(quiesce_ticks=3, node_timeout_ticks=20), seed=seed)
    for gid in range(1, GROUPS + 1):
        c.create(gid, IDS, lead=IDS[gid % 3])
    leaders: dict[tuple[int, int], str] = {}
    applied: dict[tuple[int, int], tuple[int, bytes]] = {}

    def check() -> None:
        for nid, h in c.hosts.items():
            for gid, g in h.groups.items():
                r = g.raft
                if r.role is Role.LEADER:
                    other = leaders.setdefault((gid, r.term), nid)
                    assert other == nid, (
                        f"seed {seed}: g{gid} term {r.term} led by {other} and {nid}"
                    )
                for e in r.log.entries:
                    if e.index <= r.commit:
                        got = applied.setdefault((gid, e.index), (e.term, e.data))
                        assert got == (e.term, e.data), (
                            f"seed {seed}: g{gid} index {e.index} committed as {got} and "
                            f"{(e.term, e.data)} on {nid}"
                        )

    down: str | None = None
    for step in range(steps):
        x = rng.random()
        if x < 0.4:
            c.tick()
        elif x < 0.75:
            rng.shuffle(c.queue)
            c.queue = [b for b in c.queue if rng.random() > 0.15]
            c.deliver()
        elif x < 0.9:
            gid = rng.randint(1, GROUPS)
            lead = c.leader(gid)
            if lead is not None:
                c.hosts[lead].propose(gid, b"s%d-%d" % (seed, step))
                c._turns(lead)
        elif x < 0.95 and down is None:
            down = rng.choice(IDS)
            c.kill(down)
        elif down is not None:
            c.restart(down)
            down = None
        check()
    if down is not None:
        c.restart(down)
    # heal: everything delivered, time runs; every group must elect and commit again
    for _ in range(300):
        c.tick()
        c.stabilize()
        if all(c.leader(gid) for gid in range(1, GROUPS + 1)):
            break
    check()
    for gid in range(1, GROUPS + 1):
        lead = c.leader(gid)
        assert lead is not None, f"seed {seed}: g{gid} has no leader after healing\n" + "\n".join(
            c.log[-40:]
        )
        c.hosts[lead].propose(gid, b"final")
        c._turns(lead)
    for _ in range(20):
        c.tick()
        c.stabilize()
    check()
    for gid in range(1, GROUPS + 1):
        for nid, h in c.hosts.items():
            r = h.groups[gid].raft
            committed = [e.data for e in r.log.entries if e.index <= r.commit]
            assert b"final" in committed, (
                f"seed {seed}: g{gid} on {nid} did not commit after healing"
            )


@pytest.mark.parametrize("seed", range(12))
def test_random_runs_keep_groups_safe_and_live(seed: int) -> None:
    run(seed)
