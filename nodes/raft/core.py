"""The Raft consensus core: a deterministic state machine with no I/O.

Everything that affects a node's Raft state lives here (h11's ``_state.py``
rule). Inputs: ``tick()``, ``step(message)``, ``propose(data)``,
``read_index(context)``, ``propose_config_change(change)``,
``transfer_leadership(to)``, ``compact(index)``. Output: ``ready()`` returns a
``Ready`` whose contract (persist -> send -> apply -> advance) is documented in
``nodes.raft.ready``. Time enters only as ticks; randomness only through the
``random.Random`` passed in, so one seed replays a run exactly.

Section references are to the Raft paper ("paper") and Ongaro's thesis.

Protocol-aware recovery (Alagappan et al., FAST'18; TigerBeetle's storage fault
model). Raft assumes a node keeps what it made durable. When a node's storage
cannot prove that (an empty directory of a voter that may have voted before, a
damaged record, a log shorter than what the node acknowledged, a lost hard
state), the storage loads with ``HardState.recovering`` set and the rule is:

1. A recovering node grants no vote and no pre-vote, never campaigns (nor on
   TimeoutNow), and ``promised`` (the highest index it acknowledged) is kept
   durable from now on like any node's.
2. Term first. It waits ``election_ticks_max`` ticks (an election that its old
   self voted in has then ended: won, so that its voters hold the term, or
   abandoned; and messages queued for it while it was down, which may carry a
   commit index older than what its lost self helped commit, have drained: they
   are ignored, see below), then asks every other voter for its term with a probe: a
   pre-vote request for term 0, which every node rejects with its own term. Until
   a quorum of the voters other than itself has answered, it answers no leader
   (it only adopts higher terms). A vote or acknowledgement that helped a leader
   win or an entry commit was given together with a quorum that includes it; any
   quorum of the *others* meets that quorum in some other node, so the highest
   term answered is at least every term in which its lost promises mattered, and
   no stale leader (lower term) can repair it.
3. Fresh cluster: when every answer is term 0 and its log is empty, no node of
   that quorum ever voted, so the cluster never elected a leader nor committed
   anything: nothing can have been lost and it stops recovering at once. This is
   how brand-new (empty) founders bootstrap a cluster. Each needs a quorum of the
   *other* founders to answer (three of three, four of five): two empty founders of
   three cannot tell a new cluster from one that the third and the wiped self of
   either had been running, so they wait for the third.
4. Repair. Otherwise it follows a leader of at least that term as any follower
   does (its acknowledgements count: they speak of entries it now holds durably,
   from a leader that holds every committed entry), and it is repaired once its
   log matches the leader's up to the leader's commit index *and* that index is an
   entry of the leader's own term (``leader_commit`` of one AppendEntries): that
   entry follows every entry the leader had when elected, hence every entry
   committed before (leader completeness), and the leader's commit index covers
   every entry it committed itself. It then records
   the leader as its vote in that term (its old self can only have helped elect
   that leader in it) and votes normally from the next term on.

The rule assumes storage faults on a minority of the voters: answers from other
recovering nodes are counted as they come (a wiped node answers term 0), so two
wiped voters of a five-node cluster whose three others had never heard of any term
could mistake it for a fresh one. A cluster of one or two voters has no quorum of
others to ask; there a recovering node simply stops recovering (with two voters
every quorum needs both, so its shorter log cannot elect anyone on its own). The
voters it asks are those of the newest configuration its surviving log holds: if
the damage cut membership changes out of it, or servers are removed while it
recovers, it may wait for answers from servers that are gone (docs/MULTIHOST.md
says what to do then).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from random import Random

from .errors import (
    CompactedError,
    ConfigChangeInProgress,
    InvalidConfigChange,
    NotLeader,
    TransferInProgress,
)
from .log import RaftLog
from .messages import (
    AppendEntries,
    AppendEntriesResponse,
    ChangeKind,
    ClusterConfig,
    ConfigChange,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
    make_entry,
)
from .progress import Progress, ProgressState
from .ready import ReadState, Ready, Role, SoftState
from .storage import Storage


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Timing is in ticks: with a 10 ms tick the defaults are a 50 ms heartbeat
    and a 150-300 ms election timeout (paper 5.6, Figure 16)."""

    heartbeat_ticks: int = 5
    election_ticks_min: int = 15
    election_ticks_max: int = 30  # the timeout is drawn from [min, max) each term
    max_batch_bytes: int = 1 << 20  # bound on one AppendEntries
    max_inflight: int = 64  # pipelined AppendEntries per follower
    max_apply_bytes: int = 8 << 20  # bound on committed entries per Ready
    snapshot_chunk_bytes: int = 256 << 10
    pre_vote: bool = True  # thesis 9.6
    check_quorum: bool = True  # thesis 6.2
    auto_promote: bool = True  # learners become voters once caught up (thesis 4.2.1)
    # How followers learn a new commit index when no entries are going their way:
    # False sends an empty AppendEntries at once (every commit costs each follower a
    # message and an answer); True leaves it to the next AppendEntries or, at the
    # latest, the next tick. A lone writer's next entry carries it anyway, so this
    # takes two messages per follower off every commit's critical path; followers
    # apply (and publish) up to one tick later when the cluster goes quiet.
    lazy_commit_notify: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_ticks < self.election_ticks_min < self.election_ticks_max:
            raise ValueError(
                "need 0 < heartbeat_ticks < election_ticks_min < election_ticks_max, got "
                f"{self.heartbeat_ticks}, {self.election_ticks_min}, {self.election_ticks_max}"
            )


