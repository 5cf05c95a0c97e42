"""Multi-host rehearsal: three nodes on three "hosts" (Linux network namespaces, each
with its own address on a private bridge), a real network partition (the leader's
cable pulled at the switch: its packets are dropped, nothing is refused), and the
heal. Skipped where network namespaces cannot be made (not root, no ``ip``, or a
container without CAP_SYS_ADMIN/CAP_NET_ADMIN).

Run it alone (as root): ``.venv/bin/python -m pytest tests/multihost -v``.
See docs/MULTIHOST.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_helpers import Agent, NetnsLab, netns_unavailable_reason, wait_for


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetnsLab]:
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(f"multi-host test needs network namespaces: {reason}")
    with NetnsLab(tmp_path / "lab") as lab:
        yield lab


def _leader(agent: Agent, nodes: list[str]) -> tuple[str, dict] | None:
    """The node among ``nodes`` that says it leads the highest term, with its status."""
    best = None
    for nid, s in agent.statuses(nodes).items():
        if s and s["role"] == "leader" and (best is None or s["term"] > best[1]["term"]):
            best = (nid, s)
    return best


def _put(agent: Agent, acked: dict[str, object], key: str, value: object) -> None:
    r = agent.put(key, value)
    assert r["ok"], f"put {key} failed: {r}"
    acked[key] = value


def test_nodes_on_separate_hosts_survive_a_partition_of_the_leader_and_heal(
    lab: NetnsLab,
) -> None:
    t0 = time.monotonic()

    def say(msg: str) -> None:  # a timeline, shown when the test fails (or with -s)
        print(f"[{time.monotonic() - t0:6.2f}s] {msg}", flush=True)

    ids = list(lab.node_ids)
    say(f"namespaces {lab.switch} + {list(lab.ns.values())}; logs in {lab.dir}")
    lab.start_all()
    sw = lab.agent(lab.switch)  # the client, on the switch: it reaches every host

    # 1. one leader; every node is the process we started, listening on its own address
    wait_for(lambda: _leader(sw, ids), 15, "a leader")
    statuses = wait_for(lambda: (lambda s: s if all(s.values()) else None)(sw.statuses(ids)),
                        5, "every node answering")
    for nid in ids:
        assert statuses[nid]["pid"] == lab.nodes[nid].pid, "'ip netns exec' must exec the node"
        assert statuses[nid]["address"] == f"tcp://{lab.addr[nid]}:7102"
    acked: dict[str, object] = {}
    for i in range(10):
        _put(sw, acked, f"before{i}", i)
    lead, before = wait_for(lambda: _leader(sw, ids), 5, "the leader after the first writes")
    assert before["commit"] >= 10
    say(f"leader {lead} (term {before['term']}, commit {before['commit']}); 10 writes acked")

    # 2. pull the leader's cable. A client on the leader's own host sends it a write
    # at once, while it may still believe it leads: the write is never acknowledged
    iso = lab.agent(lab.ns[lead])  # started before the cut; it talks to the isolated node only
    lab.link_down(lead)
    say(f"link of {lead} down")
    r = iso.submit_to(lead, "isolated", "must not commit", deadline=1.5)
    assert not r["ok"], f"the isolated node acknowledged a write: {r}"
    say(f"write sent to the isolated {lead} on its host: not acknowledged ({r['error']})")

    # the other two elect a leader and commit new writes
    others = [n for n in ids if n != lead]
    wait_for(lambda: sw.status(lead, timeout=0.3) is None, 5, f"{lead} unreachable from the switch")
    new, new_status = wait_for(lambda: _leader(sw, others), 10, "a leader among the other two")
    assert new_status["term"] > before["term"]
    say(f"new leader {new} (term {new_status['term']})")
    for i in range(10):
        _put(sw, acked, f"during{i}", {"i": i, "leader": new})
    majority_commit = sw.status(new)["commit"]
    assert majority_commit > before["commit"]
    say(f"10 writes acked by the majority (commit {majority_commit})")

    # ... while the isolated node commits nothing, and steps down without a quorum
    s = iso.status(lead, timeout=1.0)
    assert s is not None, "the isolated node should still answer on its own host"
    assert s["commit"] == before["commit"], (s["commit"], before["commit"])
    wait_for(lambda: (iso.status(lead, timeout=1.0) or {}).get("role") != "leader", 5,
             f"{lead} stepping down without a quorum")
    say(f"isolated {lead}: commit still {s['commit']} (last index {s['last_index']}), "
        "not leader")
    iso.close()  # kill it by pid: nothing of its own may reach the cluster after the heal

    # 3. plug it back: the isolated node rejoins and catches up; nothing acked is lost
    lab.link_up(lead)
    say(f"link of {lead} up")

    def caught_up() -> dict | None:
        led = _leader(sw, ids)
        back = sw.status(lead, timeout=0.3)
        if led and back and back["applied"] >= led[1]["commit"] >= majority_commit:
            return {"leader": led[0], "commit": led[1]["commit"], "applied": back["applied"]}
        return None

    done = wait_for(caught_up, 20, f"{lead} applying the leader's log after the heal")
    say(f"{lead} caught up: {done}")
    local = sw.local_read(lead, list(acked))["result"]
    assert {k: v.get("value") for k, v in local.items()} == acked, \
        "the rejoined node's own state is missing acknowledged writes"
    for key, value in acked.items():
        got = sw.get(key)
        assert got["ok"] and got["result"].get("value") == value, (key, got)
    got = sw.get("isolated")
    assert got["ok"] and not got["result"].get("found"), f"an unacknowledged write committed: {got}"
    say(f"all {len(acked)} acknowledged writes readable, on {lead} too; the refused one is not")
