"""The one driver of the Ready contract (``nodes.raft.ready``), asserted always.

Every loop that runs a ``RaftNode`` (the node server, the ``Consensus``
library, the simulator, the hand-driven test cluster, the node host) hands
each ``Ready`` to a ``ReadyDriver``, which does the fixed order and nothing
else, through callables its owner supplies::

    0. send early   send(m) for m in ready.early_messages
    1. persist      persist(ready) when ready.must_sync(), then (after the
                    storage sync) the Ready is marked durable
    2. send         send(m) for m in ready.messages
    3. apply        apply(ready): snapshot, committed entries, reads, soft state
    4. advance      raft.advance(ready), then after(ready)

A loop with one group calls ``drain()``: each Ready is persisted and marked
durable at once. The node host drives many groups with one storage sync per
turn, so it splits the cycle: ``stage()`` every group (early sends + staged
writes), sync once, then ``durable(rd)`` and ``complete(rd)`` every group.

The contract is checked on every message, in production too (a raise, not an
``assert``, so ``python -O`` keeps it): an early message is a leader's
AppendEntries or InstallSnapshot whose term and vote were already durable; a
granted vote leaves only once that vote is durable; a successful AppendEntries
or InstallSnapshot acknowledgement only once the entries it acknowledges are.
A message of an older term than the durable one is let through: one Ready may
hold a vote or an ack given in term t and the step into a later term (a newer
leader, a new election) that replaced it, and what is durable then is exactly
what the node would hold had it persisted and sent after each step (it will
never again vote or acknowledge in term t). A breach raises
``ReadyContractError``: it is a bug in the driver's owner (a persist skipped or
done after the send), never a peer's fault.
"""

from __future__ import annotations

from collections.abc import Callable

from nodes.raft.core import RaftNode
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVoteResponse,
)
from nodes.raft.ready import Ready

__all__ = ["ReadyContractError", "ReadyDriver"]


class ReadyContractError(AssertionError):
    """A message was about to leave before the state it speaks of was durable."""


def _nothing(rd: Ready) -> None:
    return None


