"""Many Raft groups per simulated node: every node is a ``nodes.host.Host`` on a
``SharedWal`` (one write-ahead log, one sync per turn, for all its groups).

One seed, one run, everything random from ``Random(seed)``:

- **Network**: the hosts' batches (every group's messages from one node to
  another in a turn) are dropped, delayed and reordered on a virtual clock;
  partitions cut node pairs both ways. A crashed node's peers learn it as the
  ZeroMQ shell would (``node_unreachable``).
- **Crashes take the whole node**: every group on it goes at once. A crash is
  immediate (between turns: nothing staged is lost), at a crash point of the
  shared WAL (its crash hook raises ``SimulatedCrash`` inside the sync, the
  compaction or a snapshot write), or a **torn write**: the turn's WAL batch is
  written, cut a few bytes short before its fsync, and the node dies. A restart
  reopens the directory (the torn tail is cut) and hosts every group again.
- **Invariants per group after every event** (paper Figure 3): one leader per
  group and term; log matching (same group, index and term: same data);
  state machine safety (one committed entry per group and index, on every node;
  applied entries agree); leader completeness (a node that becomes a group's
  leader holds every entry of that group committed so far); and durability (a
  restarted node holds, per group, at least the term, vote and committed prefix
  its last completed sync covered).
- **Liveness**: then the network heals and every node restarts; every group
  must elect a leader and commit a new write on all its members in
  ``liveness_bound_ms``.
- **Linearizability per group**: each group's state machine is a register
  (``Register``); clients write, read (through the log) and compare-and-swap on
  each group's leader; an op is answered when that leader applies its entry in
  the term it proposed it (an op whose node crashed first is unknown, one whose
  index another leader's entry took never happened), and the history of every
  group is checked (``nodes.lincheck``, one key per group).

The WAL lives in a temporary directory (tmpfs when there is one) with
``fsync=False``: inside one process the page cache is as durable as a disk, so a
crash keeps exactly what was written before it.
"""

from __future__ import annotations

import heapq
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

from nodes.host.host import Host, HostOptions, Turn
from nodes.lincheck import Op, check
from nodes.raft.core import RaftConfig
from nodes.raft.errors import NotLeader, TransferInProgress
from nodes.raft.ready import Role
from nodes.storage.shared import SharedWal

from .invariants import InvariantViolation
from .storage_hosts import SimulatedCrash, _memory_backed_tmp

__all__ = ["MultiParams", "MultiResult", "Register", "run_multi_seed"]


class Register:
    """A group's state machine for the client workload: one register with write,
    read and compare-and-swap commands (read through the log). Other commands
    (the liveness writes) change nothing."""

    def __init__(self) -> None:
        self.value: str | None = None

    def apply(self, index: int, data: bytes) -> object:
        kind, _, rest = data.decode().partition("|")
        if kind == "w":
            self.value = rest
            return True
        if kind == "r":
            return self.value
        if kind == "c":
            expected, _, new = rest.partition("|")
            if self.value == (expected or None):
                self.value = new
                return True
            return False
        return None

    def snapshot(self) -> bytes:
        return b"" if self.value is None else b"=" + self.value.encode()

    def restore(self, data: bytes) -> None:
        self.value = data[1:].decode() if data else None

TORN = "torn"
CRASH_POINTS = ("wal.write", "wal.fsync", "sync.done", "wal.rollover", "snapshot.rename",
                "compact.delete", TORN)


@dataclass(slots=True)
class MultiParams:
    groups: int = 8
    safety_ms: float = 4000.0
    liveness_bound_ms: float = 6000.0
    tick_ms: float = 10.0


@dataclass(slots=True)
class MultiResult:
    seed: int
    groups: int
    nodes: int = 0
    ok: bool = False
    error: str = ""
    simulated_ms: float = 0.0
    wall_s: float = 0.0
    crashes: int = 0
    torn: int = 0
    point_crashes: int = 0
    restarts_checked: int = 0
    committed: int = 0
    ops: int = 0
    checks: int = 0
    faults: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"seed={self.seed} groups={self.groups} nodes={self.nodes} crashes={self.crashes} "
            f"torn={self.torn} point_crashes={self.point_crashes} "
            f"restarts_checked={self.restarts_checked} committed={self.committed} ops={self.ops} "
            f"checks={self.checks} sim={self.simulated_ms / 1000:.1f}s wall={self.wall_s:.2f}s "
            + ("ok" if self.ok else f"FAIL: {self.error}")
        )


