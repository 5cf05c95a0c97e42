"""Reading the shared WAL: one pass over every segment hands each record to its group.

Pure reading: nothing on disk is touched (``shared.py`` cuts a torn tail and writes
the records that make a recovery durable). Per group the replay rebuilds the log
(an entry at index k replaces the group's entries from k on, as a new leader's
entries do), the latest hard state and snapshot record, and where each entry lives
(``runs``: which segment holds the live records, so old segments can be deleted).

What counts as damage to a group (it then recovers, the other groups load):
  * a gap in its record sequence (``rseq``): a damaged or missing record was its;
  * its last record lies before a damaged stretch of the log: its newest records
    may have been in it (nothing after the damage vouches for the group);
  * a missing segment at or after the one current when the group was created;
  * entries that do not continue from its snapshot, a missing snapshot file.
A bad frame at the end of the last segment with nothing valid after it is a torn
write (a crash during the last sync) and is reported for ``shared.py`` to cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nodes.raft.messages import Entry, HardState

from .records import RecordError, find_frame_after, scan_frames
from .shared_records import (
    BODY_PREFIXES,
    TAG_GROUP_COPY,
    TAG_GROUP_ENTRY,
    TAG_GROUP_HARD_STATE,
    TAG_GROUP_RESTART,
    TAG_GROUP_SNAPSHOT,
    GroupMeta,
    GroupRecord,
    decode_group_record,
)

SEGMENT_NAME = re.compile(r"^(\d{20})\.wal$")

Position = tuple[int, int]  # (segment sequence number, byte offset)


def segment_name(seq: int) -> str:
    return f"{seq:020d}.wal"


@dataclass(slots=True)
class SegmentFile:
    seq: int
    path: Path
    size: int


def list_segments(directory: Path) -> list[SegmentFile]:
    found = []
    for path in directory.iterdir():
        match = SEGMENT_NAME.match(path.name)
        if match:
            found.append(SegmentFile(int(match.group(1)), path, path.stat().st_size))
    return sorted(found, key=lambda s: s.seq)


@dataclass(slots=True)
class GroupReplay:
    """What the WAL says about one group (see the module docstring)."""

    slot: int
    entries: list[Entry] = field(default_factory=list)
    base: int | None = None  # the index of the last snapshot record, if any
    marker: tuple[int, int] | None = None  # (index, term) of the last snapshot record
    hard_state: HardState | None = None
    rseq: int = 0  # the last record's sequence number, 0 if none was seen
    last_at: Position = (-1, -1)  # where its last record is
    broken: str | None = None  # why its chain of records broke (until a restart record)
    runs: list[list[int]] = field(default_factory=list)  # [first index, segment seq]

    def last_index(self) -> int | None:
        if self.entries:
            return self.entries[-1].index
        return self.base

    def add_entry(self, entry: Entry, seq: int) -> str | None:
        last = self.last_index()
        k = entry.index
        # With no entries yet the log may start anywhere above the snapshot record: the
        # entries between were in segments deleted after a later snapshot.
        if self.entries and k > last + 1:  # type: ignore[operator]
            return f"entry {k} follows {last}: entries are missing"
        if self.base is not None and k <= self.base:
            return f"entry {k} at or below the snapshot at {self.base}"
        if self.entries and k <= last:  # type: ignore[operator]
            del self.entries[max(0, k - self.entries[0].index):]
        self.entries.append(entry)
        cut_runs(self.runs, k)
        if not self.runs or self.runs[-1][1] != seq:
            self.runs.append([k, seq])
        return None

    def copy_forward(self, entries: list[Entry], seq: int) -> None:
        """Every live entry again, in segment ``seq``: from now on they are read from
        there (the segments holding the originals may have been deleted since)."""
        if not entries:
            return
        first = entries[0].index
        self.entries = [e for e in self.entries if e.index < first] + entries
        cut_runs(self.runs, first)
        self.runs.append([first, seq])

    def cut(self, last_index: int) -> None:
        """Keep the entries up to ``last_index``."""
        if self.entries:
            del self.entries[max(0, last_index + 1 - self.entries[0].index):]
        cut_runs(self.runs, last_index + 1)


def cut_runs(runs: list[list[int]], index: int) -> None:
    """Forget where the entries from ``index`` on were (they are being replaced)."""
    while runs and runs[-1][0] >= index:
        runs.pop()


def prune_runs(runs: list[list[int]], base: int) -> None:
    """Forget the runs wholly at or below the snapshot at ``base``."""
    while len(runs) > 1 and runs[1][0] <= base + 1:
        runs.pop(0)


@dataclass(slots=True)
class WalReplay:
    groups: dict[int, GroupReplay]
    torn: tuple[SegmentFile, int, str] | None  # the last segment's torn tail: cut it
    damage: list[tuple[Position, str]]  # damaged stretches, in log order
    max_slot: int  # the highest slot any record names (never reused while it is)


def _next_valid(data: bytes, after: int) -> int | None:
    found = [find_frame_after(data, after, prefix) for prefix in BODY_PREFIXES]
    valid = [f for f in found if f is not None]
    return min(valid) if valid else None


def read_records(
    seg: SegmentFile, data: bytes, is_last: bool
) -> tuple[list[tuple[int, GroupRecord]], list[tuple[int, str]], tuple[int, str] | None]:
    """(offset, record) of every readable record, the damaged stretches (offset, why),
    and the torn tail (offset, why) if the last segment ends in one."""
    records: list[tuple[int, GroupRecord]] = []
    damage: list[tuple[int, str]] = []
    pos = 0
    while pos < len(data):
        scan = scan_frames(data[pos:] if pos else data)
        for offset, body in scan.frames:
            try:
                records.append((pos + offset, decode_group_record(body)))
            except RecordError as exc:
                damage.append((pos + offset, f"{seg.path}, byte offset {pos + offset}: {exc}"))
        if scan.problem is None:
            break
        bad_at = pos + scan.valid_end
        later = _next_valid(data, bad_at)
        if later is None:
            if is_last:
                return records, damage, (bad_at, scan.problem)
            damage.append((bad_at, f"{seg.path}, byte offset {bad_at}: {scan.problem} in a "
                                   "segment that is not the last one (those are complete)"))
            break
        damage.append((bad_at, f"{seg.path}, byte offset {bad_at}: {scan.problem}; a valid "
                               f"record follows at byte offset {later}"))
        pos = later
    return records, damage, None


def replay(segments: list[SegmentFile], metas: dict[int, GroupMeta]) -> WalReplay:
    """Read every segment in order and rebuild each group's state (module docstring)."""
    groups: dict[int, GroupReplay] = {}
    damage: list[tuple[Position, str]] = []
    torn = None
    max_slot = 0
    prev_seq = None
    for k, seg in enumerate(segments):
        if prev_seq is not None and seg.seq != prev_seq + 1:
            why = (f"{seg.path.parent}: WAL segments {prev_seq + 1}..{seg.seq - 1} are missing "
                   f"(was a segment file removed?)")
            damage.append(((seg.seq, -1), why))
            for slot, meta in metas.items():
                if meta.born_seq < seg.seq:
                    _break(groups.setdefault(slot, GroupReplay(slot)), why)
        prev_seq = seg.seq
        records, bad, tail = read_records(seg, seg.path.read_bytes(), k == len(segments) - 1)
        damage += [((seg.seq, offset), why) for offset, why in bad]
        if tail is not None:
            torn = (seg, tail[0], tail[1])
        for offset, rec in records:
            max_slot = max(max_slot, rec.slot)
            g = groups.setdefault(rec.slot, GroupReplay(rec.slot))
            _apply(g, rec, (seg.seq, offset))
    for at, why in damage:
        for slot, meta in metas.items():
            g = groups.setdefault(slot, GroupReplay(slot))
            if meta.born_seq <= at[0] and g.last_at < at:
                _break(g, f"its last record precedes damage ({why}): its newest records "
                          "may have been there")
    return WalReplay(groups, torn, damage, max_slot)


