"""``SharedWal``: one write-ahead log for every Raft group a node hosts, so one fsync
per loop turn makes every group's entries durable (Dragonboat's shared log store,
TiKV's raft-engine, in miniature).

Layout::

    <dir>/LOCK                                  flock'ed while open
    <dir>/meta                                  cluster id, node id
    <dir>/wal/<seq, 20 digits>.wal              segments of records of every group
    <dir>/groups/<slot>/meta                    group id, slot, initial configuration
    <dir>/groups/<slot>/snapshot-<i>-<t>.snap   the group's latest snapshot

Two ways to write: ``GroupStorage.save()`` is the ``Storage`` protocol
(``nodes.raft.storage``): durable when it returns. A host driving many groups calls
``group.stage(hard_state, entries, snapshot)`` for each group with something to
persist, then ``SharedWal.sync()`` once: every staged record of every group goes
out in one write and one fsync (group commit across groups); ``save`` is ``stage``
then ``sync``. A snapshot (installed or compacted) goes to its own file at once,
atomically (write, fsync, rename), as ``DiskStorage`` does.

Records (``shared_records.py``) carry the group's slot and its record sequence
number. Hard state and promise ride the WAL as records: the fsync that covers a
turn's entries covers them too, with no file of their own. Truncating a group's
suffix is logical (an entry at index k replaces the group's entries from k on),
because other groups' records share the segments.

Compaction per group: each group remembers which segment holds its oldest live
entry; a segment is deleted once it is older than every group's oldest live entry
(so only a prefix of the segments ever goes, and a gap in the sequence numbers is
damage). Every segment starts with a checkpoint of every group's hard state, so an
old segment is needed only for its entries. A group that does not compact pins the
oldest segment. Two bounds, once the WAL holds more than ``max_segments`` segments:
at the next new segment, a pinning group with at most ``rewrite_entries`` live
entries (an idle or young group, far from its snapshot interval) has them copied
forward into one record of the new segment (TiKV raft-engine's rewrite), and the old
segments go; a bigger one is named by ``groups_pinning()`` for the host to ask its
state machine for a snapshot (the bound is then that group's snapshot interval, as
for any node).

Recovery at open, one pass over the WAL (``shared_replay.py``): a torn tail of the
last segment is cut; a damaged record or stretch elsewhere is skipped and only the
groups whose record sequence shows a gap there (or whose records end before it)
are damaged. A damaged group keeps its intact prefix and starts recovering
(``HardState.recovering``, nodes.raft.core: no vote or campaign until a leader has
repaired it), recorded durably by a restart record and a hard state in the WAL
before the group is used; the other groups load normally.

A lost suffix: the promise rides the same log as the entries it vouches for, so a
disk that silently drops the last fsynced stretch of the WAL at a record boundary
looks like a crash before that write. With ``witness=True`` each sync also records
the WAL's durable end in ``<dir>/witness`` (two checksummed slots written in place,
``disk.PromiseFile``): a second fsync per turn, still one for all groups (the price
``DiskStorage`` pays per save for its promise file). A WAL that then opens shorter
than its witness lost acknowledged records, and since what was lost cannot say
whose it was, every group recovers. Without it (the default: one fsync per turn)
such a loss goes unnoticed, as in a WAL of etcd or TiKV.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from types import TracebackType

from nodes.raft.messages import ClusterConfig, Entry, HardState, Snapshot, SnapshotMeta
from nodes.raft.storage import PersistedState, retained_after_snapshot

from .disk import PromiseFile, _check_entries, _read_single_frame
from .errors import (
    CorruptionError,
    StorageError,
    StorageFailedError,
    WrongClusterError,
    WrongNodeError,
)
from .files import CrashHook, DirectoryLock, FileOps
from .records import Meta, RecordError, decode_meta, encode_meta, frame
from .shared_records import (
    GroupId,
    GroupMeta,
    decode_group_meta,
    encode_group_copy,
    encode_group_entry,
    encode_group_hard_state,
    encode_group_meta,
    encode_group_restart,
    encode_group_snapshot,
)
from .shared_replay import (
    GroupReplay,
    SegmentFile,
    cut_runs,
    list_segments,
    prune_runs,
    read_records,
    replay,
    segment_name,
)
from .snapshots import list_snapshots, read_snapshot, write_snapshot

log = logging.getLogger(__name__)

SHARED_CRASH_POINTS: tuple[str, ...] = (
    "meta.write",  # creating the directory
    "meta.fsync",
    "meta.rename",
    "meta.dirsync",
    "group.meta.write",  # creating a group
    "group.meta.fsync",
    "group.meta.rename",
    "group.meta.dirsync",
    "snapshot.write",  # a group's snapshot file (installed or compacted)
    "snapshot.fsync",
    "snapshot.rename",
    "snapshot.dirsync",
    "wal.rollover",  # before a new segment is created
    "wal.write",
    "wal.fsync",
    "promise.write",  # with witness=True: the WAL's durable end, after its fsync
    "promise.fsync",
    "sync.done",
    "compact.delete",  # before segments or snapshot files no group needs are deleted
    "compact.done",
    "group.remove",  # before a group's meta file is removed
)
"""Every name the crash hook can be called with."""

DEFAULT_SEGMENT_BYTES = 8 << 20
DEFAULT_MAX_SEGMENTS = 8
DEFAULT_REWRITE_ENTRIES = 256
WITNESS_OFFSET_SPAN = 1 << 40
"""The witness keeps the WAL's durable end as one number: seq * span + byte offset."""

