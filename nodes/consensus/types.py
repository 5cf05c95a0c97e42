"""The plain values the ``Consensus`` API hands back: results, node views, options.

They are frozen dataclasses so a caller can keep, compare and print them without
fearing that the node changes them underneath.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConsensusError(Exception):
    """A consensus operation could not be done; the message says why and what to do."""


class NotStarted(ConsensusError):
    """The node is not running: call ``start()`` (inside a running loop) first."""


class InvalidArgument(ConsensusError, ValueError):
    """An argument the library cannot take (a value that cannot be encoded, a key
    that is not a str, a duration in milliseconds, ...). Raised at once, before
    anything is stored or sent; the message names the argument and the fix."""


@dataclass(frozen=True, slots=True)
class Votes:
    """How a proposal was voted.

    raft: ``for_`` = voters that had stored the entry when the leader saw it
    committed, ``against`` = 0 (a follower never refuses a current leader's entry,
    it is at most not caught up yet), ``total`` = voters.
    simple_majority: the votes of the nodes, as cast through their vote policies.
    """

    for_: int = 0
    against: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class ProposalResult:
    """The outcome of one proposal. Truthy exactly when ``accepted``.

    ``accepted`` means: the proposal was committed (raft) or voted in
    (simple_majority) *and* the state machine applied it as asked (a failed
    compare-and-swap, a failed batch condition or a held lock is not accepted;
    ``error`` then holds the state machine's code, e.g. ``cas_failed``).
    ``error`` is ``"timeout"`` when no outcome was known before the timeout: the
    proposal may still be applied later (under raft, retries of the same
    proposal are applied at most once thanks to client sessions).
    """

    proposal_id: str
    accepted: bool
    key: str | None
    votes: Votes = field(default_factory=Votes)
    quorum_required: int = 0
    error: str | None = None
    value: Any = None
    index: int | None = None  # raft log index / simple_majority apply index
    result: Any = None  # the state machine's answer (a dict), when applied

    def __bool__(self) -> bool:
        return self.accepted


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as this node sees it (``get_nodes()``, ``get_leader()``).

    ``role`` is what the node last told us (its pings carry it) or what we are;
    None when unknown. ``connected`` is reachability: heard from within the
    failure timeout (always True for ourselves); ``status`` says the same in a
    word: ``"active"`` or ``"unreachable"``. ``metadata`` is what ``add_node``
    was given (e.g. ``{"region": "eu-west"}``). ``str(info)`` is the node's id.
    """

    id: str
    address: str | None
    role: str | None
    voter: bool
    learner: bool
    connected: bool
    is_self: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def status(self) -> str:
        return "active" if self.connected else "unreachable"

    def __str__(self) -> str:
        return self.id

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "role": self.role,
            "voter": self.voter,
            "learner": self.learner,
            "connected": self.connected,
            "status": self.status,
            "is_self": self.is_self,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class ValueInfo:
    """A local read with its provenance: ``optimistic`` marks a value that an
    ``optimistic_update`` shows before the cluster accepted it."""

    key: str
    value: Any
    version: int
    found: bool
    optimistic: bool = False


@dataclass(frozen=True, slots=True)
class LockResult:
    """The answer to ``acquire_lock``. Truthy when the lock is ours.

    ``token`` is the fencing token (it grows with every new acquisition, so a
    storage service can refuse a stale holder); ``expires_ms`` is on the
    replicated clock (the leader's timestamps)."""

    name: str
    acquired: bool
    holder: str | None = None
    token: int = 0
    expires_ms: int = 0
    error: str | None = None

    def __bool__(self) -> bool:
        return self.acquired


@dataclass(frozen=True, slots=True)
class ConsensusTiming:
    """All durations in seconds; the raft core sees them as ticks of ``tick``."""

    tick: float
    heartbeat_interval: float
    election_timeout: tuple[float, float]
    failure_timeout: float
    ping_interval: float

    def ticks(self) -> tuple[int, int, int]:
        """(heartbeat, election min, election max) in ticks."""
        hb = max(1, round(self.heartbeat_interval / self.tick))
        lo = max(hb + 1, round(self.election_timeout[0] / self.tick))
        hi = max(lo + 1, round(self.election_timeout[1] / self.tick))
        return hb, lo, hi


def describe_command(command: dict[str, Any], result: dict[str, Any]) -> tuple[str | None, Any]:
    """(key, value) a command is about, for events and results."""
    op = command.get("op")
    if op in ("put", "cas"):
        return command.get("key"), command.get("value")
    if op == "delete":
        return command.get("key"), None
    if op in ("incr", "decr"):
        return command.get("key"), result.get("value")
    if op in ("lock", "unlock", "renew"):
        return command.get("name"), command.get("holder")
    if op == "batch":
        return None, command.get("ops")
    return command.get("key"), command.get("value")