def encode_config_change(change: ConfigChange) -> bytes:
    """``kind:node_id``; a bootstrap is ``3:`` + JSON ``[[voters...], [learners...]]``."""
    if change.kind is ChangeKind.BOOTSTRAP:
        cfg = change.config or ClusterConfig()
        body = json.dumps([sorted(cfg.voters), sorted(cfg.learners)], separators=(",", ":"))
        return f"{int(change.kind)}:{body}".encode()
    return f"{int(change.kind)}:{change.node_id}".encode()


def decode_config_change(data: bytes) -> ConfigChange:
    """Raises ValueError (or UnicodeDecodeError) on anything malformed."""
    kind, _, rest = data.decode().partition(":")
    change_kind = ChangeKind(int(kind))
    if change_kind is ChangeKind.BOOTSTRAP:
        try:
            voters, learners = json.loads(rest)
        except (ValueError, TypeError) as e:
            raise ValueError(f"malformed bootstrap configuration {rest[:80]!r}") from e
        ids = [*voters, *learners] if isinstance(voters, list) and isinstance(learners, list) else []
        if not voters or not all(isinstance(x, str) and x for x in ids):
            raise ValueError(f"malformed bootstrap configuration {rest[:80]!r}")
        return ConfigChange(change_kind, config=ClusterConfig(frozenset(voters), frozenset(learners)))
    if not rest:
        raise ValueError("a membership change needs a node id")
    return ConfigChange(change_kind, rest)


def apply_config_change(config: ClusterConfig, change: ConfigChange) -> ClusterConfig:
    if change.kind is ChangeKind.BOOTSTRAP:
        assert change.config is not None
        return change.config
    voters, learners = set(config.voters), set(config.learners)
    if change.kind is ChangeKind.ADD_LEARNER:
        learners.add(change.node_id)
    elif change.kind is ChangeKind.PROMOTE:
        learners.discard(change.node_id)
        voters.add(change.node_id)
    else:
        voters.discard(change.node_id)
        learners.discard(change.node_id)
    return ClusterConfig(frozenset(voters), frozenset(learners))


