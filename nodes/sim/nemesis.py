"""The simulator's fault mix: every so often one event, drawn from one seeded
``random.Random`` (TigerBeetle's VOPR, FoundationDB's simulation).

Network and process faults: crash (often the leader), restart, partition,
one-way cut, isolate the leader, heal. On disk, also a crash *inside* a
storage step: a crash point is armed on a live node and fires the next time its
storage gets there (before or after an fsync, or mid-record: a torn WAL write);
and storage faults on a minority of the voters (FAST'18, TigerBeetle): a node
goes down and its disk loses a suffix it had fsynced, is wiped, or has a bit
flipped; it must repair itself from its peers, and no committed entry (so no
acknowledged write) may be lost.

Membership (thesis 4) and leadership transfer (thesis 3.10): transfer to a
random voter; remove a random member (sometimes the leader); once the removal
is seen committed the server is either retired (stopped; later re-added with
its old data kept, or wiped) or left running as a non-member; add a retired or
stray server back (as a learner that the leader promotes once caught up); grow
the cluster with brand-new servers (empty configuration, as
``Cluster.add_storage`` makes them). A retired server is never restarted by a
fault, and it is never a member of a committed configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from nodes.raft.errors import RaftError
from nodes.raft.messages import ChangeKind, ConfigChange

from .cluster import Cluster
from .storage_hosts import TORN_WRITE

CREATION_POINTS = ("meta.write", "meta.fsync", "meta.rename", "meta.dirsync")


class Nemesis:
    """One fault every ``every_ms`` (drawn uniformly from the range)."""

    def __init__(
        self,
        cluster: Cluster,
        rng: Random,
        every_ms: tuple[float, float],
        membership: bool = True,
        max_members: int = 7,
        min_voters: int = 2,
        storage_faults: bool = True,
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.every_ms = every_ms
        self.next_at = rng.uniform(*every_ms)
        self.max_members = max_members
        self.min_voters = min_voters
        self.log: list[str] = []
        self.retired: set[str] = set()  # removed (committed) and stopped: never restarted
        self.removing: set[str] = set()  # a REMOVE was proposed; its commit not yet seen
        self.next_id = len(cluster.ids) + 1
        self.counts: dict[str, int] = {}
        points = cluster.host.crash_points
        self.running_points = tuple(p for p in points if p not in CREATION_POINTS)
        self.creation_points = tuple(p for p in CREATION_POINTS if p in points)
        events: list[tuple[float, Callable[[], bool]]] = [
            (0.12, self._crash),
            (0.16, self._restart),
            (0.10, self._partition),
            (0.06, self._one_way),
            (0.06, self._isolate_leader),
        ]
        if self.running_points:
            events.append((0.08, self._arm_storage_crash))
        self.damaged: set[str] = set()  # storage faults not yet repaired
        if storage_faults and hasattr(cluster.host, "damage"):
            events.append((0.06, self._storage_fault))
        if membership:
            events += [
                (0.08, self._transfer),
                (0.08, self._remove),
                (0.08, self._add_back),
                (0.05, self._grow),
            ]
        self.events = events
        cluster.listeners_storage_crash.append(lambda nid, what: self._say(f"died: {what}"))

    # --- the loop -------------------------------------------------------------------

    def step(self) -> None:
        """Called after every simulated event."""
        if self.removing:
            self._follow_removals()
        c = self.cluster
        if c.now < self.next_at:
            return
        self.next_at = c.now + self.rng.uniform(*self.every_ms)
        live = [n for n in c.ids if n not in self.retired]
        if 2 * len(c.nodes) <= len(live) and self.rng.random() < 0.5 and self._restart():
            return  # most servers are down: bring one back rather than wait for luck
        for _ in range(3):  # an event that does not apply now (no leader...) draws again
            pick = self.rng.random()
            for weight, event in self.events:
                if pick < weight:
                    if event():
                        return
                    break
                pick -= weight
            else:
                break  # the rest of the unit interval: heal
        c.network.heal()
        self._say("heal")

    def _say(self, what: str) -> None:
        self.counts[what.split()[0]] = self.counts.get(what.split()[0], 0) + 1
        self.log.append(f"{self.cluster.now:.0f}ms {what}")

    def _victim(self, among: list[str], leader_odds: float) -> str | None:
        """The leader (when it is among them) with probability ``leader_odds``, else
        a random one of ``among``; None when there is nobody."""
        if not among:
            return None
        lead = self.cluster.leader()
        if lead in among and self.rng.random() < leader_odds:
            return lead
        return self.rng.choice(among)

    # --- process and network faults -----------------------------------------------------

    def _crash(self) -> bool:
        c = self.cluster
        victim = self._victim(list(c.nodes), leader_odds=0.5)
        if victim is None:
            return False
        c.crash(victim)
        self._say(f"crash {victim}")
        return True

    def _restart(self) -> bool:
        c = self.cluster
        down = [n for n in c.ids if n not in c.nodes and n not in self.retired]
        if not down:
            return False
        n = self.rng.choice(down)
        started = c.restart(n)
        self._say(f"restart {n}" + ("" if started else " (crashed while starting)"))
        return True

    def _partition(self) -> bool:
        c = self.cluster
        ids = list(c.ids)
        side = set(self.rng.sample(ids, self.rng.randint(1, len(ids) // 2)))
        c.network.heal()
        c.network.partition(side, set(ids) - side)
        self._say(f"partition {sorted(side)}")
        return True

    def _one_way(self) -> bool:
        a, b = self.rng.sample(list(self.cluster.ids), 2)
        self.cluster.network.partition({a}, {b}, one_way=True)
        self._say(f"one-way {a}->{b}")
        return True

    def _isolate_leader(self) -> bool:
        c = self.cluster
        lead = c.leader()
        if lead is None:
            return False
        c.network.heal()
        c.network.isolate(lead, set(c.ids))
        self._say(f"isolate leader {lead}")
        return True

    def _arm_storage_crash(self) -> bool:
        c = self.cluster
        victim = self._victim(list(c.nodes), leader_odds=0.4)
        if victim is None:
            return False
        # the WAL write and fsync come up in nearly every save: weigh them up
        if self.rng.random() < 0.5:
            point = self.rng.choice(["wal.write", "wal.fsync", TORN_WRITE])
        else:
            point = self.rng.choice(self.running_points)
        skip = self.rng.randrange(3)
        c.arm_crash(victim, point, skip)
        self._say(f"arm-crash {victim} at {point} (after {skip} passes)")
        return True

    def _fault_budget(self) -> int:
        """How many servers may have damaged storage at once: a minority of the
        smallest voter set in sight (the initial one, and every live node's)."""
        c = self.cluster
        sizes = [len(c.initial.voters)]
        sizes += [len(n.raft.config.voters) for n in c.nodes.values() if n.raft.config.voters]
        return (min(sizes) - 1) // 2

    def _hurt(self) -> set[str]:
        """Servers with damaged storage not yet repaired, and those recovering for
        another reason (a founder that heard of a term before its peers answered its
        probe), live or down: together they must stay a minority."""
        c = self.cluster
        for n in sorted(self.damaged):
            if n in c.nodes and not c.nodes[n].raft.recovering:
                self.damaged.discard(n)  # repaired
        live = {n for n, node in c.nodes.items() if node.raft.recovering}
        down = {n for n in c.ids if n not in c.nodes and n not in self.retired
                and c.host.recovering(n)}
        return self.damaged | live | down

    def _storage_fault(self) -> bool:
        """A faulty disk on a minority: a lost suffix, a wiped directory (founders only:
        a server added later has no way to tell a wiped directory from a new one) or a
        flipped bit. The node is down when it happens and comes back on the next
        restart; it must repair itself from its peers without losing a committed entry."""
        c = self.cluster
        # A recovering node asks the voters of the newest configuration it still holds;
        # a fault that cut membership changes out of its log, or a change made while it
        # recovers, can leave it asking servers that are gone (docs/MULTIHOST.md). So
        # storage faults hit only a cluster still in its founding configuration, and no
        # membership change is made while a node is hurt.
        if self.removing or self.retired or any(
            n.raft.config != c.initial for n in c.nodes.values()
        ):
            return False
        hurt = self._hurt()
        budget = self._fault_budget()
        among = [n for n in c.ids if n not in self.retired
                 and (n in hurt or len(hurt) < budget)]
        if not among:
            return False
        victim = self.rng.choice(among)
        kinds = ["lose-suffix", "flip"] + (["wipe"] if c.host.founder(victim) else [])  # type: ignore[attr-defined]
        kind = self.rng.choice(kinds)
        if victim in c.nodes:
            c.crash(victim)
        done = c.host.damage(victim, kind)  # type: ignore[attr-defined]
        if done is None:
            self._say(f"crash {victim} (no storage to damage)")
            return True
        c.invariants.forget_storage(victim)
        self.damaged.add(victim)
        self._say(f"storage {kind} {victim}: {done}")
        return True

    # --- membership and leadership ------------------------------------------------------

    def _stable_leader(self) -> str | None:
        return self.cluster.stable_leader()

    def _propose(self, lead: str, change: ConfigChange, overlap: bool = True) -> bool:
        node = self.cluster.nodes[lead]
        what = f"{change.kind.name.lower()} {change.node_id} via {lead}"
        try:
            node.raft.propose_config_change(change)
        except RaftError as e:
            self._say(f"refused {what}: {type(e).__name__}")
            return False
        self._say(f"change {what}")
        if overlap and self.rng.random() < 0.3:
            self._overlapping_change(lead, change.node_id)
        node.handle_ready()
        return True

    def _overlapping_change(self, lead: str, first: str) -> None:
        """A second change while the first is in flight: the leader must refuse it
        (thesis 4.1); were it taken, two configurations with disjoint majorities
        could be in force at once."""
        cfg = self.cluster.nodes[lead].raft.config
        others = sorted(
            n for n in cfg.members() - {first}
            if n in cfg.learners or len(cfg.voters) > self.min_voters
        )
        if others:
            victim = self.rng.choice(others)
            if self._propose(lead, ConfigChange(ChangeKind.REMOVE, victim), overlap=False):
                self.removing.add(victim)

    def _transfer(self) -> bool:
        c = self.cluster
        lead = self._stable_leader()
        if lead is None:
            return False
        node = c.nodes[lead]
        others = sorted(node.raft.config.voters - {lead})
        if not others:
            return False
        target = self.rng.choice(others)
        try:
            node.raft.transfer_leadership(target)
        except RaftError as e:
            self._say(f"refused transfer {lead}->{target}: {type(e).__name__}")
            return True
        self._say(f"transfer {lead}->{target}")
        node.handle_ready()
        return True

    def _remove(self) -> bool:
        lead = self._stable_leader()
        if lead is None:
            return False
        if self._hurt():
            return False  # see _storage_fault
        cfg = self.cluster.nodes[lead].raft.config
        candidates = sorted(
            n for n in cfg.members()
            if n in cfg.learners or len(cfg.voters) > self.min_voters
        )
        if not candidates:
            return False
        victim = self._victim(candidates, leader_odds=0.3)
        assert victim is not None
        if self._propose(lead, ConfigChange(ChangeKind.REMOVE, victim)):
            self.removing.add(victim)
        return True

    def _follow_removals(self) -> None:
        """Once a removal is seen committed, retire the server (or let it run on as a
        non-member); a removal that was lost (its leader died) is forgotten."""
        lead = self._stable_leader()
        if lead is None:
            return
        r = self.cluster.nodes[lead].raft
        committed = r.config_at(r.commit).members()
        settled = r.pending_conf_index <= r.commit
        for n in sorted(self.removing):
            if n not in committed:
                self.removing.discard(n)
                if self.rng.random() < 0.6:
                    self.cluster.crash(n)
                    self.retired.add(n)
                    self._say(f"retire {n}")
                else:
                    self._say(f"removed {n} runs on")
            elif settled and n in r.config.members():
                self.removing.discard(n)  # the REMOVE entry was lost with its leader

    def _add_back(self) -> bool:
        if self._hurt():
            return False  # see _storage_fault
        c = self.cluster
        lead = self._stable_leader()
        if lead is None:
            return False
        cfg = c.nodes[lead].raft.config
        strays = [n for n in c.nodes if n not in cfg.members() and n not in self.removing]
        candidates = sorted(self.retired) + sorted(strays)
        if not candidates or len(cfg.members()) >= self.max_members:
            return False
        n = self.rng.choice(candidates)
        if n in self.retired:
            self.retired.discard(n)
            if self.rng.random() < 0.5:
                c.add_storage(n)
                self._say(f"wipe {n}")
            else:
                c.restart(n)
                self._say(f"rejoin {n} with its old data")
        self._propose(lead, ConfigChange(ChangeKind.ADD_LEARNER, n))
        return True

    def _grow(self) -> bool:
        if self._hurt():
            return False  # see _storage_fault
        c = self.cluster
        lead = self._stable_leader()
        if lead is None or len(c.nodes[lead].raft.config.members()) >= self.max_members:
            return False
        n = f"n{self.next_id}"
        self.next_id += 1
        if self.creation_points and self.rng.random() < 0.25:
            point = self.rng.choice(self.creation_points)
            c.arm_crash(n, point)
            self._say(f"arm-crash {n} at {point}")
        c.add_storage(n)
        self._say(f"new server {n}" + ("" if n in c.nodes else " (crashed while creating)"))
        self._propose(lead, ConfigChange(ChangeKind.ADD_LEARNER, n))
        return True