_ENTRY, _HARD_STATE, _SNAPSHOT, _RESTART = range(4)


def _group_dir_name(slot: int) -> str:
    return f"{slot:010d}"


class _Group:
    """What the writer keeps of one group: indices and where its live entries are,
    never the entries themselves (the core holds those)."""

    def __init__(self, meta: GroupMeta, path: Path) -> None:
        self.meta = meta
        self.path = path
        self.snapshot: Snapshot | None = None
        self.base = 0  # the snapshot's index (0: none)
        self.last = 0  # the last entry's index (the snapshot's if the log is empty)
        self.hard_state = HardState()  # the latest staged
        self.written_hard_state = HardState()  # the latest written to the WAL (checkpoints)
        self.rseq = 0
        # Invariant: runs[0] holds base + 1 when last > base; [first index, segment seq]
        self.runs: list[list[int]] = []
        self.terms: list[list[int]] = []  # [first index, term], for a snapshot's test
        self.fresh: PersistedState | None = None  # loaded at open, until first changed
        self.removed = False

    def needed_seq(self) -> int | None:
        """The oldest segment holding a live entry of this group."""
        if self.last <= self.base or not self.runs:
            return None
        return self.runs[0][1]

    def term_at(self, index: int) -> int | None:
        if not self.base < index <= self.last:
            return None
        term = None
        for first, t in self.terms:
            if first > index:
                break
            term = t
        return term

    def record_entries(self, entries: list[Entry]) -> None:
        cut_runs(self.terms, entries[0].index)
        for e in entries:
            if not self.terms or self.terms[-1][1] != e.term:
                self.terms.append([e.index, e.term])
        self.last = entries[-1].index

    def drop_through(self, base: int, keep_log: bool) -> None:
        self.base = base
        if keep_log:
            prune_runs(self.runs, base)
            prune_runs(self.terms, base)
            self.last = max(self.last, base)
            if self.last == base:  # nothing live: a kept run would name a deleted segment
                self.runs.clear()
                self.terms.clear()
        else:
            self.runs.clear()
            self.terms.clear()
            self.last = base


