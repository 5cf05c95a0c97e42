"""A node host: one object runs this node's replicas of many Raft groups.

Sans-I/O (like the core beneath it): inputs are ``tick()``,
``receive(batch)``, ``propose(gid, data)``, ``create_group`` /
``remove_group``; then ``turn()`` drives every group with work through the
one Ready driver (``nodes.host.driver``) and returns a ``Turn``: the batches
to send (one per peer node) and what was applied. A shell does the I/O
(``nodes.host.shell``: ZeroMQ; the transcript tests and the simulator: a
queue).

One turn, for every group at once::

    stage     each group with a Ready: early sends, its writes staged
    sync      one HostStorage.sync() for all of them (one fsync a turn)
    complete  each group: sends, apply, advance

A replica's Raft id is its node's id: a group's members are node ids, and a
node hosts at most one replica of a group.

Idle groups cost almost nothing:

- **Coalesced traffic.** Everything one node sends another in a turn travels
  in one ``Batch`` (one frame), whatever the number of groups: the
  heartbeats of every group two nodes share go together (CockroachDB's
  coalesced heartbeats). An empty batch is the host-level heartbeat: every
  ``beat_ticks`` ticks each node sends one to each peer node it shares a
  group with, so node liveness costs one message per node pair per beat.
- **Quiescence.** A leader whose group has been idle (``RaftNode.can_quiesce``)
  for ``quiesce_ticks`` ticks sends a last heartbeat marked ``quiesce`` and
  stops ticking the group. A follower that gets it and holds everything the
  leader committed stops ticking too (else it stays awake, and the group
  wakes at its next message). Quiesced groups are not ticked at all. Any
  proposal wakes a group; any message wakes it except the acknowledgement of
  that last heartbeat.
- **Followers of a live node** run no election timer: a follower replica is
  ticked only while it knows no leader or its leader's node has not been heard
  from for two beats. A leader replica that stops leading knows no leader, so
  its own timer elects a successor; a loaded loop that delays its groups'
  heartbeats no longer sets off elections on the other nodes. (A follower
  asked for its vote by its own leader forgets that leader first: the lease
  would otherwise refuse it forever, since the frozen timer never runs out.)
- **Node failure.** A peer node whose connection dropped (``node_unreachable``,
  from the shell) or that sent nothing for ``node_timeout_ticks`` ticks is
  down: every group of which this node is a follower and whose leader is on it
  wakes and forgets its leader (``RaftNode.forget_leader``), and one live voter
  per group (``successor``: the same choice on every node, spread by group id)
  campaigns at once; the others grant its pre-vote at once, having forgotten
  the leader too. If that voter cannot win, the election timers do the rest.

Storage: ``MemoryWal`` (tests, transcripts) or ``SharedWal`` (a node on disk,
``nodes.storage.shared``). A group snapshots every ``snapshot_interval``
applied entries, and also whenever the shared WAL names it as pinning its
oldest segment (``groups_pinning``), so the WAL stays bounded either way.

Groups are created and removed at runtime (the placement directory will do
it): ``create_group(gid, members)``, ``remove_group(gid)``; ``reopen()``
after a restart hosts again every group the storage holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from random import Random
from typing import Protocol

from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    ConfigChange,
    EntryKind,
    Message,
    RequestVote,
    Snapshot,
)
from nodes.raft.ready import Ready, Role

from .driver import ReadyDriver
from .storage import StagedStorage, HostStorage

__all__ = ["Applied", "Batch", "GroupMessage", "Host", "HostOptions", "Machine", "Turn"]


class Machine(Protocol):
    """A group's state machine: deterministic ``apply``; snapshots as bytes."""

    def apply(self, index: int, data: bytes) -> object: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class CountingMachine:
    """The default machine: counts the commands it applied."""

    def __init__(self) -> None:
        self.count = 0

    def apply(self, index: int, data: bytes) -> object:
        self.count += 1
        return self.count

    def snapshot(self) -> bytes:
        return str(self.count).encode()

    def restore(self, data: bytes) -> None:
        self.count = int(data or b"0")


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """One Raft message of group ``group``; ``quiesce`` marks a leader's last
    heartbeat before its group stops ticking."""

    group: int
    msg: Message
    quiesce: bool = False


