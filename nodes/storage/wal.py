"""The write-ahead log: log entries in append-only segment files of bounded size.

Layout: ``<data dir>/wal/<index of the first record, 20 digits>.seg``. A segment is
a sequence of frames (``records.py``), one entry per frame. A ``save()`` writes all
its records with one ``write`` and one ``fsync`` (group commit); only when the batch
crosses into a new segment is the finished segment fsynced first, so that every
segment but the last is always complete.

Invariants (checked on every read; a violation is a ``CorruptionError``):
  * in segment order, record indices strictly increase, and a segment's name is
    the index of its first record;
  * above the snapshot index the records are contiguous from ``snapshot.index + 1``
    (below it there may be gaps: a snapshot can jump the log forward);
  * a bad frame can only be the torn tail of the last segment, with no valid
    record after it. Anything else is damage: at open the log is cut there and
    the node recovers from its peers (``DiskStorage``, ``nodes.raft.core``).

Truncating a suffix is physical (unlink whole segments, ``ftruncate`` the one that
holds the first replaced record) rather than a "truncate-from" record, because:
  1. names keep meaning "first index" and keep increasing, so whether a snapshot
     covers a segment is a comparison of names (``next.first_index <= snapshot + 1``);
     with truncate records a later segment could start below an earlier one and
     that question would need a full replay;
  2. the bytes satisfy the invariants above, so recovery never reinterprets a
     superseded record and every anomaly is corruption, not "probably overwritten";
  3. replaced entries stop taking disk space.
The price is paid only on truncation (a follower whose uncommitted suffix conflicts
with a new leader, or a snapshot from the leader): a directory fsync after the
unlinks and an fsync of the cut file, before the new records are written. The
unlinks go last segment first and are durable before the cut, so a crash at any
point leaves a prefix of the old log that still holds every record below the cut:
only records that were being replaced (never committed) can be lost early.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import msgpack

from nodes.raft.messages import Entry

from .errors import CorruptionError
from .files import FileOps
from .records import (
    ENTRY_BODY_PREFIX,
    FRAME_HEADER,
    TAG_ENTRY,
    RecordError,
    decode_entry,
    find_frame_after,
    scan_frames,
)

log = logging.getLogger(__name__)

SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}.seg"


@dataclass(slots=True)
class Segment:
    first_index: int
    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class TornTail:
    """Where the readable log stops: the first bad frame (or out-of-order record).

    ``torn`` is True for an incomplete final record of the last segment with no valid
    record after it (a crash cut its write short); False for damage anywhere else
    (a flipped bit, a lost or reordered record): then everything from ``offset`` on,
    this segment's rest and every later segment, is unreadable as a log."""

    segment: Segment
    offset: int
    problem: str
    torn: bool = True


@dataclass(slots=True)
class Replay:
    entries: list[Entry]  # the records above the snapshot index, in order
    last_record_index: int  # the last readable record's index, 0 if there is none
    torn: TornTail | None  # where reading stopped early (cut by ``start``)


def list_segments(directory: Path) -> list[Segment]:
    segments = []
    for path in directory.iterdir():
        match = SEGMENT_NAME.match(path.name)
        if match:
            segments.append(Segment(int(match.group(1)), path, path.stat().st_size))
    return sorted(segments, key=lambda s: s.first_index)


def record_offsets(path: Path) -> list[int]:
    """Byte offsets of the valid records of one segment (for tools and tests that
    cut or damage a segment at a record boundary)."""
    return [offset for offset, _ in scan_frames(path.read_bytes()).frames]


