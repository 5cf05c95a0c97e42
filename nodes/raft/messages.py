"""Raft messages and log records: frozen dataclasses with slots, no behaviour.

Every message carries ``term``, ``sender`` and ``recipient`` (node ids, strings).
Encoding to bytes lives in one module, ``nodes.codec``; this module knows no wire
format. References are to the Raft paper (Ongaro & Ousterhout 2014, "paper") and
Ongaro's thesis (2014, "thesis").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class EntryKind(IntEnum):
    """What an entry's ``data`` holds."""

    NORMAL = 0  # application command (opaque bytes); empty data is the leader's no-op
    CONFIG = 1  # a membership change: data is an encoded ``ConfigChange``


@dataclass(frozen=True, slots=True)
class Entry:
    """One log record. Invariant: ``index >= 1`` and ``term >= 1``."""

    index: int
    term: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL

    def size(self) -> int:
        """Approximate encoded size, used to bound AppendEntries batches."""
        return len(self.data) + 16


_new_object = object.__new__
_slots = vars(Entry)  # the slots' member descriptors
_set_index, _set_term = _slots["index"].__set__, _slots["term"].__set__
_set_data, _set_kind = _slots["data"].__set__, _slots["kind"].__set__


def make_entry(index: int, term: int, data: bytes, kind: EntryKind) -> Entry:
    """``Entry(index, term, data, kind)``, built through the slots directly: the same
    frozen object in 60% of the time (a frozen dataclass's ``__init__`` goes through
    ``object.__setattr__`` per field). For the hot paths that create one per command
    (a proposal, a decoded AppendEntries, a replayed WAL record); all four arguments
    are required and are not converted (``kind`` must already be an ``EntryKind``)."""
    entry = _new_object(Entry)
    _set_index(entry, index)
    _set_term(entry, term)
    _set_data(entry, data)
    _set_kind(entry, kind)
    return entry


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a node answers: paper Figure 2, "persistent state".

    ``commit`` is persisted too (as etcd does) so a restarted node can apply
    committed entries without waiting for a leader.

    ``promised`` is the highest log index this node has vouched for: acknowledged
    to a leader, or (as leader) counted toward a commit. It is durable before the
    acknowledgement leaves, so a log that restarts shorter than it lost entries
    that may be committed. ``recovering`` is set while the node cannot prove its
    storage intact (``nodes.raft.core``, "Protocol-aware recovery"): it neither
    votes nor campaigns until a leader has repaired it.
    """

    term: int = 0
    vote: str | None = None
    commit: int = 0
    promised: int = 0
    recovering: bool = False


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Voters and learners (non-voting members that receive the log)."""

    voters: frozenset[str] = frozenset()
    learners: frozenset[str] = frozenset()

    def members(self) -> frozenset[str]:
        return self.voters | self.learners


class ChangeKind(IntEnum):
    ADD_LEARNER = 0
    PROMOTE = 1  # learner -> voter
    REMOVE = 2
    BOOTSTRAP = 3  # the whole configuration, written by the first leader of a fresh log


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One-server-at-a-time membership change (thesis 4.1). ``BOOTSTRAP`` carries the
    whole configuration instead of one server: the first leader of a fresh log
    writes it (thesis 4.4), so a server that replays the log from index 1 learns
    every voter, not only the ones added later."""

    kind: ChangeKind
    node_id: str = ""
    config: ClusterConfig | None = None


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot sits in the log and the configuration in force there."""

    index: int = 0
    term: int = 0
    config: ClusterConfig = field(default_factory=ClusterConfig)


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes


# --- messages ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestVote:
    """Paper 5.2 RequestVote; with ``pre_vote`` it is thesis 9.6's PreVote, sent
    for ``term`` = the candidate's term + 1 without incrementing it.
    ``transfer`` marks a campaign started by TimeoutNow (thesis 3.10), which
    may disregard the leader-lease check."""

    term: int
    sender: str
    recipient: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    term: int
    sender: str
    recipient: str
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Paper 5.3. ``seq`` is a per-leader counter echoed by the response: an ack of
    a message sent after a read request confirms leadership for ReadIndex
    (thesis 6.4). Heartbeats are AppendEntries with no entries."""

    term: int
    sender: str
    recipient: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    seq: int = 0


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    """``match_index`` is the last index known to match the leader's log on success.
    On rejection, ``hint_index``/``hint_term`` let the leader skip a whole
    conflicting term per round trip (paper 5.3, the "fast back-up" optimisation):
    ``hint_term`` is the follower's term at ``hint_index`` (0 when the follower's
    log is simply shorter, in which case ``hint_index`` is its last index)."""

    term: int
    sender: str
    recipient: str
    success: bool
    match_index: int = 0
    hint_index: int = 0
    hint_term: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """Thesis 5.3 / paper Figure 13, sent in chunks of bounded size."""

    term: int
    sender: str
    recipient: str
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool
    seq: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    """``next_offset`` is the byte the follower expects next (resume after loss);
    with ``done`` the snapshot is installed and ``match_index`` = its index."""

    term: int
    sender: str
    recipient: str
    snapshot_index: int
    next_offset: int
    done: bool = False
    seq: int = 0


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Thesis 3.10: the leader tells an up-to-date target to start an election now."""

    term: int
    sender: str
    recipient: str


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
)

MESSAGE_TYPES: tuple[type, ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
)
