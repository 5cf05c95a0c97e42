"""Safety invariants of Raft (paper Figure 3), checked as the simulation runs.

- Election safety: at most one leader per term.
- Log matching: two entries with the same index and term hold the same command
  and follow the same history (checked per entry as it is persisted: same data,
  same term at the index before, which by induction makes the logs identical).
- Leader completeness: a new leader's log holds every committed entry.
- State machine safety: no two nodes apply different entries at one index.
- Commit and apply indexes never go back within a node's life.
- Durability across a crash (paper Figure 2, "persistent state"): a restarted
  node has the term and vote of its last completed save (or of the save the
  crash interrupted, if that one got that far), and still holds every entry up
  to min(commit, stable index) it had before the crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodes.raft.errors import CompactedError
from nodes.raft.messages import Entry, EntryKind
from nodes.raft.ready import Ready, Role

from .node import SimNode


class InvariantViolation(AssertionError):
    pass


@dataclass(frozen=True, slots=True)
class _Durable:
    """What a crashed node must find again when it restarts."""

    term_vote: frozenset[tuple[int, str | None]]  # the acceptable (term, vote) pairs
    index: int  # an entry it must still hold (or have in its snapshot) ...
    term: int  # ... with this term


class Invariants:
    def __init__(self) -> None:
        self.leader_of_term: dict[int, str] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self.config_indexes: set[int] = set()  # committed membership entries
        self.entry_at: dict[tuple[int, int], tuple[bytes, int | None]] = {}
        self.high_water: dict[str, tuple[int, int]] = {}  # node -> (commit, applied)
        self.durable: dict[str, _Durable] = {}  # crashed node -> what it must keep
        self.restarts_checked = 0
        self.checks = 0

    def fail(self, what: str) -> None:
        raise InvariantViolation(what)

    def forget_incarnation(self, node_id: str) -> None:
        self.high_water.pop(node_id, None)

    def forget_node(self, node_id: str) -> None:
        """Its data was wiped on purpose: nothing of it must survive."""
        self.forget_incarnation(node_id)
        self.durable.pop(node_id, None)

    def forget_storage(self, node_id: str) -> None:
        """Its disk was damaged on purpose while it was down: it may come back with
        less than it saved (the cluster, not the node, must keep what was committed)."""
        self.durable.pop(node_id, None)

    def on_crash(self, node: SimNode) -> None:
        self.forget_incarnation(node.id)
        done = node.durable_hard_state
        pairs = {(done.term, done.vote)}
        if node.saving is not None and node.saving.hard_state is not None:
            pairs.add((node.saving.hard_state.term, node.saving.hard_state.vote))
        index, term = node.durable_point
        self.durable[node.id] = _Durable(frozenset(pairs), index, term)

    def on_restart(self, node: SimNode) -> None:
        rec = self.durable.pop(node.id, None)
        if rec is None:
            return
        self.restarts_checked += 1
        r = node.raft
        if (r.term, r.vote) not in rec.term_vote:
            self.fail(
                f"durability: {node.id} restarted with term {r.term} vote {r.vote}, but before "
                f"the crash it had saved {sorted(rec.term_vote, key=str)}"
            )
        if rec.index > r.log.offset_index and r.log.term(rec.index) != rec.term:
            self.fail(
                f"durability: {node.id} restarted without entry {rec.index} (term {rec.term}), "
                f"which it had saved and committed; its log now ends at {r.log.last_index}"
            )

    def on_ready(self, node: SimNode, rd: Ready) -> None:
        log = node.raft.log
        for e in rd.entries:
            try:
                prev = log.term(e.index - 1)
            except CompactedError:
                prev = None
            key = (e.index, e.term)
            seen = self.entry_at.get(key)
            if seen is None:
                self.entry_at[key] = (e.data, prev)
            else:
                data, seen_prev = seen
                if data != e.data or (prev is not None and seen_prev is not None and prev != seen_prev):
                    self.fail(
                        f"log matching: {node.id} holds a different entry at index {e.index} "
                        f"term {e.term} (or a different history before it)"
                    )
        if rd.soft_state is not None and rd.soft_state.role is Role.LEADER:
            self._check_leader_completeness(node)

    def _check_leader_completeness(self, node: SimNode) -> None:
        log = node.raft.log
        for index, (term, _) in self.committed.items():
            if index <= log.offset_index:
                continue
            if log.term(index) != term:
                self.fail(
                    f"leader completeness: new leader {node.id} (term {node.raft.term}) lacks "
                    f"committed entry {index} of term {term}"
                )

    def on_apply(self, node_id: str, e: Entry) -> None:
        if e.kind is EntryKind.CONFIG:
            self.config_indexes.add(e.index)
        seen = self.committed.setdefault(e.index, (e.term, e.data))
        if seen != (e.term, e.data):
            self.fail(
                f"state machine safety: {node_id} applied entry term {e.term} at index "
                f"{e.index}, another node applied term {seen[0]} there"
            )

    def check_step(self, nodes: dict[str, SimNode]) -> None:
        self.checks += 1
        for nid, node in nodes.items():
            r = node.raft
            if r.role is Role.LEADER:
                holder = self.leader_of_term.setdefault(r.term, nid)
                if holder != nid:
                    self.fail(f"election safety: {holder} and {nid} both lead term {r.term}")
            commit, applied = r.commit, node.last_applied
            hw = self.high_water.get(nid)
            if hw is not None and (commit < hw[0] or applied < hw[1]):
                self.fail(
                    f"{nid}: commit/applied went back from {hw} to {(commit, applied)}"
                )
            if not (r.log.offset_index <= applied <= commit <= r.log.last_index):
                self.fail(
                    f"{nid}: expected snapshot {r.log.offset_index} <= applied {applied} <= "
                    f"commit {commit} <= last {r.log.last_index}"
                )
            self.high_water[nid] = (commit, applied)