class ReadyDriver:
    """Drives one ``RaftNode``'s Ready cycle. ``persist(rd)`` must make (or, in
    the two-phase use, stage) ``rd.hard_state``, ``rd.entries`` and
    ``rd.snapshot``; ``send(m)`` hands one message to the network; ``apply(rd)``
    applies what ``rd`` commits; ``after(rd)`` runs once ``rd`` is advanced
    (serve reads, take snapshots). ``on_ready(rd)`` (optional) sees each Ready
    as it comes out of the core, before anything is done with it."""

    __slots__ = (
        "raft",
        "persist",
        "send",
        "apply",
        "after",
        "on_ready",
        "_durable_hs",
        "_durable_last",
        "_pending",
        "_marked",
    )

    def __init__(
        self,
        raft: RaftNode,
        persist: Callable[[Ready], None],
        send: Callable[[Message], None],
        apply: Callable[[Ready], None],
        after: Callable[[Ready], None] = _nothing,
        on_ready: Callable[[Ready], None] | None = None,
    ) -> None:
        self.raft = raft
        self.persist = persist
        self.send = send
        self.apply = apply
        self.after = after
        self.on_ready = on_ready
        # what is known durable: the hard state of the last persisted Ready and the
        # last log index the storage holds (the core's log agrees outside a Ready)
        self._durable_hs: HardState = raft.persisted_hard_state
        self._durable_last = raft.log.stable_index
        self._pending: Ready | None = None  # staged, not yet completed
        self._marked = False  # the pending Ready was marked durable

    # --- one group, one loop ------------------------------------------------------------

    def drain(self) -> int:
        """Handle Readies until the core has nothing left; returns how many. The
        same steps and checks as ``stage``, ``durable``, ``complete``, inlined: this
        is the node server's write path."""
        if self._pending is not None:
            raise ReadyContractError("drain() with a staged Ready not completed")
        n = 0
        raft = self.raft
        send, persist, on_ready = self.send, self.persist, self.on_ready
        while raft.has_ready():
            rd = raft.ready()
            if on_ready is not None:
                on_ready(rd)
            if rd.early_messages:
                self._check_early(rd)
                for m in rd.early_messages:
                    send(m)
            if rd.must_sync():
                persist(rd)
                if rd.hard_state is not None:
                    self._durable_hs = rd.hard_state
                self._durable_last = raft.log.last_index
            self._send_checked(rd)
            self.apply(rd)
            raft.advance(rd)
            self.after(rd)
            n += 1
        return n

    # --- the two phases (the node host syncs once between them for every group) --------

    def stage(self) -> Ready | None:
        """Take the next Ready (None if there is none): send its early messages and
        hand it to ``persist``. Call ``durable`` once that write is synced, then
        ``complete``."""
        if self._pending is not None:
            raise ReadyContractError("stage() twice without complete(): one Ready at a time")
        raft = self.raft
        if not raft.has_ready():
            return None
        rd = raft.ready()
        if self.on_ready is not None:
            self.on_ready(rd)
        self._pending = rd
        self._marked = False
        if rd.early_messages:
            self._check_early(rd)
            send = self.send
            for m in rd.early_messages:
                send(m)
        if rd.must_sync():
            self.persist(rd)
        return rd

    def _check_early(self, rd: Ready) -> None:
        hs = rd.hard_state
        durable = self._durable_hs
        if hs is not None and (hs.term, hs.vote) != (durable.term, durable.vote):
            raise ReadyContractError(
                f"early messages in a Ready whose term/vote ({hs.term}, {hs.vote}) are "
                f"not durable yet ({durable.term}, {durable.vote})"
            )
        for m in rd.early_messages:
            if type(m) is not AppendEntries and type(m) is not InstallSnapshot:
                raise ReadyContractError(
                    f"{type(m).__name__} may not leave before the persist step"
                )

    def durable(self, rd: Ready) -> None:
        """``rd``'s persist step is synced: what it carried survives a crash."""
        if rd is not self._pending:
            raise ReadyContractError("durable() for a Ready that is not the staged one")
        if rd.hard_state is not None:
            self._durable_hs = rd.hard_state
        # no input reached the core since ready(): its log is exactly what was persisted
        self._durable_last = self.raft.log.last_index
        self._marked = True

    def complete(self, rd: Ready) -> None:
        """Send, apply and advance ``rd`` (staged and marked durable)."""
        if rd is not self._pending or not self._marked:
            raise ReadyContractError(
                "complete() before durable(): the persist step must be synced before a "
                "message that speaks of it leaves"
            )
        self._pending = None
        self._send_checked(rd)
        self.apply(rd)
        self.raft.advance(rd)
        self.after(rd)

    def _send_checked(self, rd: Ready) -> None:
        send = self.send
        hs = self._durable_hs
        last = self._durable_last
        for m in rd.messages:
            t = type(m)
            if m.term < hs.term:
                pass  # superseded within this Ready by a durable later term (docstring)
            elif t is AppendEntriesResponse:
                if m.success and m.match_index > last:  # type: ignore[union-attr]
                    raise ReadyContractError(
                        f"acknowledging index {m.match_index} (to {m.recipient}) with only "  # type: ignore[union-attr]
                        f"{last} durable"
                    )
            elif t is RequestVoteResponse:
                if m.granted and not m.pre_vote and (hs.term, hs.vote) != (m.term, m.recipient):  # type: ignore[union-attr]
                    raise ReadyContractError(
                        f"granting a vote to {m.recipient} in term {m.term} before it is "
                        f"durable (durable term {hs.term}, vote {hs.vote})"
                    )
            elif t is InstallSnapshotResponse:
                if m.done and m.snapshot_index > last:  # type: ignore[union-attr]
                    raise ReadyContractError(
                        f"acknowledging a snapshot at {m.snapshot_index} with only {last} durable"  # type: ignore[union-attr]
                    )
            send(m)