def _break(g: GroupReplay, why: str) -> None:
    if g.broken is None:
        g.broken = why


def _apply(g: GroupReplay, rec: GroupRecord, at: Position) -> None:
    if rec.kind == TAG_GROUP_RESTART:
        g.broken = None
        g.cut(rec.index)
        g.entries = [e for e in g.entries if e.index > rec.base]
        g.base = rec.base
        g.marker = (rec.base, rec.term) if rec.base else None
        prune_runs(g.runs, rec.base)
    elif g.rseq and rec.rseq != g.rseq + 1:
        _break(g, f"record {g.rseq + 1} of the group is missing (record {rec.rseq} follows "
                  f"{g.rseq} in segment {at[0]} at byte offset {at[1]})")
    elif not g.rseq and rec.rseq != 1 and not rec.checkpoint:
        _break(g, f"the group's records start at record {rec.rseq} (segment {at[0]}, "
                  f"byte offset {at[1]}): earlier ones are missing")
    g.rseq = rec.rseq
    g.last_at = at
    if g.broken is not None or rec.kind == TAG_GROUP_RESTART:
        return
    if rec.kind == TAG_GROUP_ENTRY:
        assert rec.entry is not None
        problem = g.add_entry(rec.entry, at[0])
        if problem is not None:
            _break(g, f"{problem} (segment {at[0]}, byte offset {at[1]})")
    elif rec.kind == TAG_GROUP_COPY:
        g.copy_forward(list(rec.entries), at[0])
    elif rec.kind == TAG_GROUP_HARD_STATE:
        g.hard_state = rec.hard_state
    elif rec.kind == TAG_GROUP_SNAPSHOT:
        if rec.keep:
            g.entries = [e for e in g.entries if e.index > rec.index]
        else:
            g.entries = []
            g.runs.clear()
        g.base = rec.index
        g.marker = (rec.index, rec.term)
        prune_runs(g.runs, rec.index)