@dataclass(frozen=True, slots=True)
class Batch:
    """Everything ``sender`` sends ``recipient`` in one turn: one frame. With no
    messages it is the host-level heartbeat."""

    sender: str
    recipient: str
    messages: tuple[GroupMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class Applied:
    group: int
    index: int
    term: int
    result: object


@dataclass(slots=True)
class Turn:
    batches: list[Batch] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    synced: bool = False  # one storage sync happened in this turn
    leaders: dict[int, str | None] = field(default_factory=dict)  # groups whose leader changed


@dataclass(frozen=True, slots=True)
class HostOptions:
    # lazy commit notification: a follower learns a commit index with the next
    # AppendEntries or at the leader's next tick, not by a message of its own (two
    # fewer messages per follower per commit, times the number of groups)
    raft: RaftConfig = field(default_factory=lambda: RaftConfig(lazy_commit_notify=True))
    quiesce_ticks: int = 10  # idle ticks before a leader quiesces its group (0: never)
    beat_ticks: int = 5  # a host-level heartbeat to each peer node this often
    # silence after which a peer node is down (a dropped connection, reported by the
    # shell through node_unreachable, counts at once); long enough that a loop
    # stalled for a moment by the machine's load is not taken for a dead node
    node_timeout_ticks: int = 50
    snapshot_interval: int = 0  # entries applied between a group's snapshots (0: never)


@dataclass(slots=True)
class Group:
    gid: int
    raft: RaftNode
    storage: StagedStorage
    machine: Machine
    driver: ReadyDriver
    quiesced: bool = False
    idle_ticks: int = 0
    quiescing: bool = False  # quiesce() was called this turn: mark its heartbeats
    campaign_pending: bool = False  # campaign() waits for recovery to end


class Host:
    def __init__(
        self,
        node_id: str,
        storage: HostStorage,
        options: HostOptions | None = None,
        machine_factory: Callable[[int], Machine] = lambda gid: CountingMachine(),
        seed: int = 0,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.opts = options or HostOptions()
        self.machine_factory = machine_factory
        self.rng = Random(seed)
        self.groups: dict[int, Group] = {}
        self.now = 0  # ticks since start
        self.heard: dict[str, int] = {}  # peer node -> tick last heard from
        self.down: set[str] = set()  # peer nodes deemed down
        self.nodes: set[str] = set()  # peer nodes known without a shared group
        self.node_downs = 0  # times a peer node was deemed down
        self.dropped: Counter[str] = Counter()
        self._outbox: dict[str, list[GroupMessage]] = {}
        self._applied: list[Applied] = []
        self._leaders: dict[int, str | None] = {}
        self._beat_due = False
        self._sent_since_beat: set[str] = set()
        self._awake: dict[int, Group] = {}  # groups that tick (not quiesced)
        self._dirty: dict[int, Group] = {}  # groups with input since their last Ready
        self._peers: set[str] | None = None
        self._current: Group | None = None  # the group whose Ready is being driven

    # --- groups ---------------------------------------------------------------------

    def create_group(
        self, gid: int, members: Iterable[str], campaign: bool = False, asleep: bool = False
    ) -> Group:
        """Host this node's replica of group ``gid`` with voters ``members`` (this
        node among them). ``campaign``: start an election at once (placement).
        ``asleep``: created quiesced, it waits for a message (its placed leader's
        campaign) instead of running its own election timer."""
        if gid in self.groups:
            raise ValueError(f"group {gid} already exists on node {self.id}")
        voters = frozenset(members)
        if self.id not in voters:
            raise ValueError(f"node {self.id} is not among group {gid}'s members {sorted(voters)}")
        g = self._open(gid, self.storage.open_group(gid, ClusterConfig(voters)), asleep)
        if campaign:
            self.campaign(gid)
        return g

    def reopen(self) -> list[int]:
        """After a restart: host again every group the storage holds, with the
        membership it recorded. Returns their ids."""
        opened = []
        for gid in self.storage.groups():
            if gid not in self.groups:
                self._open(gid, self.storage.open_group(gid, ClusterConfig()), asleep=False)
                opened.append(gid)
        return opened

    def _open(self, gid: int, storage: StagedStorage, asleep: bool) -> Group:
        raft = RaftNode(self.id, storage, Random(self.rng.random()), self.opts.raft)
        machine = self.machine_factory(gid)
        snap = storage.snapshot()
        if snap is not None:
            machine.restore(snap.data)
        g = Group(gid, raft, storage, machine, driver=None)  # type: ignore[arg-type]
        g.driver = ReadyDriver(
            raft, storage_stage(storage), self._send, self._apply_for(g), self._after_for(g)
        )
        self.groups[gid] = g
        if asleep and not raft.recovering:  # a recovering replica must tick to probe
            g.quiesced = True
        else:
            self._awake[gid] = g
        self._dirty[gid] = g
        self._peers = None
        for peer in raft.config.members() - {self.id}:
            self.heard.setdefault(peer, self.now)
        return g

    def remove_group(self, gid: int) -> None:
        if self.groups.pop(gid, None) is not None:
            self._awake.pop(gid, None)
            self._dirty.pop(gid, None)
            self._peers = None
            self.storage.remove_group(gid)

    def add_node(self, nid: str) -> None:
        """Know node ``nid`` before sharing a group with it: beat it, watch it."""
        if nid != self.id:
            self.nodes.add(nid)
            self.heard.setdefault(nid, self.now)
            self._peers = None

    def peers(self) -> set[str]:
        """Every node this one knows or shares a group with."""
        if self._peers is None:
            out: set[str] = set(self.nodes)
            for g in self.groups.values():
                out |= g.raft.config.members()
            out.discard(self.id)
            self._peers = out
        return self._peers

    # --- inputs -----------------------------------------------------------------------

    def propose(self, gid: int, data: bytes) -> int:
        """Append ``data`` to group ``gid``'s log (this node must lead it); returns
        its index. Raises NotLeader / TransferInProgress (retry elsewhere), KeyError
        for a group this node does not host."""
        g = self.groups[gid]
        self._wake(g)
        self._dirty[gid] = g
        return g.raft.propose(data)

    def propose_config_change(self, gid: int, change: ConfigChange) -> int:
        """A membership change of group ``gid`` (one server at a time, thesis 4.1);
        raises as ``RaftNode.propose_config_change`` does."""
        g = self.groups[gid]
        self._wake(g)
        self._dirty[gid] = g
        return g.raft.propose_config_change(change)

    def campaign(self, gid: int) -> None:
        """Group ``gid``'s replica here starts an election now (placement of a first
        leader; later, the directory's leader balancing)."""
        g = self.groups[gid]
        self._wake(g)
        self._dirty[gid] = g
        if g.raft.recovering:
            # storage that cannot prove itself intact (a new SharedWal group is one):
            # no campaign until the term probe clears it; tick() campaigns then
            g.campaign_pending = True
            return
        g.raft.campaign()

    def transfer_leadership(self, gid: int, to: str) -> None:
        """Group ``gid``'s leader here hands its leadership to node ``to`` (placement,
        leader balancing). Raises NotLeader when this node does not lead it."""
        g = self.groups[gid]
        self._wake(g)
        self._dirty[gid] = g
        g.raft.transfer_leadership(to)

    def tick(self) -> None:
        self.now += 1
        opts = self.opts
        dirty = self._dirty
        heard, down, now = self.heard, self.down, self.now
        live = 2 * opts.beat_ticks + 1
        for gid, g in list(self._awake.items()):  # quiesced groups are not even looked at
            raft = g.raft
            if raft.role is Role.FOLLOWER:
                lead = raft.leader_id
                if lead is not None and lead not in down and now - heard.get(lead, -live) <= live:
                    continue  # its leader's node is alive: no election timer to run
            # idle since the last turn (checked before the tick, whose heartbeats
            # are not activity)
            if opts.quiesce_ticks and raft.role is Role.LEADER and raft.can_quiesce(self.down):
                g.idle_ticks += 1
                if g.idle_ticks >= opts.quiesce_ticks:
                    raft.quiesce(self.down)
                    self._sleep(g)
                    g.quiescing = True
                    dirty[gid] = g
                    continue
            else:
                g.idle_ticks = 0
            if raft.tick():  # else nothing to do: no has_ready() for it this turn
                dirty[gid] = g
            if g.campaign_pending and not raft.recovering:
                g.campaign_pending = False
                if raft.role is Role.FOLLOWER and raft.leader_id is None:
                    raft.campaign()
                    dirty[gid] = g
        if opts.beat_ticks and self.now % opts.beat_ticks == 0:
            self._beat_due = True
        for peer, last in self.heard.items():
            if peer not in self.down and self.now - last > opts.node_timeout_ticks:
                self._node_down(peer)

    def node_unreachable(self, peer: str) -> None:
        """The shell knows ``peer`` is gone (its TCP connection dropped: a crashed
        process, a closed port): act on it now, not after ``node_timeout_ticks``."""
        if peer in self.heard and peer not in self.down:
            self._node_down(peer)

    def receive(self, batch: Batch) -> None:
        if batch.recipient != self.id:
            self.dropped["wrong_recipient"] += 1
            return
        peer = batch.sender
        self.heard[peer] = self.now
        self.down.discard(peer)
        for gm in batch.messages:
            g = self.groups.get(gm.group)
            if g is None:
                self.dropped["unknown_group"] += 1
                continue
            m = gm.msg
            if m.sender != peer:
                self.dropped["sender_mismatch"] += 1
                continue
            raft = g.raft
            self._dirty[gm.group] = g
            if gm.quiesce:
                raft.step(m)
                # a follower that holds everything its leader committed stops ticking
                if (
                    raft.role is Role.FOLLOWER
                    and raft.leader_id == m.sender
                    and raft.term == m.term
                    and isinstance(m, AppendEntries)
                    and raft.commit == m.leader_commit == raft.log.last_index
                ):
                    self._sleep(g)
                else:
                    self._wake(g)
                continue
            if g.quiesced:
                if isinstance(m, AppendEntriesResponse) and m.success and raft.role is Role.LEADER:
                    raft.step(m)  # the ack of the quiesce heartbeat: stay asleep
                    if raft.can_quiesce(self.down):
                        continue
                    self._wake(g)
                    continue
                self._wake(g)
            if type(m) is RequestVote and raft.leader_id == m.sender and raft.role is Role.FOLLOWER:
                # our leader campaigns: it no longer leads. Our election timer may be
                # frozen (its node is alive), so the lease would refuse it forever
                raft.forget_leader()
            raft.step(m)

    # --- the turn ---------------------------------------------------------------------

    def turn(self) -> Turn:
        """Drive every group with work: stage, one sync, complete; then the batches."""
        staged: list[tuple[Group, Ready]] = []
        dirty, self._dirty = self._dirty, {}
        for g in dirty.values():  # only a group that had input since its last Ready has one
            if g.raft.has_ready():
                self._current = g
                rd = g.driver.stage()
                assert rd is not None
                staged.append((g, rd))
        self._current = None
        out = Turn()
        if any(rd.must_sync() for _, rd in staged):
            self.storage.sync()
            out.synced = True
        for g, rd in staged:
            g.driver.durable(rd)
        for g, rd in staged:
            self._current = g
            g.driver.complete(rd)  # advancing may leave more work: the next turn's
        self._current = None
        for g, _ in staged:
            g.quiescing = False
            if g.raft.has_ready():  # advancing left more (a commit to tell, entries to apply)
                self._dirty[g.gid] = g
        self._compact_pinning()
        out.applied, self._applied = self._applied, []
        out.leaders, self._leaders = self._leaders, {}
        outbox, self._outbox = self._outbox, {}
        self._sent_since_beat.update(outbox)
        if self._beat_due:
            # a peer that got a batch since the last beat has heard from us already
            self._beat_due = False
            for peer in self.peers() - self._sent_since_beat:
                outbox[peer] = []
            self._sent_since_beat.clear()
        out.batches = [Batch(self.id, peer, tuple(msgs)) for peer, msgs in sorted(outbox.items())]
        return out

    def has_work(self) -> bool:
        return bool(self._outbox or self._beat_due or self._dirty)

    # --- internals ----------------------------------------------------------------------

    def _wake(self, g: Group) -> None:
        g.quiesced = False
        g.idle_ticks = 0
        self._awake[g.gid] = g

    def _sleep(self, g: Group) -> None:
        g.quiesced = True
        g.idle_ticks = 0
        self._awake.pop(g.gid, None)

    def _node_down(self, peer: str) -> None:
        """``peer`` is silent: the groups it led here wake and forget it, and one
        live voter per group, the same on every node (``successor``), campaigns at
        once instead of after an election timeout."""
        self.down.add(peer)
        self.node_downs += 1
        for g in self.groups.values():
            raft = g.raft
            if raft.role is Role.FOLLOWER and raft.leader_id == peer:
                self._wake(g)
                raft.forget_leader()
                self._dirty[g.gid] = g
                if successor(g.gid, raft.config.voters, self.down) == self.id:
                    raft.campaign()

    def _send(self, m: Message) -> None:
        g = self._current
        assert g is not None
        quiesce = g.quiescing and isinstance(m, AppendEntries) and not m.entries
        self._outbox.setdefault(m.recipient, []).append(GroupMessage(g.gid, m, quiesce))

    def _apply_for(self, g: Group) -> Callable[[Ready], None]:
        def apply(rd: Ready) -> None:
            if rd.snapshot is not None:
                g.machine.restore(rd.snapshot.data)
            for e in rd.committed_entries:
                if e.kind is EntryKind.NORMAL and e.data:
                    result = g.machine.apply(e.index, e.data)
                else:
                    result = None
                    if e.kind is EntryKind.CONFIG:  # a membership change: watch new nodes
                        self._peers = None
                        for peer in g.raft.config.members() - {self.id}:
                            self.heard.setdefault(peer, self.now)
                self._applied.append(Applied(g.gid, e.index, e.term, result))
            if rd.soft_state is not None:
                self._leaders[g.gid] = rd.soft_state.leader_id

        return apply

    def _compact_pinning(self) -> None:
        """A shared WAL past its segment bound names the groups whose oldest live
        entries keep its oldest segment (``SharedWal.groups_pinning``, too big to be
        copied forward): each takes a snapshot at what it applied, which frees it.
        So a busy group needs no ``snapshot_interval`` for the WAL to stay bounded."""
        pinning = getattr(self.storage, "groups_pinning", None)
        if pinning is None:
            return
        for gid in pinning():
            g = self.groups.get(gid)
            if g is None or g.raft.applied <= g.raft.log.offset_index:
                continue
            raft = g.raft
            meta = raft.snapshot_meta(raft.applied)
            g.storage.compact(Snapshot(meta, g.machine.snapshot()))
            raft.compact(meta.index)

    def _after_for(self, g: Group) -> Callable[[Ready], None]:
        interval = self.opts.snapshot_interval

        def after(rd: Ready) -> None:
            raft = g.raft
            if interval and raft.applied - raft.log.offset_index >= interval:
                meta = raft.snapshot_meta(raft.applied)
                g.storage.compact(Snapshot(meta, g.machine.snapshot()))
                raft.compact(meta.index)

        return after

    def status(self) -> dict[str, object]:
        roles = Counter(g.raft.role.value for g in self.groups.values())
        return {
            "id": self.id,
            "groups": len(self.groups),
            "roles": dict(roles),
            "quiesced": sum(g.quiesced for g in self.groups.values()),
            "down": sorted(self.down),
            "node_downs": self.node_downs,
            "dropped": dict(self.dropped),
        }


def successor(gid: int, voters: frozenset[str], down: set[str]) -> str | None:
    """The voter of group ``gid`` that campaigns first when its leader's node is down:
    the live voters in id order, picked by group id, so the groups a dead node led
    spread over the survivors and no two of a group's survivors race."""
    live = sorted(voters - down)
    return live[gid % len(live)] if live else None


def storage_stage(storage: StagedStorage) -> Callable[[Ready], None]:
    def persist(rd: Ready) -> None:
        storage.stage(rd.hard_state, rd.entries, rd.snapshot)

    return persist
