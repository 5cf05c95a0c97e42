"""The in-memory Raft log since the last snapshot, and which part of it is durable.

Invariants (asserted where they can break):
  offset_index <= commit <= last_index  (commit is the core's, checked there)
  offset_index < stable_index + 1 <= last_index + 1
  entries[k].index == offset_index + 1 + k, and terms never decrease along the log.
"""

from __future__ import annotations

from bisect import bisect_right

from .errors import CompactedError
from .messages import Entry


class RaftLog:
    def __init__(self, offset_index: int = 0, offset_term: int = 0) -> None:
        self.offset_index = offset_index  # index of the last entry covered by the snapshot
        self.offset_term = offset_term
        self.entries: list[Entry] = []
        self.stable_index = offset_index  # entries up to here are durable

    # --- reading -------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self.offset_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def term(self, index: int) -> int | None:
        """The term of the entry at ``index``; None past the end.
        Raises CompactedError below the snapshot."""
        if index == self.offset_index:
            return self.offset_term
        if index < self.offset_index:
            raise CompactedError(index, self.offset_index)
        if index > self.last_index:
            return None
        return self.entries[index - self.offset_index - 1].term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.offset_index - 1]

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except CompactedError:
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Paper 5.4.1: a candidate's log is at least as up-to-date as ours."""
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi); at least one entry when any, then up to ``max_bytes``."""
        if lo < self.offset_index + 1:
            raise CompactedError(lo, self.offset_index)
        hi = min(hi, self.last_index + 1)
        if lo >= hi:
            return []
        start = lo - self.offset_index - 1
        stop = hi - self.offset_index - 1
        if max_bytes is None:
            return self.entries[start:stop]
        out: list[Entry] = []
        size = 0
        for k in range(start, stop):
            e = self.entries[k]
            size += e.size()
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    def unstable(self) -> list[Entry]:
        return self.entries[self.stable_index - self.offset_index :]

    def last_index_with_term_at_most(self, index: int, term: int) -> int:
        """The largest i <= index whose term is <= ``term`` (terms never decrease
        along the log, so a bisection finds it). Used by the fast back-up of
        paper 5.3: one round trip per conflicting term, not per entry."""
        index = min(index, self.last_index)
        if index <= self.offset_index:
            return index
        k = index - self.offset_index  # entries[:k] are indices offset+1..index
        terms = _TermView(self.entries, k)
        pos = bisect_right(terms, term)  # entries[:pos] have term <= term
        # pos == 0: the snapshot point is committed, so it matches on every node
        return self.offset_index + pos

    # --- writing -------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Append ``entries``, replacing any suffix from ``entries[0].index`` on."""
        if not entries:
            return
        first = entries[0].index
        assert self.offset_index < first <= self.last_index + 1, (first, self.offset_index)
        keep = first - self.offset_index - 1
        if keep < len(self.entries):
            del self.entries[keep:]
            self.stable_index = min(self.stable_index, first - 1)
        assert not self.entries or entries[0].term >= self.entries[-1].term
        self.entries.extend(entries)

    def stable_to(self, index: int) -> None:
        self.stable_index = max(self.stable_index, min(index, self.last_index))

    def compact(self, index: int) -> None:
        """Drop entries up to ``index`` (covered by a snapshot)."""
        if index <= self.offset_index:
            return
        assert index <= self.last_index, (index, self.last_index)
        term = self.term(index)
        assert term is not None
        del self.entries[: index - self.offset_index]
        self.offset_index = index
        self.offset_term = term
        self.stable_index = max(self.stable_index, index)

    def restore(self, index: int, term: int, keep_suffix: bool) -> None:
        """Reset the log to start after a snapshot at (index, term). Paper 7: if
        the log has that entry, the entries after it are kept; else all goes."""
        if keep_suffix and self.match_term(index, term):
            self.compact(index)
            return
        self.entries = []
        self.offset_index = index
        self.offset_term = term
        self.stable_index = index


class _TermView:
    """A read-only sequence of the first ``n`` entries' terms, for bisect."""

    __slots__ = ("_entries", "_n")

    def __init__(self, entries: list[Entry], n: int) -> None:
        self._entries = entries
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, k: int) -> int:
        return self._entries[k].term