class RaftNode:
    def __init__(
        self,
        node_id: str,
        storage: Storage,
        rng: Random,
        config: RaftConfig | None = None,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.rng = rng
        self.cfg = config or RaftConfig()

        persisted = storage.load()
        snap = persisted.snapshot
        self.log = RaftLog(snap.meta.index, snap.meta.term) if snap else RaftLog()
        self.log.entries = list(persisted.entries)
        self.log.stable_index = self.log.last_index
        # (index, config) for the snapshot's config and every config entry after it
        base = snap.meta.config if snap else persisted.initial_config
        self._configs: list[tuple[int, ClusterConfig]] = [(self.log.offset_index, base)]
        for e in self.log.entries:
            if e.kind is EntryKind.CONFIG:
                self._push_config(e)

        hs = persisted.hard_state
        self.term = hs.term
        self.vote = hs.vote
        self.commit = min(max(hs.commit, self.log.offset_index), self.log.last_index)
        self.applied = self.log.offset_index  # last index handed out to apply
        self._persisted_hs = hs
        # protocol-aware recovery (module docstring). Invariant: promised <= last_index
        # outside a Ready's persist step (acknowledged entries are in the log).
        self.promised = min(hs.promised, self.log.last_index)
        self.recovering = hs.recovering
        self.term_confirmed = False  # recovering: a quorum of the others told us their term
        self.recovery_elapsed = 0  # ticks since start while recovering
        self._term_answers: dict[str, int] = {}

        self.role = Role.FOLLOWER
        self.leader_id: str | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self._reset_election_timeout()
        self.progress: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.lead_transferee: str | None = None
        self.transfer_elapsed = 0
        self.pending_conf_index = 0
        self.seq = 0  # leader's AppendEntries counter, echoed for ReadIndex
        self._reads_waiting_commit: list[object] = []
        self._pending_reads: list[tuple[object, int, int]] = []  # (context, index, seq)

        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._aborted_reads: list[object] = []
        self._pending_snapshot: Snapshot | None = None
        self._incoming_snapshot: tuple[SnapshotMeta, bytearray] | None = None
        self._needs_broadcast = False
        self._read_heartbeat_due = False
        self._soft = SoftState(self.role, self.leader_id, self.term)
        self._ready_outstanding = False
        self.removed = False  # this node is no longer a member (it stops campaigning)

    # --- configuration -----------------------------------------------------------

    @property
    def config(self) -> ClusterConfig:
        return self._configs[-1][1]

    def _push_config(self, entry: Entry) -> None:
        change = decode_config_change(entry.data)
        self._configs.append((entry.index, apply_config_change(self.config, change)))

    def _truncate_configs(self, from_index: int) -> None:
        while len(self._configs) > 1 and self._configs[-1][0] >= from_index:
            self._configs.pop()

    def config_at(self, index: int) -> ClusterConfig:
        cfg = self._configs[0][1]
        for at, c in self._configs:
            if at <= index:
                cfg = c
        return cfg

    def _quorum(self) -> int:
        return len(self.config.voters) // 2 + 1

    def promotable(self) -> bool:
        return self.id in self.config.voters and not self.recovering

    # --- public inputs -------------------------------------------------------------

    def tick(self) -> bool:
        """One unit of time. Returns True if the tick left work for a Ready (a
        message, an entry, a change of role or term): a driver of many groups
        need not ask ``has_ready()`` of the groups whose tick returned False."""
        self._check_no_ready()
        role, term, sent, recovering = self.role, self.term, len(self._msgs), self.recovering
        if self.recovering:
            self._tick_recovering()
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self.election_elapsed += 1
            if self.election_elapsed >= self.randomized_election_timeout and self.promotable():
                self.election_elapsed = 0
                self._campaign(pre_vote=self.cfg.pre_vote)
        return (len(self._msgs) != sent or self.role is not role or self.term != term
                or self.recovering is not recovering or self._needs_broadcast
                or self.log.stable_index < self.log.last_index)

    def propose(self, data: bytes) -> int:
        """Append a command to the leader's log; returns its index. Raises NotLeader
        or TransferInProgress: the command was not taken and may be retried."""
        self._check_no_ready()
        self._require_leader()
        return self._append_own(data, EntryKind.NORMAL)

    def propose_config_change(self, change: ConfigChange) -> int:
        """One server at a time (thesis 4.1). Raises ConfigChangeInProgress while an
        earlier change (or the leader's first entry of its term) is uncommitted."""
        self._check_no_ready()
        self._require_leader()
        if self.pending_conf_index > self.commit:
            raise ConfigChangeInProgress(self.pending_conf_index)
        cfg = self.config
        node = change.node_id
        if change.kind is ChangeKind.ADD_LEARNER and node in cfg.members():
            raise InvalidConfigChange(f"{node} is already a member of the cluster")
        if change.kind is ChangeKind.PROMOTE and node not in cfg.learners:
            raise InvalidConfigChange(f"{node} is not a learner; add it first")
        if change.kind is ChangeKind.REMOVE:
            if node not in cfg.members():
                raise InvalidConfigChange(f"{node} is not a member of the cluster")
            if cfg.voters == {node}:
                raise InvalidConfigChange(f"cannot remove {node}: it is the last voter")
        index = self._append_own(encode_config_change(change), EntryKind.CONFIG)
        self.pending_conf_index = index
        return index

    def read_index(self, context: object) -> None:
        """Thesis 6.4: request a linearizable read. A ReadState with ``context`` comes
        out of a later Ready once leadership is confirmed by a quorum."""
        self._check_no_ready()
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.leader_id)
        if not self._committed_in_current_term():
            self._reads_waiting_commit.append(context)
            return
        self._register_read(context)

    def campaign(self) -> None:
        """Start an election now, as if the election timer had run out (etcd's
        ``Campaign``): the node host uses it to place a group's first leader."""
        self._check_no_ready()
        if self.role is not Role.LEADER and self.promotable():
            self.election_elapsed = 0
            self._campaign(pre_vote=self.cfg.pre_vote)

    def forget_leader(self) -> None:
        """A follower drops the leader it knows (etcd's ``ForgetLeader``): the node host
        calls it when the leader's node stopped answering. It then grants pre-votes at
        once (no leader lease to protect) instead of one election timeout later; its
        term and vote are untouched, so this is always safe."""
        self._check_no_ready()
        if self.role is Role.FOLLOWER:
            self.leader_id = None

    def can_quiesce(self, down: frozenset[str] | set[str] = frozenset()) -> bool:
        """A leader whose group has nothing in flight: every entry committed, applied
        and durable, every member's log matches it up to the last entry (the quiesce
        heartbeat tells them the commit index), no read, transfer or membership step
        is pending. Its group
        may stop ticking (the node host's quiescence) until a proposal or a message
        comes in; nothing it would do on a tick is needed. Members in ``down`` (their
        node is known to be down) are not waited for: a quorum of the others is
        enough, and a returning member wakes the group with its first message."""
        if self.role is not Role.LEADER or self.lead_transferee is not None:
            return False
        last = self.log.last_index
        if not (self.commit == last == self.applied == self.log.stable_index):
            return False
        if (self._msgs or self._needs_broadcast or self._pending_reads
                or self._reads_waiting_commit or self._read_states or self._aborted_reads):
            return False
        if not self._committed_in_current_term() or (self.cfg.auto_promote and self.config.learners):
            return False
        for peer, pr in self.progress.items():
            if peer != self.id and pr.match != last and peer not in down:
                return False
        return True

    def quiesce(self, down: frozenset[str] | set[str] = frozenset()) -> None:
        """Send every member the heartbeat the node host marks as the group's last one
        before it stops ticking (``can_quiesce(down)`` must hold)."""
        self._check_no_ready()
        assert self.can_quiesce(down), "quiesce() while the group is not idle"
        self.heartbeat_elapsed = 0
        for peer in self._peers():
            self._send_heartbeat(peer)

    def transfer_leadership(self, to: str) -> None:
        """Thesis 3.10: bring ``to`` up to date, then tell it to campaign now."""
        self._check_no_ready()
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.leader_id)
        if to == self.id:
            return
        if to not in self.config.voters:
            raise InvalidConfigChange(f"cannot transfer leadership to {to}: it is not a voter")
        self.lead_transferee = to
        self.transfer_elapsed = 0
        pr = self.progress[to]
        if pr.match == self.log.last_index:
            self._send(TimeoutNow(self.term, self.id, to))
        else:
            self._send_append(to)

    def snapshot_meta(self, index: int) -> SnapshotMeta:
        """Where a snapshot taken after applying ``index`` sits in the log."""
        assert self.log.offset_index <= index <= self.applied, (index, self.applied)
        term = self.log.term(index)
        assert term is not None
        return SnapshotMeta(index, term, self.config_at(index))

    def compact(self, index: int) -> None:
        """The driver saved a snapshot at ``index``: drop the log prefix it covers."""
        self._check_no_ready()
        if index <= self.log.offset_index:
            return
        assert index <= self.applied, (index, self.applied)
        keep = [(i, c) for i, c in self._configs if i > index]
        self._configs = [(index, self.config_at(index)), *keep]
        self.log.compact(index)

    def step(self, m: Message) -> None:
        self._check_no_ready()
        if m.recipient != self.id:
            return
        if self.recovering and self._step_recovering(m):
            return
        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = (
                    (self.cfg.check_quorum or m.pre_vote)
                    and self.leader_id is not None
                    and self.election_elapsed < self.cfg.election_ticks_min
                )
                if in_lease and not m.transfer:
                    return  # thesis 4.2.3: a server that hears from a leader ignores votes
                if m.pre_vote:
                    self._handle_vote(m)
                    return
            if isinstance(m, RequestVoteResponse) and m.pre_vote:
                if m.granted:
                    self._handle_vote_response(m)
                    return
                # a rejection carries the responder's (higher) real term: adopt it
            leader = m.sender if isinstance(m, AppendEntries | InstallSnapshot | TimeoutNow) else None
            self._become_follower(m.term, leader)
        elif m.term < self.term:
            if isinstance(m, AppendEntries | InstallSnapshot):
                # tell a stale leader the newer term, so it steps down (paper 5.1)
                self._send(AppendEntriesResponse(self.term, self.id, m.sender, False))
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._send(RequestVoteResponse(self.term, self.id, m.sender, False, True))
            return

        if isinstance(m, RequestVote):
            self._handle_vote(m)
        elif isinstance(m, RequestVoteResponse):
            self._handle_vote_response(m)
        elif isinstance(m, AppendEntries):
            self._handle_append(m)
        elif isinstance(m, AppendEntriesResponse):
            self._handle_append_response(m)
        elif isinstance(m, InstallSnapshot):
            self._handle_snapshot(m)
        elif isinstance(m, InstallSnapshotResponse):
            self._handle_snapshot_response(m)
        elif isinstance(m, TimeoutNow):
            if self.promotable() and self.role is not Role.LEADER:
                self._campaign(pre_vote=False, transfer=True)

    # --- the Ready cycle -------------------------------------------------------------

    def has_ready(self) -> bool:
        # called on every turn of the driver's loop: the hard and soft states are
        # compared field by field rather than built and compared as dataclasses
        hs, soft = self._persisted_hs, self._soft
        return bool(
            self._msgs
            or (self._needs_broadcast and self.role is Role.LEADER)
            or self.log.stable_index < self.log.last_index
            or self.applied < self.commit
            or self._read_states
            or self._aborted_reads
            or self._pending_snapshot is not None
            or self.commit != hs.commit
            or self.promised != hs.promised
            or self.term != hs.term
            or self.vote != hs.vote
            or self.recovering != hs.recovering
            or self.role is not soft.role
            or self.leader_id != soft.leader_id
            or self.term != soft.term
        )

    def ready(self) -> Ready:
        self._check_no_ready()
        if self._needs_broadcast and self.role is Role.LEADER:
            self._broadcast_append()
        self._needs_broadcast = False
        if self.role is Role.LEADER:
            # the leader counts its own copy toward a commit once this Ready is saved
            self.promised = max(self.promised, self.log.last_index)
        hs = self._hard_state()
        soft = self._current_soft()
        committed: list[Entry] = []
        if self.applied < self.commit:
            committed = self.log.slice(
                self.applied + 1, self.commit + 1, self.cfg.max_apply_bytes
            )
        early: list[Message] = []
        msgs = self._msgs
        if self.role is Role.LEADER and (hs.term, hs.vote) == (
            self._persisted_hs.term, self._persisted_hs.vote
        ):
            # thesis 10.2.1: a leader may replicate in parallel with its own disk
            # write; it counts itself toward a commit only once persisted (advance)
            early = [m for m in msgs if isinstance(m, AppendEntries | InstallSnapshot)]
            if early:
                msgs = [m for m in msgs if not isinstance(m, AppendEntries | InstallSnapshot)]
        rd = Ready(
            hard_state=hs if hs != self._persisted_hs else None,
            entries=self.log.unstable(),
            snapshot=self._pending_snapshot,
            early_messages=early,
            messages=msgs,
            committed_entries=committed,
            read_states=self._read_states,
            aborted_reads=self._aborted_reads,
            soft_state=soft if soft != self._soft else None,
        )
        self._msgs, self._read_states, self._aborted_reads = [], [], []
        self._ready_outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver has persisted, sent and applied ``rd``."""
        assert self._ready_outstanding, "advance() without a ready()"
        self._ready_outstanding = False
        if rd.hard_state is not None:
            self._persisted_hs = rd.hard_state
        if rd.soft_state is not None:
            self._soft = rd.soft_state
        if rd.snapshot is not None:
            self._pending_snapshot = None
        if rd.entries:
            self.log.stable_to(rd.entries[-1].index)
        if rd.committed_entries:
            self.applied = max(self.applied, rd.committed_entries[-1].index)
        if self.role is Role.LEADER:
            pr = self.progress.get(self.id)
            if pr is not None and pr.update_match(self.log.stable_index):
                self._maybe_commit()
            self._maybe_step_down_after_removal()

    @property
    def persisted_hard_state(self) -> HardState:
        """The hard state of the last Ready the driver advanced (or loaded)."""
        return self._persisted_hs

    def _check_no_ready(self) -> None:
        assert not self._ready_outstanding, "the driver must advance() a Ready before new input"

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit, self.promised, self.recovering)

    def _current_soft(self) -> SoftState:
        return SoftState(self.role, self.leader_id, self.term)

    # --- roles -------------------------------------------------------------------

    def _reset_election_timeout(self) -> None:
        self.randomized_election_timeout = self.rng.randrange(
            self.cfg.election_ticks_min, self.cfg.election_ticks_max
        )

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader_id = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_election_timeout()
        self.votes = {}
        self.lead_transferee = None
        self._abort_reads()

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader_id = leader
        self.progress = {}

    def _campaign(self, pre_vote: bool, transfer: bool = False) -> None:
        if pre_vote:
            # thesis 9.6: ask first, without disturbing anyone's term
            self._reset(self.term)
            self.role = Role.PRE_CANDIDATE
            term = self.term + 1
        else:
            self._reset(self.term + 1)
            self.role = Role.CANDIDATE
            self.vote = self.id
            term = self.term
        self.progress = {}
        self.votes = {self.id: True}
        if self._tally() == "won":
            self._win_election(pre_vote)
            return
        for peer in sorted(self.config.voters):
            if peer != self.id:
                self._send(
                    RequestVote(
                        term, self.id, peer, self.log.last_index, self.log.last_term,
                        pre_vote=pre_vote, transfer=transfer,
                    )
                )

    def _win_election(self, pre_vote: bool) -> None:
        if pre_vote:
            self._campaign(pre_vote=False)
        else:
            self._become_leader()

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader_id = self.id
        last = self.log.last_index
        self.progress = {}
        for peer in self.config.members() | {self.id}:
            self.progress[peer] = Progress(match=0, next=last + 1)
        self.progress[self.id].match = self.log.stable_index
        self.progress[self.id].recent_active = True
        # paper 8 / thesis 6.4: an entry of the new term (a no-op) commits the
        # previous terms' entries; and no membership change until it is committed
        # (the thesis 4.1 erratum fix).
        if self.log.offset_index == 0 and len(self._configs) == 1:
            # thesis 4.4: the configuration this log started from lives only in the
            # founders' storage. Its first entry of the term writes it down instead of
            # the no-op, so a server that replays the log from index 1 knows every
            # voter (else, once promoted, it could think itself the only one).
            bootstrap = ConfigChange(ChangeKind.BOOTSTRAP, config=self.config)
            first = self._append_entry(encode_config_change(bootstrap), EntryKind.CONFIG)
        else:
            first = self._append_entry(b"", EntryKind.NORMAL)
        self.pending_conf_index = first
        self._needs_broadcast = True

    def _tally(self) -> str:
        voters = self.config.voters
        granted = sum(1 for v, ok in self.votes.items() if ok and v in voters)
        rejected = sum(1 for v, ok in self.votes.items() if not ok and v in voters)
        if granted >= self._quorum():
            return "won"
        if rejected >= self._quorum():
            return "lost"
        return "pending"

    # --- protocol-aware recovery (module docstring) ------------------------------

    def _others(self) -> list[str]:
        return sorted(self.config.voters - {self.id})

    def _tick_recovering(self) -> None:
        if self.term_confirmed:
            return
        self.recovery_elapsed += 1
        if len(self._others()) < self._quorum():
            self.recovering = False  # one or two voters: nobody to ask (docstring)
            return
        wait = self.cfg.election_ticks_max
        if self.recovery_elapsed >= wait and (self.recovery_elapsed - wait) % self.cfg.heartbeat_ticks == 0:
            for peer in self._others():
                if peer not in self._term_answers:
                    # a pre-vote for term 0: every node rejects it with its own term
                    self._send(RequestVote(0, self.id, peer, 0, 0, pre_vote=True))

    def _step_recovering(self, m: Message) -> bool:
        """Handle ``m`` the recovering way; True if it needs nothing more."""
        if isinstance(m, RequestVoteResponse) and m.pre_vote:
            # we never pre-vote while recovering: this answers a term probe
            if not self.term_confirmed and self.recovery_elapsed >= self.cfg.election_ticks_max:
                self._term_answers[m.sender] = m.term
                if m.term > self.term:
                    self._become_follower(m.term, None)
                self._maybe_confirm_term()
            return True
        if isinstance(m, TimeoutNow):
            return True
        if not self.term_confirmed and isinstance(m, AppendEntries | InstallSnapshot):
            # answer no leader before we know the cluster's term: it may be a stale one
            if m.term > self.term:
                self._become_follower(m.term, None)
            return True
        return False

    def _maybe_confirm_term(self) -> None:
        answered = [p for p in self._others() if p in self._term_answers]
        if len(answered) < self._quorum():
            return
        self.term_confirmed = True
        if self.term == 0 and self.log.last_index == 0:
            # a fresh cluster: nothing was ever promised. Give the other founders an
            # election timeout to finish their own probes before campaigning: one that
            # hears of a term first cannot tell a new cluster from a wiped directory
            self.recovering = False
            self.election_elapsed = 0

    def _own_term_at(self, index: int) -> bool:
        try:
            return self.log.term(index) == self.term
        except CompactedError:
            return False

    def _repaired(self, leader: str) -> None:
        self.recovering = False
        if self.vote is None:
            self.vote = leader

    # --- votes -------------------------------------------------------------------

    def _handle_vote(self, m: RequestVote) -> None:
        if m.pre_vote:
            # a pre-vote is granted for a future term without recording anything
            can_vote = m.term > self.term
        else:
            can_vote = self.vote == m.sender or (self.vote is None and self.leader_id is None)
        granted = (
            can_vote
            and not self.recovering
            and self.log.is_up_to_date(m.last_log_index, m.last_log_term)
        )
        if granted and not m.pre_vote:
            self.vote = m.sender
            self.election_elapsed = 0
        term = m.term if (granted and m.pre_vote) else self.term
        self._send(RequestVoteResponse(term, self.id, m.sender, granted, m.pre_vote))

    def _handle_vote_response(self, m: RequestVoteResponse) -> None:
        expecting = Role.PRE_CANDIDATE if m.pre_vote else Role.CANDIDATE
        if self.role is not expecting:
            return
        self.votes.setdefault(m.sender, m.granted)
        outcome = self._tally()
        if outcome == "won":
            self._win_election(m.pre_vote)
        elif outcome == "lost":
            self._become_follower(self.term, None)

    # --- replication: follower side --------------------------------------------------

    def _handle_append(self, m: AppendEntries) -> None:
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, m.sender)
        self.election_elapsed = 0
        self.leader_id = m.sender
        reply = self._accept_append(m)
        self._send(reply)

    def _accept_append(self, m: AppendEntries) -> AppendEntriesResponse:
        prev, prev_term, entries = m.prev_log_index, m.prev_log_term, m.entries
        if prev < self.commit:
            # everything up to our commit point matches the leader (paper 5.4.3)
            entries = entries[self.commit - prev :]
            prev = self.commit
        elif not self.log.match_term(prev, prev_term):
            hint = self.log.last_index_with_term_at_most(prev, prev_term)
            return AppendEntriesResponse(
                self.term, self.id, m.sender, False, match_index=prev,
                hint_index=hint, hint_term=self.log.term(hint) or 0, seq=m.seq,
            )
        for k, e in enumerate(entries):
            if self.log.term(e.index) != e.term:
                new = list(entries[k:])
                assert new[0].index > self.commit, "a committed entry would be overwritten"
                self._truncate_configs(new[0].index)
                # the replaced entries were never committed: the promise about them is void
                self.promised = min(self.promised, new[0].index - 1)
                self.log.append(new)
                for ce in new:
                    if ce.kind is EntryKind.CONFIG:
                        self._push_config(ce)
                break
        last_new = prev + len(entries)
        self.commit = max(self.commit, min(m.leader_commit, last_new))
        self.promised = max(self.promised, last_new)
        if self.recovering and m.leader_commit <= last_new and self._own_term_at(m.leader_commit):
            self._repaired(m.sender)
        return AppendEntriesResponse(
            self.term, self.id, m.sender, True, match_index=last_new, seq=m.seq
        )

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, m.sender)
        self.election_elapsed = 0
        self.leader_id = m.sender
        meta = m.meta
        if meta.index <= self.commit:
            self._send(InstallSnapshotResponse(
                self.term, self.id, m.sender, meta.index, m.offset + len(m.data), True, m.seq))
            return
        buf = self._incoming_snapshot
        if m.offset == 0 or buf is None or buf[0] != meta:
            buf = (meta, bytearray())
            self._incoming_snapshot = buf
        if m.offset == len(buf[1]):
            buf[1].extend(m.data)
        if not (m.done and m.offset + len(m.data) == len(buf[1])):
            self._send(InstallSnapshotResponse(
                self.term, self.id, m.sender, meta.index, len(buf[1]), False, m.seq))
            return
        # paper 7: if our log has the snapshot's last entry, keep what follows it.
        # This is a safety rule, not an optimisation: we may have acknowledged
        # those entries already (a delayed snapshot must not erase them).
        self._incoming_snapshot = None
        self.log.restore(meta.index, meta.term, keep_suffix=True)
        self.promised = max(min(self.promised, self.log.last_index), meta.index)
        self._configs = [(meta.index, meta.config)]
        for e in self.log.entries:
            if e.kind is EntryKind.CONFIG:
                self._push_config(e)
        self.commit = meta.index
        self.applied = meta.index
        self._pending_snapshot = Snapshot(meta, bytes(buf[1]))
        self._send(InstallSnapshotResponse(
            self.term, self.id, m.sender, meta.index, len(buf[1]), True, m.seq))

    # --- replication: leader side ------------------------------------------------------

    def _require_leader(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.id, self.leader_id)
        if self.lead_transferee is not None:
            raise TransferInProgress(self.lead_transferee)

    def _append_own(self, data: bytes, kind: EntryKind) -> int:
        index = self._append_entry(data, kind)
        self._needs_broadcast = True
        return index

    def _append_entry(self, data: bytes, kind: EntryKind) -> int:
        entry = make_entry(self.log.last_index + 1, self.term, data, kind)
        self.log.append([entry])
        if kind is EntryKind.CONFIG:
            self._push_config(entry)
            self._sync_progress_with_config()
        return entry.index

    def _sync_progress_with_config(self) -> None:
        members = self.config.members()
        for peer in members:
            if peer not in self.progress:
                self.progress[peer] = Progress(match=0, next=self.log.last_index + 1)
        for peer in list(self.progress):
            if peer not in members and peer != self.id:
                del self.progress[peer]

    def _peers(self) -> list[str]:
        return sorted(p for p in self.progress if p != self.id)

    def _broadcast_append(self) -> None:
        if self._read_heartbeat_due:
            self._read_heartbeat_due = False
            self.seq += 1
            for peer in self._peers():
                self._send_heartbeat(peer)
        for peer in self._peers():
            pr = self.progress[peer]
            if not self._send_appends(peer) and pr.commit_sent < min(pr.match, self.commit):
                self._send_heartbeat(peer)  # nothing new to send: carry the commit index

    def _notify_commit(self) -> None:
        """Tell each follower a commit index it has not been sent (lazy mode's tick)."""
        for peer in self._peers():
            pr = self.progress[peer]
            if pr.commit_sent < min(pr.match, self.commit) and not self._send_appends(peer):
                self._send_heartbeat(peer)

    def _send_appends(self, peer: str) -> bool:
        """Send as many AppendEntries as flow control allows (a backlog larger than
        max_batch_bytes is pipelined up to max_inflight messages, not sent one batch
        per round trip). True if anything was sent."""
        sent = False
        while self._send_append(peer):
            sent = True
            if self.progress[peer].state is not ProgressState.REPLICATE:
                break  # probe and snapshot states send one message at a time
        return sent

    def _send_append(self, peer: str, allow_empty: bool = False) -> bool:
        pr = self.progress[peer]
        if pr.paused(self.cfg.max_inflight) and not (allow_empty and pr.state is ProgressState.PROBE):
            return False
        prev = pr.next - 1
        try:
            prev_term = self.log.term(prev)
            entries = self.log.slice(pr.next, self.log.last_index + 1, self.cfg.max_batch_bytes)
        except CompactedError:
            return self._send_snapshot(peer)
        assert prev_term is not None, (peer, prev, self.log.last_index)
        if not entries and not allow_empty:
            return False
        self._send(
            AppendEntries(
                self.term, self.id, peer, prev, prev_term, tuple(entries), self.commit, self.seq
            )
        )
        pr.commit_sent = self.commit
        if entries:
            last = entries[-1].index
            if pr.state is ProgressState.REPLICATE:
                pr.next = last + 1
                pr.inflight.append(last)
        if pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_heartbeat(self, peer: str) -> None:
        pr = self.progress[peer]
        if pr.state is ProgressState.SNAPSHOT:
            self._send_snapshot_chunk(peer)  # the resend doubles as the heartbeat
            return
        if pr.state is ProgressState.PROBE:
            pr.probe_sent = False
            self._send_append(peer, allow_empty=True)
            return
        try:
            prev_term = self.log.term(pr.match)
        except CompactedError:
            pr.become_probe()
            self._send_append(peer, allow_empty=True)
            return
        assert prev_term is not None
        pr.commit_sent = min(pr.match, self.commit)
        self._send(
            AppendEntries(
                self.term, self.id, peer, pr.match, prev_term, (), pr.commit_sent, self.seq
            )
        )

    def _send_snapshot(self, peer: str) -> bool:
        snap = self.storage.snapshot()
        if snap is None:
            raise AssertionError(f"log compacted below {self.log.offset_index} without a snapshot")
        self.progress[peer].become_snapshot(snap)
        self._send_snapshot_chunk(peer)
        return True

    def _send_snapshot_chunk(self, peer: str) -> None:
        pr = self.progress[peer]
        snap = pr.snapshot
        assert snap is not None
        off = pr.snapshot_offset
        chunk = snap.data[off : off + self.cfg.snapshot_chunk_bytes]
        done = off + len(chunk) >= len(snap.data)
        self._send(InstallSnapshot(self.term, self.id, peer, snap.meta, off, chunk, done, self.seq))

    def _responder(self, m: AppendEntriesResponse | InstallSnapshotResponse) -> Progress | None:
        """The progress of a follower that answered, marked active (check-quorum) and
        credited with the ``seq`` it echoes (ReadIndex); None if it is not ours."""
        if self.role is not Role.LEADER:
            return None
        pr = self.progress.get(m.sender)
        if pr is not None:
            pr.recent_active = True
            pr.acked_seq = max(pr.acked_seq, m.seq)
        return pr

    def _handle_append_response(self, m: AppendEntriesResponse) -> None:
        pr = self._responder(m)
        if pr is None:
            return
        if m.success:
            if pr.update_match(m.match_index):
                if pr.state is ProgressState.PROBE:
                    pr.become_replicate()
                self._maybe_commit()
                if self.role is not Role.LEADER:
                    return  # it committed its own removal and stepped down (thesis 4.2.2)
                if m.sender == self.lead_transferee and pr.match == self.log.last_index:
                    self._send(TimeoutNow(self.term, self.id, m.sender))
            elif pr.state is ProgressState.PROBE:
                pr.probe_sent = False
            self._send_appends(m.sender)
        else:
            if m.match_index <= pr.match or (
                pr.state is ProgressState.PROBE and m.match_index != pr.next - 1
            ):
                self._check_reads()
                return  # a stale rejection
            if m.hint_term > 0:
                nxt = self.log.last_index_with_term_at_most(m.hint_index, m.hint_term) + 1
            else:
                nxt = m.hint_index + 1
            pr.become_probe()
            pr.next = max(min(nxt, m.match_index), pr.match + 1)
            self._send_append(m.sender)
        self._check_reads()

    def _handle_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        pr = self._responder(m)
        if pr is None:
            return
        if pr.state is ProgressState.SNAPSHOT and pr.snapshot is not None:
            if m.snapshot_index != pr.snapshot.meta.index:
                return
            if m.done:
                pr.update_match(m.snapshot_index)
                pr.become_probe()
                self._send_append(m.sender)
            elif m.next_offset != pr.snapshot_offset or m.next_offset == 0:
                pr.snapshot_offset = m.next_offset
                self._send_snapshot_chunk(m.sender)
        self._check_reads()

    def _maybe_commit(self) -> None:
        voters = self.config.voters
        matches = sorted((self.progress[v].match for v in voters if v in self.progress), reverse=True)
        q = self._quorum()
        if len(matches) < q:
            return
        candidate = matches[q - 1]
        if candidate > self.commit and self._may_commit_at(candidate):
            first_in_term = not self._committed_in_current_term()
            self.commit = candidate
            if not self.cfg.lazy_commit_notify:
                self._needs_broadcast = True
            if first_in_term and self._committed_in_current_term():
                waiting, self._reads_waiting_commit = self._reads_waiting_commit, []
                for ctx in waiting:
                    self._register_read(ctx)
            self._maybe_step_down_after_removal()

    def _may_commit_at(self, index: int) -> bool:
        """Paper 5.4.2 / Figure 8: only entries of the current term commit by counting."""
        return self.log.term(index) == self.term

    def _committed_in_current_term(self) -> bool:
        try:
            return self.log.term(self.commit) == self.term
        except CompactedError:
            return False

    def _maybe_step_down_after_removal(self) -> None:
        # thesis 4.2.2: a leader removed from the configuration steps down once the
        # change is committed
        if self.role is Role.LEADER and self.id not in self.config.voters:
            if self.commit >= self._configs[-1][0]:
                self.removed = self.id not in self.config.members()
                self._become_follower(self.term, None)

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.cfg.lazy_commit_notify:
            self._notify_commit()
        if self.lead_transferee is not None:
            # thesis 3.10: abort after about an election timeout, counted from the
            # transfer's start (not on the check-quorum timer, which may be about
            # to run out when the transfer begins)
            self.transfer_elapsed += 1
            if self.transfer_elapsed >= self.cfg.election_ticks_min:
                self.lead_transferee = None
        if self.election_elapsed >= self.cfg.election_ticks_min:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                active = [v for v in self.config.voters
                          if v in self.progress and (v == self.id or self.progress[v].recent_active)]
                for p in self.progress.values():
                    p.recent_active = False
                if len(active) < self._quorum():
                    self._become_follower(self.term, None)  # thesis 6.2
                    return
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            for peer in self._peers():
                pr = self.progress[peer]
                if (pr.state is ProgressState.REPLICATE and pr.match < self.log.last_index
                        and pr.match == pr.match_at_heartbeat):
                    pr.become_probe()  # no progress for a heartbeat: assume loss, resend
                pr.match_at_heartbeat = pr.match
                self._send_heartbeat(peer)
            self._maybe_auto_promote()

    def _maybe_auto_promote(self) -> None:
        if not self.cfg.auto_promote or self.lead_transferee is not None:
            return
        if self.pending_conf_index > self.commit:
            return
        for learner in sorted(self.config.learners):
            pr = self.progress.get(learner)
            if pr is not None and pr.match >= self.commit:
                self.propose_config_change(ConfigChange(ChangeKind.PROMOTE, learner))
                return

    # --- linearizable reads (thesis 6.4) --------------------------------------------

    def _register_read(self, context: object) -> None:
        # confirmed by acks of messages sent after this point: they carry seq + 1
        self._pending_reads.append((context, self.commit, self.seq + 1))
        if self.config.voters <= {self.id}:
            self.seq += 1
            self._check_reads()
            return
        self._read_heartbeat_due = True
        self._needs_broadcast = True

    def _check_reads(self) -> None:
        if not self._pending_reads:
            return
        voters = self.config.voters
        acked = sorted(
            (self.seq if v == self.id else self.progress[v].acked_seq
             for v in voters if v in self.progress),
            reverse=True,
        )
        q = self._quorum()
        if len(acked) < q:
            return
        confirmed = acked[q - 1]
        still = []
        for ctx, index, seq in self._pending_reads:
            if seq <= confirmed:
                self._read_states.append(ReadState(ctx, index))
            else:
                still.append((ctx, index, seq))
        self._pending_reads = still

    def _abort_reads(self) -> None:
        self._aborted_reads.extend(ctx for ctx, _, _ in self._pending_reads)
        self._aborted_reads.extend(self._reads_waiting_commit)
        self._pending_reads = []
        self._reads_waiting_commit = []

    # --- output ---------------------------------------------------------------------

    def _send(self, m: Message) -> None:
        self._msgs.append(m)

    # --- introspection ----------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return {
            "id": self.id,
            "role": self.role.value,
            "term": self.term,
            "leader": self.leader_id,
            "commit": self.commit,
            "applied": self.applied,
            "last_index": self.log.last_index,
            "snapshot_index": self.log.offset_index,
            "recovering": self.recovering,
            "voters": sorted(self.config.voters),
            "learners": sorted(self.config.learners),
        }
