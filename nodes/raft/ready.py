"""What the core asks its driver to do, as data.

The driver handles every ``Ready`` in this fixed order, and only then calls
``RaftNode.advance(ready)``; it feeds the core nothing else in between:

0. **send early**: ``ready.early_messages`` may leave before the persist step:
   a leader's AppendEntries and InstallSnapshot, whose term and vote are
   already durable (thesis 10.2.1: the leader writes its log in parallel with
   replicating it; it counts its own copy toward a commit only after
   ``advance`` tells it the entries are durable). Sending them first lets the
   leader's fsync overlap the followers'.
1. **persist**: ``Storage.save(ready.hard_state, ready.entries, ready.snapshot)``
   and wait until it is durable (fsync; one group commit for the whole Ready).
   A vote or an acknowledgement among ``messages`` speaks about exactly this
   state, so it must not leave before it survives a crash (paper Figure 2:
   "updated on stable storage before responding to RPCs"). That includes
   ``hard_state.promised``, the highest index the node now vouches for: it is
   how a restarted node tells a lost log suffix from a torn last write.
2. **send**: every message in ``ready.messages``.
3. **apply**: first ``ready.snapshot`` (if any: restore the state machine from
   it), then ``ready.committed_entries`` in order; answer ``ready.read_states``
   once the state machine has applied up to each one's index; fail the reads in
   ``ready.aborted_reads``.
4. **advance**: ``node.advance(ready)``.

``soft_state`` is set when the role or the known leader changed (for logs,
events and clients); it needs no persistence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .messages import Entry, HardState, Message, Snapshot


class Role(StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    role: Role
    leader_id: str | None
    term: int


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read (thesis 6.4) may be served once ``index`` is applied."""

    context: object
    index: int


@dataclass(slots=True)
class Ready:
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    early_messages: list[Message] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    aborted_reads: list[object] = field(default_factory=list)
    soft_state: SoftState | None = None

    def must_sync(self) -> bool:
        """True when the persist step has anything to make durable."""
        return bool(self.hard_state is not None or self.entries or self.snapshot is not None)