@dataclass(frozen=True, slots=True)
class _Acked:
    term: int
    vote: str | None
    index: int  # the committed prefix its stable log covered ...
    index_term: int  # ... and the term of its last entry


class MultiSim:
    machine: Callable[[], Register] = Register

    def __init__(self, seed: int, params: MultiParams, root: Path) -> None:
        self.seed = seed
        self.p = params
        self.root = root
        rng = self.rng = Random(seed)
        n = rng.choice((3, 3, 5))
        self.ids = [f"n{k}" for k in range(1, n + 1)]
        self.drop = rng.uniform(0.0, 0.1)
        self.max_delay = rng.uniform(1.0, 25.0)
        self.options = HostOptions(
            raft=RaftConfig(lazy_commit_notify=True),
            quiesce_ticks=rng.choice((0, 3, 10)),
            node_timeout_ticks=rng.choice((20, 50)),
            snapshot_interval=rng.choice((0, 0, 25)),
        )
        self.segment_bytes = rng.choice((2048, 16 << 10, 1 << 20))
        self.max_segments = rng.choice((2, 8))
        self.members = {
            gid: tuple(sorted(rng.sample(self.ids, 3))) for gid in range(1, params.groups + 1)
        }
        self.result = MultiResult(seed, params.groups, n)
        self.now = 0.0
        self._seq = 0
        self.events: list[tuple[float, int, str, object]] = []
        self.hosts: dict[str, Host] = {}
        self.wals: dict[str, SharedWal] = {}
        self.life: dict[str, int] = dict.fromkeys(self.ids, 0)  # incarnation
        self.armed: dict[str, str | None] = dict.fromkeys(self.ids)
        self.batch_start: dict[str, tuple[Path, int] | None] = dict.fromkeys(self.ids)
        self.cut: set[frozenset[str]] = set()
        # invariants
        self.leader_of: dict[tuple[int, int], str] = {}  # (gid, term) -> node
        self.data_at: dict[tuple[int, int, int], bytes] = {}  # (gid, index, term) -> data
        self.committed: dict[tuple[int, int], tuple[int, bytes]] = {}  # (gid, index)
        self.applied: dict[tuple[int, int], int] = {}  # (gid, index) -> term
        self.checked_to: dict[tuple[str, int], int] = {}  # (node, gid) -> committed, checked
        self.led: dict[tuple[str, int], int] = {}  # (node, gid) -> term it was seen leading
        self.acked: dict[tuple[str, int], _Acked] = {}
        self.proposals = 0
        # the client history, for a linearizability check per group (one key each)
        self.history: list[Op] = []
        self.in_flight: dict[tuple[str, int, int], tuple[int, str, str, object, object, float]] = {}
        self.written: list[str] = []

    # --- the clock ----------------------------------------------------------------------

    def at(self, t: float, kind: str, data: object = None) -> None:
        self._seq += 1
        heapq.heappush(self.events, (t, self._seq, kind, data))

    def run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> None:
        while self.events and self.events[0][0] <= t_end:
            t, _, kind, data = heapq.heappop(self.events)
            self.now = t
            getattr(self, "_on_" + kind)(data)
            self.check()
            if stop is not None and stop():
                return
        self.now = max(self.now, t_end)

    # --- nodes ----------------------------------------------------------------------------

    def _hook(self, nid: str) -> Callable[[str], None]:
        def hook(point: str) -> None:
            armed = self.armed[nid]
            if armed is None or nid not in self.hosts:
                return
            wal = self.wals[nid]
            if armed == TORN:
                if point == "wal.write":
                    seg = wal.segments[-1]
                    self.batch_start[nid] = (seg, seg.stat().st_size)
                elif point == "wal.fsync" and self.batch_start[nid] is not None:
                    seg, start = self.batch_start[nid]  # type: ignore[misc]
                    size = seg.stat().st_size
                    if size > start:
                        cut = self.torn_cut(start, size)
                        os.truncate(seg, size - cut)
                        self.result.torn += 1
                        self.note(f"{nid} torn write: {cut} of {size - start} bytes cut")
                    raise SimulatedCrash(f"{nid} torn write")
            elif point == armed:
                self.result.point_crashes += 1
                self.note(f"{nid} crashes at {point}")
                raise SimulatedCrash(f"{nid} at {point}")

        return hook

    def torn_cut(self, start: int, size: int) -> int:
        """How many bytes of the segment a torn write cuts: a few, all within the
        batch written since ``start`` (what was synced before stays)."""
        return self.rng.randint(1, min(size - start, 64))

    def start(self, nid: str) -> None:
        self.armed[nid] = None
        self.batch_start[nid] = None
        wal = SharedWal(self.root / nid, fsync=False, node_id=nid, cluster_id="sim",
                        segment_bytes=self.segment_bytes, max_segments=self.max_segments,
                        crash_hook=self._hook(nid))
        self.wals[nid] = wal
        k = self.ids.index(nid)
        host = Host(nid, wal, self.options, machine_factory=lambda gid: self.machine(),
                    seed=self.rng.randrange(1 << 30) + k)
        for other in self.ids:
            host.add_node(other)
        self.life[nid] += 1
        self.hosts[nid] = host
        reopened = host.reopen()
        if reopened:
            self.check_reload(nid)
        self.at(self.now + self.rng.uniform(0, self.p.tick_ms), "tick", (nid, self.life[nid]))

    def create_groups(self) -> None:
        for gid, members in self.members.items():
            lead = members[gid % len(members)]
            for nid in members:
                self.hosts[nid].create_group(gid, members, campaign=(nid == lead))
        for nid in self.ids:
            self.turns(nid)

    def crash(self, nid: str, why: str) -> None:
        host = self.hosts.pop(nid, None)
        if host is None:
            return
        self.result.crashes += 1
        self.note(f"{nid} crashes ({why}), with its {len(host.groups)} groups")
        self.wals[nid].abandon()
        for key in [k for k in self.in_flight if k[0] == nid]:
            self._finish(key, "unknown")
        for key in [k for k in self.checked_to if k[0] == nid]:
            del self.checked_to[key]
        for key in [k for k in self.led if k[0] == nid]:
            del self.led[key]
        for other, h in self.hosts.items():
            if frozenset((nid, other)) not in self.cut:
                h.node_unreachable(nid)  # its TCP connections drop

    def check_reload(self, nid: str) -> None:
        """Every group holds at least what its last completed sync covered."""
        host = self.hosts[nid]
        for gid in self.members:
            a = self.acked.get((nid, gid))
            if a is None:
                continue
            g = host.groups.get(gid)
            if g is None:
                raise InvariantViolation(f"{nid}: g{gid} is gone after the restart")
            r = g.raft
            if r.term < a.term or (r.term == a.term and a.vote is not None and r.vote != a.vote):
                raise InvariantViolation(
                    f"{nid} g{gid}: acknowledged term {a.term} vote {a.vote}, reloaded "
                    f"term {r.term} vote {r.vote}")
            if a.index > r.log.offset_index and (
                a.index > r.log.last_index or r.log.term(a.index) != a.index_term
            ):
                raise InvariantViolation(
                    f"{nid} g{gid}: acknowledged committed entry {a.index}@{a.index_term} "
                    f"missing after the restart (log ends at {r.log.last_index})")
        self.result.restarts_checked += 1

    # --- turns and the network ------------------------------------------------------------

    def turns(self, nid: str) -> None:
        host = self.hosts.get(nid)
        if host is None:
            return
        try:
            while host.has_work():
                turn = host.turn()
                self.after_turn(nid, host, turn)
        except SimulatedCrash as e:
            self.crash(nid, str(e))

    def after_turn(self, nid: str, host: Host, turn: Turn) -> None:
        for a in turn.applied:
            got = self.applied.setdefault((a.group, a.index), a.term)
            if got != a.term:
                raise InvariantViolation(
                    f"g{a.group} index {a.index} applied as term {got} and {a.term} (on {nid})")
            key = (nid, a.group, a.index)
            if key in self.in_flight:
                if self.in_flight[key][0] == a.term:
                    self._finish(key, "ok", a.result)
                else:  # another leader's entry took the index: ours never committed
                    self._finish(key, "fail")
        if turn.synced:
            for gid, g in host.groups.items():
                r = g.raft
                k = min(r.commit, r.log.stable_index)
                if k > r.log.offset_index:
                    kt = r.log.term(k) or 0
                else:
                    k, kt = 0, 0
                self.acked[(nid, gid)] = _Acked(r.term, r.vote, k, kt)
        for b in turn.batches:
            if self.rng.random() < self.drop:
                continue
            self.at(self.now + self.rng.uniform(0.2, self.max_delay), "deliver", b)

    def _on_deliver(self, b: object) -> None:
        from nodes.host.host import Batch

        assert isinstance(b, Batch)
        host = self.hosts.get(b.recipient)
        if host is None or frozenset((b.sender, b.recipient)) in self.cut:
            return
        host.receive(b)
        self.turns(b.recipient)

    def _on_tick(self, data: object) -> None:
        nid, life = data  # type: ignore[misc]
        host = self.hosts.get(nid)
        if host is None or self.life[nid] != life:
            return
        host.tick()
        self.turns(nid)
        self.at(self.now + self.p.tick_ms, "tick", (nid, life))

    def propose(self, gid: int, data: bytes) -> bool:
        lead = self.leader(gid)
        if lead is None:
            return False
        try:
            self.hosts[lead].propose(gid, data)
        except (NotLeader, TransferInProgress):
            return False
        self.proposals += 1
        self.turns(lead)
        return True

    def leader(self, gid: int) -> str | None:
        best: tuple[int, str] | None = None
        for nid, h in self.hosts.items():
            g = h.groups.get(gid)
            if g is not None and g.raft.role is Role.LEADER:
                if best is None or g.raft.term > best[0]:
                    best = (g.raft.term, nid)
        return best[1] if best else None

    def _on_propose(self, _: object) -> None:
        rng = self.rng
        gid = rng.randint(1, self.p.groups)
        self.at(self.now + rng.uniform(2, 30), "propose")
        lead = self.leader(gid)
        if lead is None:
            return
        x = rng.random()
        value = f"s{self.seed}-{self.proposals}"
        expected: str | None = None
        if x < 0.4:
            kind, data = "write", f"w|{value}"
        elif x < 0.8:
            kind, data, value = "read", "r|", None  # type: ignore[assignment]
        else:
            expected = rng.choice(self.written) if self.written and rng.random() < 0.8 else None
            kind, data = "cas", f"c|{expected or ''}|{value}"
        host = self.hosts[lead]
        try:
            index = host.propose(gid, data.encode())
        except (NotLeader, TransferInProgress):
            return
        self.proposals += 1
        if value is not None:
            self.written.append(value)
        term = host.groups[gid].raft.term
        self.in_flight[(lead, gid, index)] = (term, f"c{self.proposals}", kind, value, expected,
                                              self.now)
        self.turns(lead)

    def _finish(self, key: tuple[str, int, int], status: str, result: object = None) -> None:
        term, client, kind, value, expected, invoke = self.in_flight.pop(key)
        if status == "fail":
            return  # definitely never took effect
        gkey = f"g{key[1]}"
        if status == "unknown":
            if kind != "read":
                self.history.append(Op(client, gkey, kind, value, expected, invoke, None,
                                       "unknown"))
            return
        if kind == "read":
            self.history.append(Op(client, gkey, "read", result, None, invoke, self.now))
        elif kind == "cas":
            self.history.append(Op(client, gkey, "cas", value, expected, invoke, self.now,
                                   succeeded=bool(result)))
        else:
            self.history.append(Op(client, gkey, "write", value, None, invoke, self.now))

    def _on_nemesis(self, _: object) -> None:
        rng = self.rng
        down = [n for n in self.ids if n not in self.hosts]
        x = rng.random()
        if down and (x < 0.35 or len(down) >= len(self.ids) - 1):
            nid = rng.choice(down)
            self.note(f"{nid} restarts")
            self.start(nid)
        elif x < 0.65:
            nid = rng.choice(sorted(self.hosts))
            how = rng.choice(("now", "armed", "armed"))
            if how == "now":
                self.crash(nid, "killed")
            else:
                self.armed[nid] = TORN if rng.random() < 0.5 else rng.choice(CRASH_POINTS)
                self.note(f"{nid} armed to crash at {self.armed[nid]}")
        elif x < 0.85 and not self.cut:
            side = set(rng.sample(self.ids, rng.randint(1, len(self.ids) // 2)))
            self.cut = {frozenset((a, b)) for a in side for b in self.ids if b not in side}
            self.note(f"partition {sorted(side)} | {sorted(set(self.ids) - side)}")
        else:
            if self.cut:
                self.note("heal")
            self.cut = set()
        self.at(self.now + rng.uniform(100, 600), "nemesis")

    def note(self, what: str) -> None:
        self.result.faults.append(f"{self.now:8.1f} ms  {what}")

    # --- invariants -------------------------------------------------------------------------

    def check(self) -> None:
        self.result.checks += 1
        for nid, h in self.hosts.items():
            for gid, g in h.groups.items():
                r = g.raft
                if r.role is Role.LEADER:
                    other = self.leader_of.setdefault((gid, r.term), nid)
                    if other != nid:
                        raise InvariantViolation(
                            f"g{gid} term {r.term}: two leaders, {other} and {nid}")
                    if self.led.get((nid, gid)) != r.term:
                        self.led[(nid, gid)] = r.term
                        self._check_complete(nid, gid, r)
                log = r.log
                start = max(self.checked_to.get((nid, gid), 0), log.offset_index)
                for e in log.entries[start - log.offset_index:]:
                    key = (gid, e.index, e.term)
                    got = self.data_at.setdefault(key, e.data)
                    if got != e.data:
                        raise InvariantViolation(
                            f"g{gid} index {e.index} term {e.term}: two different entries "
                            f"(log matching broken on {nid})")
                    if e.index <= r.commit:
                        c = self.committed.setdefault((gid, e.index), (e.term, e.data))
                        if c != (e.term, e.data):
                            raise InvariantViolation(
                                f"g{gid} index {e.index} committed as term {c[0]} and as "
                                f"term {e.term} (on {nid})")
                self.checked_to[(nid, gid)] = min(r.commit, log.last_index)

    def _check_complete(self, nid: str, gid: int, r: object) -> None:
        log = r.log  # type: ignore[attr-defined]
        # committed as seen in a log, and applied somewhere (an entry committed,
        # applied and compacted within one event is seen only as applied)
        known = {k: t for k, (t, _) in self.committed.items()} | self.applied
        for (g, index), term in known.items():
            if g != gid or index <= log.offset_index:
                continue
            if index > log.last_index or log.term(index) != term:
                raise InvariantViolation(
                    f"g{gid}: {nid} leads term {r.term} without committed entry "  # type: ignore[attr-defined]
                    f"{index}@{term}")

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> None:
        for nid in self.ids:
            self.start(nid)
        self.create_groups()
        self.at(1.0, "propose")
        self.at(self.rng.uniform(100, 400), "nemesis")
        self.run_until(self.p.safety_ms)
        # liveness: the network heals, every node comes back, nothing is armed
        self.note("liveness: heal, restart every node")
        self.cut = set()
        self.drop = 0.0
        self.events = [ev for ev in self.events if ev[2] in ("tick", "deliver")]
        heapq.heapify(self.events)
        for nid in self.ids:
            self.armed[nid] = None
            if nid not in self.hosts:
                self.start(nid)
        deadline = self.now + self.p.liveness_bound_ms
        pending = set(self.members)
        live: dict[int, tuple[int, int]] = {}  # gid -> (index, term) of its liveness write
        while pending and self.now < deadline:
            self.run_until(min(deadline, self.now + 50))
            for gid in sorted(pending):
                data = b"live-%d" % gid
                at = live.get(gid)
                if at is not None and self.applied.get((gid, at[0])) == at[1]:
                    if all(self.hosts[n].groups[gid].raft.applied >= at[0]
                           for n in self.members[gid]):
                        pending.discard(gid)
                    continue
                if at is not None and (gid, at[0]) not in self.applied:
                    lead = self.leader(gid)
                    if lead is not None and self.hosts[lead].groups[gid].raft.term == at[1]:
                        continue  # still in flight under the same leader
                lead = self.leader(gid)
                if lead is None:
                    continue
                try:
                    index = self.hosts[lead].propose(gid, data)
                except (NotLeader, TransferInProgress):
                    continue
                live[gid] = (index, self.hosts[lead].groups[gid].raft.term)
                self.turns(lead)
        if pending:
            raise InvariantViolation(
                f"groups {sorted(pending)} did not elect and commit a write on every member "
                f"within {self.p.liveness_bound_ms:.0f} ms of healing")
        self.result.committed = len(self.applied)
        for key in list(self.in_flight):
            self._finish(key, "unknown")
        lin = check(self.history)
        self.result.ops = len(self.history)
        if not lin.ok:
            raise InvariantViolation(f"history of {lin.key} not linearizable: {lin.explanation}")


def run_multi_seed(seed: int, params: MultiParams | None = None) -> MultiResult:
    params = params or MultiParams()
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="arena-multisim-", dir=_memory_backed_tmp()))
    sim = MultiSim(seed, params, root)
    try:
        sim.run()
        sim.result.ok = True
    except (InvariantViolation, AssertionError) as e:
        sim.result.error = str(e) or type(e).__name__
    finally:
        for wal in sim.wals.values():
            wal.abandon()
        shutil.rmtree(root, ignore_errors=True)
    sim.result.simulated_ms = sim.now
    sim.result.wall_s = time.perf_counter() - t0
    return sim.result