class GroupStorage:
    """One group's view of the shared WAL: the ``Storage`` protocol plus ``stage``."""

    def __init__(self, wal: SharedWal, group: _Group) -> None:
        self._wal = wal
        self._group = group

    @property
    def group_id(self) -> GroupId:
        return self._group.meta.group_id

    @property
    def initial_config(self) -> ClusterConfig:
        return self._group.meta.initial_config

    @property
    def last_index(self) -> int:
        return self._group.last

    def load(self) -> PersistedState:
        return self._wal._load(self._group)

    def stage(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """Buffer what ``save`` would make durable; ``SharedWal.sync()`` writes it. A
        snapshot's file is written (durably) now; its record waits for the sync."""
        self._wal._stage(self._group, hard_state, entries, snapshot)

    def save(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """See ``Storage.save``: ``stage`` then ``SharedWal.sync()``."""
        self.stage(hard_state, entries, snapshot)
        self._wal.sync()

    def compact(self, snapshot: Snapshot) -> None:
        """See ``Storage.compact``; also deletes the segments no group needs any more."""
        self._wal._compact(self._group, snapshot)

    def snapshot(self) -> Snapshot | None:
        return self._group.snapshot


class SharedWal:
    """The shared WAL of one node; see the module docstring.

    ``node_id`` and ``cluster_id`` are recorded when the directory is created and
    checked afterwards; a group created with ``node_id`` among its voters starts
    recovering, as a founder's new ``DiskStorage`` does (it may be a wiped one).
    ``fsync=False`` skips the syncs (still counted): for tests only. ``crash_hook`` is
    called with a name from ``SHARED_CRASH_POINTS`` before each step.

    Not thread-safe: one driver thread owns it. After a write fails part-way every
    method raises ``StorageFailedError``: abandon it and reopen the directory.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        fsync: bool = True,
        *,
        node_id: str = "",
        cluster_id: str = "",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        rewrite_entries: int = DEFAULT_REWRITE_ENTRIES,
        compress_snapshots: bool = True,
        witness: bool = False,
        crash_hook: CrashHook | None = None,
    ) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        self.path = Path(directory)
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.segment_bytes = segment_bytes
        self.max_segments = max_segments
        self.rewrite_entries = rewrite_entries
        self.compress_snapshots = compress_snapshots
        self._ops = FileOps(fsync, crash_hook)
        self._failed = False
        self._closed = False
        self._groups: dict[GroupId, _Group] = {}
        self._staged: list[tuple[_Group, int, object]] = []
        self._segments: list[SegmentFile] = []
        self._fd: int | None = None
        self._segment_has_records = False  # more than the checkpoints since the rollover
        self.damaged: dict[GroupId, list[str]] = {}  # groups found damaged at open, and why
        self.path.mkdir(parents=True, exist_ok=True)
        self._witness: PromiseFile | None = None
        if witness or (self.path / "witness").exists():
            # once a witness was kept, a WAL shorter than it is damage even if the
            # caller no longer asks for one (it stops being updated only on request)
            self._witness = PromiseFile(self.path / "witness", self._ops)
        self._witness_on = witness
        self._lock = DirectoryLock(self.path)
        try:
            self._open()
        except BaseException:
            self._close_fd()
            self._lock.release()
            raise

    # --- opening ---------------------------------------------------------------

    def _open(self) -> None:
        self._open_meta()
        self._wal_dir = self.path / "wal"
        self._groups_dir = self.path / "groups"
        for d in (self._wal_dir, self._groups_dir):
            d.mkdir(exist_ok=True)
        metas = self._read_group_metas()
        self._segments = list_segments(self._wal_dir)
        found = replay(self._segments, {m.slot: m for m in metas.values()})
        if found.torn is not None:
            self._cut_torn_tail(*found.torn)
        lost = self._lost_suffix()
        for _, why in found.damage:
            log.warning("%s: damaged WAL (%s): the groups whose records were there recover "
                        "(named below), the others are intact", self.path, why)
        self._next_slot = max([found.max_slot, *(m.slot for m in metas.values())]) + 1
        if self._segments and self._segments[-1].size == 0 and len(self._segments) > 1:
            os.unlink(self._segments.pop().path)  # an empty segment: nothing to lose
        if not self._segments:
            self._new_segment(1)
        else:
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
            self._segment_has_records = True
        bad_snapshots: list[Path] = []
        for slot, meta in metas.items():
            g_r = found.groups.get(slot) or GroupReplay(slot)
            if lost is not None and g_r.broken is None:
                g_r.broken = lost
            self._groups[meta.group_id] = self._load_group(meta, g_r, bad_snapshots)

        if self._staged:
            self.sync()  # the damaged groups are durably recovering before anything else
        if self._witness is not None and not self._witness_on:
            self._witness.close()
            os.unlink(self._witness.path)  # the caller stopped keeping one
            self._witness = None
        for path in bad_snapshots:
            path.unlink()

    def _open_meta(self) -> None:
        meta_path = self.path / "meta"
        for leftover in self.path.glob("*.tmp"):
            leftover.unlink()  # an atomic write that a crash interrupted: never live data
        if not meta_path.exists():
            others = [p.name for p in self.path.iterdir() if p.name not in ("LOCK", "wal", "groups")]
            if others or any((self.path / "wal").glob("*.wal")):
                raise StorageError(
                    f"{self.path} holds other files ({', '.join(sorted(others)[:5]) or 'WAL'}) "
                    "and no meta file, so it is not a shared WAL directory: give the node "
                    "a new or empty directory"
                )
            self._ops.sync_dir(self.path.parent, "meta.dir")
            meta = Meta(self.cluster_id, self.node_id, ClusterConfig())
            self._ops.atomic_write(meta_path, frame(encode_meta(meta)), "meta")
            return
        offset, body = _read_single_frame(meta_path)
        try:
            meta = decode_meta(body)
        except RecordError as exc:
            raise CorruptionError(meta_path, offset, str(exc)) from None
        if meta.cluster_id != self.cluster_id:
            raise WrongClusterError(self.path, meta.cluster_id, self.cluster_id)
        if meta.node_id != self.node_id:
            raise WrongNodeError(self.path, meta.node_id, self.node_id)

    def _read_group_metas(self) -> dict[int, GroupMeta]:
        metas: dict[int, GroupMeta] = {}
        for d in sorted(self._groups_dir.iterdir()):
            meta_path = d / "meta"
            if not meta_path.exists():
                # a creation or removal that a crash interrupted: never a live group
                shutil.rmtree(d)
                continue
            for leftover in d.glob("*.tmp"):
                leftover.unlink()
            offset, body = _read_single_frame(meta_path)
            try:
                meta = decode_group_meta(body)
            except RecordError as exc:
                raise CorruptionError(meta_path, offset, str(exc)) from None
            metas[meta.slot] = meta
        return metas

    def _lost_suffix(self) -> str | None:
        """Why the WAL ends before the durable end its witness recorded, if it does."""
        if self._witness is None or not self._witness.value:
            return None
        seq, offset = divmod(self._witness.value, WITNESS_OFFSET_SPAN)
        last = self._segments[-1] if self._segments else None
        if last is not None and (last.seq, last.size) >= (seq, offset):
            return None
        ends = f"segment {last.seq}, byte {last.size}" if last else "no segment at all"
        why = (f"{self._wal_dir}: the WAL ends at {ends} but syncs reached segment {seq}, "
               f"byte {offset} ({self._witness.path}): a suffix of acknowledged records is "
               "lost, and what was lost cannot say whose it was")
        log.warning("%s", why)
        return why

    def _cut_torn_tail(self, seg: SegmentFile, offset: int, problem: str) -> None:
        log.warning("%s: torn record at byte offset %d (%s): cutting %d bytes",
                    seg.path, offset, problem, seg.size - offset)
        fd = os.open(seg.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, offset)
            self._ops.sync_fd(fd, "wal.repair")
        finally:
            os.close(fd)
        seg.size = offset

    def _load_group(self, meta: GroupMeta, g_r: GroupReplay, bad_snapshots: list[Path]) -> _Group:
        group = _Group(meta, self._groups_dir / _group_dir_name(meta.slot))
        damage = [g_r.broken] if g_r.broken else []
        snapshots = list_snapshots(group.path)
        snapshot = None
        if snapshots:
            for _, _, stale in snapshots[:-1]:
                stale.unlink()  # a compaction that a crash interrupted
            try:
                snapshot = read_snapshot(snapshots[-1][2])
            except CorruptionError as exc:
                damage.append(exc.describe())
                bad_snapshots.append(snapshots[-1][2])
        entries, base = _entries_after_snapshot(g_r, snapshot, damage)
        hs = g_r.hard_state or HardState(recovering=self.node_id in meta.initial_config.voters)
        last = entries[-1].index if entries else base
        group.snapshot = snapshot
        group.base = base
        group.rseq = g_r.rseq
        if entries:
            group.record_entries(entries)
        group.last = last
        group.runs = [run for run in g_r.runs if run[0] <= last] if entries else []
        prune_runs(group.runs, base)
        if group.runs and group.runs[0][0] < base + 1:
            group.runs[0][0] = base + 1
        group.hard_state = group.written_hard_state = hs
        if damage:
            log.warning(
                "%s: group %r's storage is damaged (%s); keeping the intact part (entries up "
                "to %d) and recovering: it will not vote or campaign until a leader has "
                "repaired it (nothing to do for the operator; the other groups are intact)",
                self.path, meta.group_id, "; ".join(damage), last,
            )
            self.damaged[meta.group_id] = damage
            term = snapshot.meta.term if snapshot else 0
            self._staged.append((group, _RESTART, (last, base, term)))
            recovering = HardState(hs.term, hs.vote, min(hs.commit, last), min(hs.promised, last),
                                   recovering=True)
            self._staged.append((group, _HARD_STATE, recovering))
            group.hard_state = recovering
        else:
            group.fresh = PersistedState(hs, snapshot, entries, meta.initial_config)
        return group

    # --- groups ----------------------------------------------------------------

    def groups(self) -> list[GroupId]:
        """The ids of the groups this node holds (created and not removed)."""
        return list(self._groups)

    def open_group(self, group_id: GroupId, initial_config: ClusterConfig | None = None) -> GroupStorage:
        """The storage of ``group_id``, created (durably) if the node does not hold it.
        ``initial_config`` is recorded at creation; afterwards the recorded one stays
        in force, as for ``DiskStorage``."""
        self._check_usable()
        if not isinstance(group_id, (str, int)) or isinstance(group_id, bool):
            raise TypeError(f"a group id is a str or an int, not {group_id!r}")
        group = self._groups.get(group_id)
        if group is None:
            group = self._create_group(group_id, initial_config or ClusterConfig())
        return GroupStorage(self, group)

    def _create_group(self, group_id: GroupId, config: ClusterConfig) -> _Group:
        meta = GroupMeta(group_id, self._next_slot, self._segments[-1].seq, config)
        self._next_slot += 1
        group = _Group(meta, self._groups_dir / _group_dir_name(meta.slot))
        try:
            group.path.mkdir()
            self._ops.atomic_write(group.path / "meta", frame(encode_group_meta(meta)), "group.meta")
            self._ops.sync_dir(self._groups_dir, "groups.dir")
        except BaseException:
            self._failed = True
            raise
        hs = HardState(recovering=self.node_id in config.voters)
        group.hard_state = group.written_hard_state = hs  # a checkpoint may precede record 1
        group.fresh = PersistedState(hs, None, [], config)
        self._staged.append((group, _HARD_STATE, hs))  # the group's record 1
        self._groups[group_id] = group
        return group

    def remove_group(self, group_id: GroupId) -> None:
        """Forget ``group_id`` durably: its records in the WAL become garbage (deleted
        with their segments), its directory goes. Its ``GroupStorage`` is unusable."""
        self._check_usable()
        group = self._groups.get(group_id)
        if group is None:
            raise KeyError(f"{self.path}: no group {group_id!r} here (groups: {self.groups()[:10]})")
        try:
            self._ops.point("group.remove")
            os.unlink(group.path / "meta")
            self._ops.sync_dir(group.path, "group.dir")
            shutil.rmtree(group.path)  # the rest is garbage even if a crash brings it back
        except BaseException:
            self._failed = True
            raise
        group.removed = True
        del self._groups[group_id]
        self._drop_segments()

    def groups_pinning(self) -> list[GroupId]:
        """The groups whose oldest live entry is in the oldest segment, once the WAL
        holds more than ``max_segments`` segments: the host should ask them for a
        snapshot (``compact``), which frees that segment."""
        if len(self._segments) <= self.max_segments:
            return []
        oldest = self._segments[0].seq
        return [gid for gid, g in self._groups.items() if g.needed_seq() == oldest]

    # --- staging and syncing ---------------------------------------------------

    def _stage(
        self, group: _Group, hard_state: HardState | None, entries: list[Entry],
        snapshot: Snapshot | None,
    ) -> None:
        self._check_usable(group)
        base, last = group.base, group.last
        keep_log = False
        if snapshot is not None:
            keep_log = group.term_at(snapshot.meta.index) == snapshot.meta.term
            base = snapshot.meta.index
            last = group.last if keep_log else base
        if entries:
            _check_entries(entries, base, last)
        group.fresh = None
        if snapshot is not None:
            self._write_snapshot(group, snapshot)
            group.drop_through(snapshot.meta.index, keep_log)
            self._staged.append((group, _SNAPSHOT, (snapshot.meta, keep_log)))
        if entries:
            group.record_entries(entries)
            cut_runs(group.runs, entries[0].index)
            self._staged.extend((group, _ENTRY, e) for e in entries)
        if hard_state is not None and hard_state != group.hard_state:
            group.hard_state = hard_state
            self._staged.append((group, _HARD_STATE, hard_state))

    def sync(self) -> None:
        """Write every staged record of every group and make them durable with one
        write and one fsync. A segment that has reached ``segment_bytes`` is closed
        first (it is already durable) and the batch goes whole into the next one,
        after a directory fsync: so a segment exceeds the bound by at most one batch,
        and a sync is never split across two files."""
        self._check_usable()
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        try:
            pending = bytearray()
            copied = False
            if self._segment_has_records and self._segments[-1].size >= self.segment_bytes:
                pending = self._roll_over()
                if len(self._segments) > self.max_segments:
                    copied = self._copy_pinned_forward(pending, {g for g, _, _ in staged})
            seq = self._segments[-1].seq
            for group, kind, payload in staged:
                if group.removed:
                    continue
                group.rseq += 1
                pending += frame(_encode(group, group.rseq, kind, payload))
                if kind == _ENTRY:
                    cut_runs(group.runs, payload.index)  # type: ignore[attr-defined]
                    if not group.runs or group.runs[-1][1] != seq:
                        group.runs.append([payload.index, seq])  # type: ignore[attr-defined]
                elif kind == _HARD_STATE:
                    group.written_hard_state = payload  # type: ignore[assignment]
            self._segment_has_records = True
            self._flush(pending)
            if self._witness_on and self._witness is not None:
                last = self._segments[-1]
                self._witness.write(last.seq * WITNESS_OFFSET_SPAN + last.size)
            self._ops.point("sync.done")
            if copied:
                self._drop_segments()
        except BaseException:
            self._failed = True
            raise

    def _flush(self, pending: bytearray) -> None:
        if not pending:
            return
        assert self._fd is not None
        self._ops.point("wal.write")
        self._ops.write_all(self._fd, bytes(pending), "wal")
        self._segments[-1].size += len(pending)
        self._ops.point("wal.fsync")
        self._ops.sync_fd(self._fd, "wal")

    def _roll_over(self) -> bytearray:
        """Start the next segment with a checkpoint of every group's hard state."""
        self._new_segment(self._segments[-1].seq + 1)
        pending = bytearray()
        for group in self._groups.values():
            group.rseq += 1
            body = encode_group_hard_state(group.meta.slot, group.rseq,
                                           group.written_hard_state, checkpoint=True)
            pending += frame(body)
        return pending

    def _copy_pinned_forward(self, pending: bytearray, busy: set[_Group]) -> bool:
        """Copy the live entries of each small group that pins the oldest segment into
        ``pending`` (the new segment's first write), one record per group. Groups with
        records in this batch wait for the next new segment (their state in memory is
        already ahead of the WAL)."""
        oldest = self._segments[0].seq
        new_seq = self._segments[-1].seq
        copied = False
        for group in self._groups.values():
            if (group in busy or group.needed_seq() != oldest
                    or group.last - group.base > self.rewrite_entries):
                continue
            entries = self._read_live_entries(group)
            if entries is None:
                continue
            group.rseq += 1
            pending += frame(encode_group_copy(group.meta.slot, group.rseq, entries))
            group.runs = [[group.base + 1, new_seq]]
            copied = True
        return copied

    def _read_live_entries(self, group: _Group) -> list[Entry] | None:
        """The group's entries after its snapshot, read from the segments its ``runs``
        name (the latest record of each index wins); None if any is missing."""
        seqs = {seq for _, seq in group.runs}
        latest: dict[int, Entry] = {}
        for seg in self._segments[:-1]:
            if seg.seq not in seqs:
                continue
            records, _, _ = read_records(seg, seg.path.read_bytes(), is_last=False)
            for _, rec in records:
                if rec.slot != group.meta.slot:
                    continue
                for entry in (rec.entry,) if rec.entry is not None else rec.entries:
                    latest[entry.index] = entry
        live = [latest.get(i) for i in range(group.base + 1, group.last + 1)]
        if any(e is None or e.term != group.term_at(e.index) for e in live):
            return None
        return live  # type: ignore[return-value]

    def _new_segment(self, seq: int) -> None:
        self._ops.point("wal.rollover")
        path = self._wal_dir / segment_name(seq)
        self._close_fd()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._segments.append(SegmentFile(seq, path, 0))
        self._segment_has_records = False
        self._ops.sync_dir(self._wal_dir, "wal.dir")

    # --- snapshots and compaction ------------------------------------------------

    def _write_snapshot(self, group: _Group, snapshot: Snapshot) -> None:
        try:
            new = write_snapshot(group.path, snapshot, self.compress_snapshots, self._ops)
            others = [(i, t, p) for i, t, p in list_snapshots(group.path) if p != new]
            if others:
                self._ops.point("compact.delete")
                for _, _, path in others:
                    path.unlink()
                key = (snapshot.meta.index, snapshot.meta.term)
                if any((i, t) > key for i, t, _ in others):
                    self._ops.sync_dir(group.path, "snapshot.dir")
        except BaseException:
            self._failed = True
            raise
        group.snapshot = snapshot

    def _compact(self, group: _Group, snapshot: Snapshot) -> None:
        self._check_usable(group)
        if group.snapshot is not None and group.snapshot.meta.index >= snapshot.meta.index:
            return
        group.fresh = None
        self._write_snapshot(group, snapshot)
        group.drop_through(snapshot.meta.index, keep_log=True)
        self._staged.append((group, _SNAPSHOT, (snapshot.meta, True)))
        # the record is durable before any segment it frees is deleted
        self.sync()
        self._drop_segments()
        self._ops.point("compact.done")

    def _drop_segments(self) -> None:
        """Delete the oldest segments that no live group needs (never the last one).
        Not while records are staged: what they undo (a snapshot installed over the
        log) is not durable yet, and the entries it drops may still be needed."""
        if self._staged:
            return
        needed = [s for g in self._groups.values() if (s := g.needed_seq()) is not None]
        keep_from = min([*needed, self._segments[-1].seq])
        doomed = [seg for seg in self._segments if seg.seq < keep_from]
        if not doomed:
            return
        try:
            self._ops.point("compact.delete")
            for seg in doomed:  # oldest first: a crash leaves a suffix, no gap
                os.unlink(seg.path)
            self._ops.sync_dir(self._wal_dir, "wal.dir")
        except BaseException:
            self._failed = True
            raise
        del self._segments[: len(doomed)]

    # --- reading -----------------------------------------------------------------

    def _load(self, group: _Group) -> PersistedState:
        """What a restart would see of ``group`` (re-read from disk unless nothing
        changed since the directory was opened)."""
        self._check_usable(group)
        if group.fresh is not None:
            fresh, group.fresh = group.fresh, None
            return fresh
        found = replay(self._segments, {g.meta.slot: g.meta for g in self._groups.values()})
        g_r = found.groups.get(group.meta.slot) or GroupReplay(group.meta.slot)
        damage = [g_r.broken] if g_r.broken else []
        entries, _ = _entries_after_snapshot(g_r, group.snapshot, damage)
        if damage:
            raise CorruptionError(self._wal_dir, 0, f"group {group.meta.group_id!r}: "
                                  + "; ".join(damage))
        hs = g_r.hard_state or HardState(recovering=self.node_id in group.meta.initial_config.voters)
        return PersistedState(hs, group.snapshot, entries, group.meta.initial_config)

    # --- counters, lifetime ------------------------------------------------------

    @property
    def segments(self) -> list[Path]:
        return [seg.path for seg in self._segments]

    @property
    def fsync_count(self) -> int:
        """Every fsync so far (files and directories), counted even with ``fsync=False``."""
        return sum(self._ops.fsyncs.values())

    @property
    def fsyncs(self) -> Counter[str]:
        """fsyncs by kind: "wal" (syncs), "wal.dir", "wal.repair", "snapshot",
        "snapshot.dir", "group.meta", "group.meta.dir", "groups.dir", "group.dir", "meta"."""
        return Counter(self._ops.fsyncs)

    @property
    def bytes_written(self) -> Counter[str]:
        return Counter(self._ops.bytes_written)

    def _check_usable(self, group: _Group | None = None) -> None:
        if self._closed:
            raise StorageError(f"{self.path}: this shared WAL is closed")
        if self._failed:
            raise StorageFailedError(self.path)
        if group is not None and group.removed:
            raise StorageError(f"{self.path}: group {group.meta.group_id!r} was removed")

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Write what is staged, then release the directory; idempotent."""
        if self._closed:
            return
        try:
            if not self._failed and self._staged:
                self.sync()
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Release the directory without writing anything, as a crash would; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_fd()
        if self._witness is not None:
            self._witness.close()
        self._lock.release()

    def __enter__(self) -> SharedWal:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _encode(group: _Group, rseq: int, kind: int, payload: object) -> bytes:
    slot = group.meta.slot
    if kind == _ENTRY:
        return encode_group_entry(slot, rseq, payload)  # type: ignore[arg-type]
    if kind == _HARD_STATE:
        return encode_group_hard_state(slot, rseq, payload, checkpoint=False)  # type: ignore[arg-type]
    if kind == _SNAPSHOT:
        meta, keep = payload  # type: ignore[misc]
        return encode_group_snapshot(slot, rseq, meta.index, meta.term, keep)
    last, base, term = payload  # type: ignore[misc]
    return encode_group_restart(slot, rseq, last, base, term)


def _entries_after_snapshot(
    g_r: GroupReplay, snapshot: Snapshot | None, damage: list[str]
) -> tuple[list[Entry], int]:
    """The group's entries after its snapshot file, and the snapshot's index. A
    snapshot file without its WAL record (a crash in between) applies as installing
    it would (paper section 7); entries that do not continue from it are damage."""
    entries = g_r.entries
    if snapshot is not None:
        meta: SnapshotMeta = snapshot.meta
        if g_r.marker != (meta.index, meta.term):
            if g_r.marker is not None and g_r.marker[0] > meta.index:
                damage.append(f"the WAL records a snapshot at {g_r.marker[0]} but the newest "
                              f"snapshot file is at {meta.index}")
            if entries and entries[0].index <= meta.index:
                # the WAL still overlaps the snapshot, and its record is missing: a crash
                # came between the file and the record. (With no overlap the record went
                # with an old segment, after the entries it covers.)
                entries = retained_after_snapshot(entries, meta)
        base = meta.index
    else:
        base = 0
        if g_r.marker is not None and g_r.marker[0] > 0:
            damage.append(f"the WAL records a snapshot at {g_r.marker[0]} but its file is missing")
            return [], 0
    entries = [e for e in entries if e.index > base]
    if entries and entries[0].index != base + 1:
        damage.append(f"the group's entries start at {entries[0].index}, after its snapshot "
                      f"at {base}: entries are missing")
        return [], base
    return entries, base


__all__ = ["SHARED_CRASH_POINTS", "GroupStorage", "SharedWal"]