class Wal:
    """The segments of one data directory; not thread-safe (one driver thread writes)."""

    def __init__(self, directory: Path, ops: FileOps, segment_bytes: int) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._ops = ops
        self._segments = list_segments(directory)
        self._fd: int | None = None  # append descriptor of the last segment
        self._pack = msgpack.Packer(use_bin_type=True).pack  # entry bodies, as records._pack
        self.last_record_index = 0

    @property
    def segments(self) -> list[Segment]:
        return list(self._segments)

    # --- reading ---------------------------------------------------------------

    def replay(self, snapshot_index: int, allow_torn_tail: bool) -> Replay:
        """Read and check every record; touches nothing on disk.

        With ``allow_torn_tail`` (at open) reading stops at the first bad frame or
        out-of-order record and says where (``Replay.torn``, for ``start`` to cut):
        the records before it are the intact prefix. Whether the cut loses anything
        that was acknowledged is the caller's question (``DiskStorage`` compares with
        the promise in the hard state). Without it (while we own the files) any bad
        frame raises ``CorruptionError``.
        """
        entries: list[Entry] = []
        prev = 0
        for k, seg in enumerate(self._segments):
            data = seg.path.read_bytes()
            scan = scan_frames(data)
            for offset, body in scan.frames:
                problem = None
                try:
                    entry = decode_entry(body)
                except RecordError as exc:
                    problem = str(exc)
                else:
                    problem = self._order_problem(seg, offset, entry.index, prev, snapshot_index)
                if problem is not None:
                    if not allow_torn_tail:
                        raise CorruptionError(seg.path, offset, problem)
                    return Replay(entries, prev, TornTail(seg, offset, problem, torn=False))
                if entry.index > snapshot_index:
                    entries.append(entry)
                prev = entry.index
            if scan.problem is not None:
                is_last = k == len(self._segments) - 1
                torn = self._torn_tail(seg, data, scan.valid_end, scan.problem, is_last)
                if not allow_torn_tail:
                    what = "at the log's end" if torn.torn else "in the middle of the log"
                    raise CorruptionError(seg.path, torn.offset, f"{torn.problem} {what}")
                return Replay(entries, prev, torn)
        return Replay(entries, prev, None)

    @staticmethod
    def _order_problem(seg: Segment, offset: int, index: int, prev: int,
                       snapshot_index: int) -> str | None:
        if offset == 0 and index != seg.first_index:
            return f"first record has index {index} but the file is named for {seg.first_index}"
        if index <= prev:
            return f"record index {index} follows {prev} (indices must increase)"
        if index > snapshot_index:
            expected = max(prev, snapshot_index) + 1
            if index != expected:
                return (
                    f"record index {index} where {expected} was expected: log records "
                    "are missing (was a segment file removed?)"
                )
        return None

    @staticmethod
    def _torn_tail(seg: Segment, data: bytes, offset: int, problem: str, is_last: bool) -> TornTail:
        """Tell a torn tail (a crash during the last write) from damage."""
        if not is_last:
            return TornTail(seg, offset, f"{problem} in a segment that is not the last one "
                            "(those are complete and fsynced)", torn=False)
        later = find_frame_after(data, offset, ENTRY_BODY_PREFIX)
        if later is not None:
            return TornTail(seg, offset, f"{problem}; a valid record follows at byte "
                            f"offset {later}", torn=False)
        return TornTail(seg, offset, problem)

    def term_at(self, index: int) -> int | None:
        """The term of the record with ``index``; None if the WAL holds no such record.
        Reads one segment: used only when a snapshot arrives, which is rare."""
        holding = [seg for seg in self._segments if seg.first_index <= index]
        if not holding:
            return None
        for _, body in scan_frames(holding[-1].path.read_bytes()).frames:
            entry = decode_entry(body)
            if entry.index >= index:
                return entry.term if entry.index == index else None
        return None

    def read_entries(self, snapshot_index: int) -> list[Entry]:
        return self.replay(snapshot_index, allow_torn_tail=False).entries

    # --- opening ---------------------------------------------------------------

    def start(self, replay: Replay) -> None:
        """Cut the log where ``replay`` stopped reading (loudly), then get ready to
        append. A torn tail is the expected trace of a crash during a write; damage is
        cut the same way (the caller has already recorded that the node must be
        repaired by its peers before it may vote, see ``DiskStorage``)."""
        if replay.torn is not None:
            seg, offset = replay.torn.segment, replay.torn.offset
            later = [s for s in self._segments if s.first_index > seg.first_index]
            log.warning(
                "%s: %s record at byte offset %d (%s): cutting %d bytes%s",
                seg.path,
                "torn" if replay.torn.torn else "damaged",
                offset,
                replay.torn.problem,
                seg.size - offset,
                f" and {len(later)} later segment(s)" if later else "",
            )
            for victim in reversed(later):  # last first: a crash leaves a prefix
                os.unlink(victim.path)
                self._segments.remove(victim)
            if later:
                self._ops.sync_dir(self.directory, "wal.dir")
            fd = os.open(seg.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, offset)
                self._ops.sync_fd(fd, "wal.repair")
            finally:
                os.close(fd)
            seg.size = offset
        if self._segments and self._segments[-1].size == 0:
            # nothing to lose, so no fsync: if it comes back after a crash it is cut again
            os.unlink(self._segments.pop().path)
        self.last_record_index = replay.last_record_index
        self._open_last()

    def _open_last(self) -> None:
        self._close_fd()
        if self._segments:
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self._close_fd()

    # --- writing ---------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Make ``entries`` durable, replacing every record from ``entries[0].index`` on.

        The caller has checked that the indices are contiguous and fit the log.
        """
        if entries[0].index <= self.last_record_index:
            self.truncate_from(entries[0].index)
        # records.frame(records.encode_entry(entry)), inlined: one reused Packer and
        # one join per save instead of three bytes objects and a bytearray per entry
        pack, crc, header = self._pack, zlib.crc32, FRAME_HEADER.pack
        parts: list[bytes] = []
        pending = 0
        for entry in entries:
            body = pack([TAG_ENTRY, entry.index, entry.term, entry.kind, entry.data])
            size = FRAME_HEADER.size + len(body)
            if self._needs_new_segment(pending, size):
                self._flush(parts, pending)
                parts, pending = [], 0
                self._new_segment(entry.index)
            parts.append(header(len(body), crc(body)))
            parts.append(body)
            pending += size
        self._flush(parts, pending)
        self.last_record_index = entries[-1].index

    def _needs_new_segment(self, pending: int, record: int) -> bool:
        if not self._segments:
            return True
        used = self._segments[-1].size + pending
        # a record larger than a whole segment still gets one of its own
        return used > 0 and used + record > self.segment_bytes

    def _flush(self, parts: list[bytes], size: int) -> None:
        if not parts:
            return
        assert self._fd is not None
        self._ops.point("wal.write")
        self._ops.write_all(self._fd, b"".join(parts), "wal")
        self._segments[-1].size += size
        self._ops.point("wal.fsync")
        self._ops.sync_fd(self._fd, "wal")

    def _new_segment(self, first_index: int) -> None:
        assert not self._segments or first_index > self._segments[-1].first_index
        self._ops.point("wal.rollover")
        path = self.directory / segment_name(first_index)
        self._close_fd()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._segments.append(Segment(first_index, path, 0))
        self._ops.sync_dir(self.directory, "wal.dir")

    def truncate_from(self, index: int) -> None:
        """Durably remove every record with an index ``>= index`` (see the module
        docstring for the order of steps and why a crash in between is safe)."""
        self._ops.point("wal.truncate")
        self._close_fd()
        removed = False
        while self._segments and self._segments[-1].first_index >= index:
            os.unlink(self._segments.pop().path)
            removed = True
        if removed:
            self._ops.sync_dir(self.directory, "wal.dir")
        self.last_record_index = 0
        if self._segments:
            seg = self._segments[-1]
            cut, self.last_record_index = self._locate(seg, index)
            if cut is not None:
                fd = os.open(seg.path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, cut)
                    self._ops.sync_fd(fd, "wal.truncate")
                finally:
                    os.close(fd)
                seg.size = cut
        self._open_last()

    @staticmethod
    def _locate(seg: Segment, index: int) -> tuple[int | None, int]:
        """The offset of the first record ``>= index`` in ``seg`` (None if there is none)
        and the index of the last record before it."""
        before = 0
        for offset, body in scan_frames(seg.path.read_bytes()).frames:
            entry_index = decode_entry(body).index
            if entry_index >= index:
                return offset, before
            before = entry_index
        return None, before

    def drop_covered(self, snapshot_index: int) -> list[Path]:
        """Delete the segments whose every record is covered by a snapshot at
        ``snapshot_index``; the last segment is kept (it is the one being appended to).

        No fsync of the directory: a deletion that a crash undoes brings back a
        segment that the durable snapshot still covers, which is skipped on replay
        and deleted again at the next compaction.
        """
        covered = 0
        segs = self._segments
        while covered + 1 < len(segs) and segs[covered + 1].first_index <= snapshot_index + 1:
            covered += 1
        if not covered:
            return []
        self._ops.point("compact.delete")
        dropped = [seg.path for seg in segs[:covered]]
        for path in dropped:
            os.unlink(path)
        del segs[:covered]
        return dropped
