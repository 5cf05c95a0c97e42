"""``simple_majority``: a one-shot vote per proposal, as a sans-I/O state machine.

Everything that decides a proposal lives here; the driver only moves messages,
asks the vote policy and applies decisions. Time enters as ``now`` (seconds,
monotonic) on every input; randomness only through the ``Random`` passed in.

The protocol (messages are ``(to, kind, body)``, bodies plain data):

1. Any node proposes ``(key, value, command)``. The proposal fixes its voter
   set (the proposer's members then), ``total`` = their number and
   ``quorum_required`` (below). It is sent to every voter as ``propose``.
2. Every voter, the proposer included, decides through its vote policy: the
   core asks with a ``Proposal`` in ``Output.votes_needed`` and the driver
   answers ``cast_vote(proposal_id, granted)``. The default policy votes yes
   unless the node holds another pending proposal for the same key with a
   different value -- one it voted yes on or is still deciding about
   (``Proposal.conflicting``): two conflicting proposals can then not both win. A vote is sent to the proposer as ``vote``;
   a voter answers a retransmitted ``propose`` with the same vote.
3. The proposer decides, and tells every voter with ``decide``:
   accepted once ``for_ >= quorum_required``; rejected once that can no longer
   happen (``for_ + undecided < quorum_required``); rejected with error
   ``"timeout"`` when neither happened within the proposal's timeout. Voters
   acknowledge with ``decided``; the proposer resends ``decide`` to the others
   every ``retry_interval`` for one more timeout (a lossy start, e.g. ZeroMQ
   dropping frames to peers not yet connected, must not leave a node behind).
4. Every node that learns an accepted decision applies ``command`` (the driver
   applies it to its key-value machine) and releases its promise. A node that
   misses ``decide`` releases its promise when the proposal's timeout passes.

Quorum: ``quorum`` is a fraction in (0, 1]. A proposal is accepted when its
votes for are *strictly more* than ``quorum * total``:
``quorum_required = min(total, floor(quorum * total) + 1)``. So the default 0.5
means "more than half" (2 of 3, 3 of 4), and 1.0 means unanimity.

This mechanism keeps no replicated log: a node that is down or cut off when a
decision is broadcast does not get it later. Use ``raft`` for durability and
ordering; ``simple_majority`` is for agents agreeing on one value at a time.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from fractions import Fraction
from random import Random
from typing import Any

from nodes.kv import same_value

from .types import InvalidArgument

DECIDED_MEMORY = 10_000  # decided proposal ids remembered, to ignore repeats


def quorum_required(quorum: float, total: int) -> int:
    """Votes for needed out of ``total``: strictly more than ``quorum * total``."""
    if isinstance(quorum, bool) or not isinstance(quorum, int | float) or not 0 < quorum <= 1:
        raise InvalidArgument(f"quorum must be a number in (0, 1], e.g. 0.5, got {quorum!r:.80}")
    if total <= 0:
        return 1
    # the simplest fraction the float stands for: 2/3 (not 0.666..6), 0.29 (not 0.28999..)
    exact = Fraction(quorum).limit_denominator(1_000_000) * total
    return min(total, math.floor(exact) + 1)


@dataclass(frozen=True, slots=True)
class Proposal:
    """One proposal, as voters see it. ``conflicting`` is filled in for the vote
    policy: this node promised its vote to another pending proposal for ``key``
    with a different value."""

    proposal_id: str
    proposer: str
    key: str | None
    value: Any
    command: dict[str, Any]
    timestamp_ms: int
    voters: tuple[str, ...]
    quorum_required: int
    timeout: float
    conflicting: bool = False

    @property
    def total(self) -> int:
        return len(self.voters)

    def to_body(self) -> dict[str, Any]:
        return {
            "pid": self.proposal_id, "proposer": self.proposer, "key": self.key,
            "value": self.value, "command": self.command, "ts": self.timestamp_ms,
            "voters": list(self.voters), "required": self.quorum_required,
            "timeout": self.timeout,
        }

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Proposal:
        """Raises ``KeyError``/``TypeError``/``ValueError`` for a malformed body."""
        voters = tuple(str(v) for v in body["voters"])
        command = body["command"]
        if not isinstance(command, dict):
            raise TypeError("command must be a map")
        key = body["key"]
        return cls(
            proposal_id=str(body["pid"]), proposer=str(body["proposer"]),
            key=None if key is None else str(key), value=body["value"], command=command,
            timestamp_ms=int(body["ts"]), voters=voters, quorum_required=int(body["required"]),
            timeout=float(body["timeout"]),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    proposal: Proposal
    accepted: bool
    for_: int
    against: int
    error: str | None = None
    index: int | None = None  # where it was applied here (accepted ones)


@dataclass(slots=True)
class Output:
    """What the driver must do, in this order: send ``messages``; ask the vote
    policy for each of ``votes_needed`` (answer with ``cast_vote``); apply
    ``to_apply`` in order; resolve ``decisions`` (this node's own proposals);
    emit ``events``."""

    messages: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    votes_needed: list[Proposal] = field(default_factory=list)
    to_apply: list[Decision] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    events: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.messages or self.votes_needed or self.to_apply or self.decisions
                    or self.events)


@dataclass(slots=True)
class _Own:
    proposal: Proposal
    deadline: float
    votes: dict[str, bool] = field(default_factory=dict)
    last_sent: float = 0.0


@dataclass(slots=True)
class _Announce:
    """A decision still being told to the voters that have not acknowledged it."""

    body: dict[str, Any]
    unacked: set[str]
    until: float
    last_sent: float


@dataclass(slots=True)
class _MyVote:
    proposal: Proposal
    granted: bool
    expires: float


class MajorityCore:
    def __init__(self, node_id: str, members: set[str], quorum: float, timeout: float,
                 rng: Random, retry_interval: float = 0.1) -> None:
        quorum_required(quorum, 1)  # validates
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.id = node_id
        self.members: set[str] = set(members) | {node_id}
        self.quorum = quorum
        self.timeout = timeout
        self.rng = rng
        self.retry_interval = retry_interval
        self._counter = 0
        self._token = f"{rng.getrandbits(32):08x}"  # distinguishes restarts of a node
        self.own: dict[str, _Own] = {}
        self.my_votes: dict[str, _MyVote] = {}  # undecided proposals this node voted on
        self.asking: dict[str, tuple[Proposal, float]] = {}  # waiting for the policy
        self.decided: OrderedDict[str, bool] = OrderedDict()
        self.announcing: dict[str, _Announce] = {}
        self.applied_index = 0
        self._out = Output()

    # --- inputs --------------------------------------------------------------------

    def propose(self, key: str | None, value: Any, command: dict[str, Any], now: float,
                timestamp_ms: int, timeout: float | None = None) -> str:
        self._counter += 1
        pid = f"{self.id}:{self._token}:{self._counter}"
        voters = tuple(sorted(self.members))
        proposal = Proposal(pid, self.id, key, value, command, timestamp_ms, voters,
                            quorum_required(self.quorum, len(voters)), timeout or self.timeout)
        self.own[pid] = _Own(proposal, now + proposal.timeout, last_sent=now)
        for voter in voters:
            if voter != self.id:
                self._send(voter, "propose", proposal.to_body())
        self._ask(proposal, now)
        return pid

    def cast_vote(self, pid: str, granted: bool, now: float) -> None:
        """This node's vote on a proposal it was asked about (from the policy)."""
        asked = self.asking.pop(pid, None)
        if asked is None or pid in self.decided:
            return
        proposal = asked[0]
        self.my_votes[pid] = _MyVote(proposal, bool(granted), now + proposal.timeout)
        if granted:
            self._event("vote:granted", proposal.proposer, **_details(proposal))
        own = self.own.get(pid)
        if own is not None:
            own.votes[self.id] = bool(granted)
            self._evaluate(own, now)
        else:
            self._send(proposal.proposer, "vote", {"pid": pid, "granted": bool(granted)})

    def step(self, sender: str, kind: str, body: dict[str, Any], now: float) -> None:
        """A message from a peer. Malformed ones are ignored (and reported by raising
        ``ValueError`` so the driver can count them)."""
        try:
            if kind == "propose":
                self._on_propose(Proposal.from_body(body), now)
            elif kind == "vote":
                self._on_vote(sender, str(body["pid"]), bool(body["granted"]), now)
            elif kind == "decide":
                self._on_decide(sender, body)
            elif kind == "decided":
                self._on_decided(sender, str(body["pid"]))
            else:
                raise ValueError(f"unknown simple_majority message {kind!r}")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed {kind} from {sender}: {exc!r}") from exc

    def tick(self, now: float) -> None:
        for own in list(self.own.values()):
            if now >= own.deadline:
                self._decide(own, now, accepted=False, error="timeout")
            elif now - own.last_sent >= self.retry_interval:
                own.last_sent = now
                for voter in own.proposal.voters:
                    if voter != self.id and voter not in own.votes:
                        self._send(voter, "propose", own.proposal.to_body())
        for pid, announce in list(self.announcing.items()):
            if now >= announce.until:
                del self.announcing[pid]
            elif now - announce.last_sent >= self.retry_interval:
                announce.last_sent = now
                for voter in sorted(announce.unacked):
                    self._send(voter, "decide", announce.body)
        for pid, vote in list(self.my_votes.items()):
            if now >= vote.expires:
                del self.my_votes[pid]  # the decision never came: release the promise
        for pid, (_, expires) in list(self.asking.items()):
            if now >= expires:
                del self.asking[pid]

    def add_member(self, node_id: str) -> None:
        self.members.add(node_id)

    def remove_member(self, node_id: str) -> None:
        if node_id != self.id:
            self.members.discard(node_id)

    def take(self) -> Output:
        out, self._out = self._out, Output()
        return out

    # --- voting ----------------------------------------------------------------------

    def conflicting(self, proposal: Proposal) -> bool:
        """Another undecided proposal for the same key with a different value is
        held here: one this node voted yes on, or one still waiting for its vote
        (so two conflicting proposals that cross on the wire are never both
        granted by the same node, whatever the order its votes are cast in)."""
        if proposal.key is None:
            return False
        held = [v.proposal for v in self.my_votes.values() if v.granted]
        held += [p for p, _ in self.asking.values()]
        return any(
            other.proposal_id != proposal.proposal_id and other.key == proposal.key
            and not _same(other.value, proposal.value)
            for other in held
        )

    def _ask(self, proposal: Proposal, now: float) -> None:
        self.asking[proposal.proposal_id] = (proposal, now + proposal.timeout)
        self._event("vote:requested", proposal.proposer, **_details(proposal))
        self._out.votes_needed.append(replace(proposal, conflicting=self.conflicting(proposal)))

    def _on_propose(self, proposal: Proposal, now: float) -> None:
        pid = proposal.proposal_id
        if pid in self.decided or pid in self.asking:
            return
        vote = self.my_votes.get(pid)
        if vote is not None:  # a retransmission: our vote got lost, say it again
            self._send(proposal.proposer, "vote", {"pid": pid, "granted": vote.granted})
            return
        if self.id not in proposal.voters:
            return
        self._ask(proposal, now)

    def _on_vote(self, voter: str, pid: str, granted: bool, now: float) -> None:
        own = self.own.get(pid)
        if own is None:
            accepted = self.decided.get(pid)
            if accepted is not None:
                # the voter missed our decision (it still holds a promise): repeat it
                self._send(voter, "decide", {"pid": pid, "accepted": accepted})
            return
        if voter not in own.proposal.voters or voter in own.votes:
            return
        own.votes[voter] = granted
        self._evaluate(own, now)

    def _evaluate(self, own: _Own, now: float) -> None:
        p = own.proposal
        for_ = sum(1 for v in own.votes.values() if v)
        undecided = p.total - len(own.votes)
        if for_ >= p.quorum_required:
            self._decide(own, now, accepted=True)
        elif for_ + undecided < p.quorum_required:
            self._decide(own, now, accepted=False, error="rejected")

    def _decide(self, own: _Own, now: float, accepted: bool, error: str | None = None) -> None:
        p = own.proposal
        del self.own[p.proposal_id]
        for_ = sum(1 for v in own.votes.values() if v)
        against = sum(1 for v in own.votes.values() if not v)
        decision = Decision(p, accepted, for_, against, error)
        body = {"pid": p.proposal_id, "accepted": accepted, "error": error,
                "for": for_, "against": against}
        if accepted:
            body["proposal"] = p.to_body()  # a voter that never saw it can still apply it
        others = {v for v in p.voters if v != self.id}
        for voter in sorted(others):
            self._send(voter, "decide", body)
        if others:
            self.announcing[p.proposal_id] = _Announce(body, others, now + p.timeout, now)
        self._out.decisions.append(self._learn(decision))

    def _on_decided(self, voter: str, pid: str) -> None:
        announce = self.announcing.get(pid)
        if announce is not None:
            announce.unacked.discard(voter)
            if not announce.unacked:
                del self.announcing[pid]

    def _on_decide(self, sender: str, body: dict[str, Any]) -> None:
        pid = str(body["pid"])
        if pid in self.own:
            return
        self._send(sender, "decided", {"pid": pid})  # a repeat gets acknowledged again
        if pid in self.decided:
            return
        accepted = bool(body["accepted"])
        if accepted and "proposal" not in body:
            # a repeated decision (see _on_vote): we still hold our vote's proposal
            vote = self.my_votes.get(pid)
            if vote is None:
                return
            proposal = vote.proposal
        elif accepted:
            proposal = Proposal.from_body(body["proposal"])
        else:
            self.my_votes.pop(pid, None)
            self.asking.pop(pid, None)
            self._remember(pid, False)
            return
        decision = Decision(proposal, True, int(body.get("for", 0)), int(body.get("against", 0)))
        self._learn(decision)

    def _learn(self, decision: Decision) -> Decision:
        pid = decision.proposal.proposal_id
        self.my_votes.pop(pid, None)
        self.asking.pop(pid, None)
        self._remember(pid, decision.accepted)
        if decision.accepted:
            self.applied_index += 1
            decision = replace(decision, index=self.applied_index)
            self._out.to_apply.append(decision)
        return decision

    def _remember(self, pid: str, accepted: bool) -> None:
        self.decided[pid] = accepted
        while len(self.decided) > DECIDED_MEMORY:
            self.decided.popitem(last=False)

    # --- output ---------------------------------------------------------------------

    def _send(self, to: str, kind: str, body: dict[str, Any]) -> None:
        self._out.messages.append((to, kind, body))

    def _event(self, name: str, *args: Any, **details: Any) -> None:
        self._out.events.append((name, args, details))


def _details(p: Proposal) -> dict[str, Any]:
    return {"proposal_id": p.proposal_id, "key": p.key, "value": p.value}


def _same(a: Any, b: Any) -> bool:
    """Strict equality of plain data (``1`` is not ``True``), as the kv machine compares."""
    return same_value(a, b)
