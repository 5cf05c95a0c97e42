"""``DiskStorage``: the durable ``Storage`` of one node, in its data directory.

Layout::

    <path>/LOCK                       flock'ed while open (one process per directory)
    <path>/meta                       cluster id, node id, initial configuration
    <path>/hardstate                  term, vote, commit, promise, recovering (replaced atomically)
    <path>/promise                    the highest index acknowledged (two slots, in place)
    <path>/snapshot-<i>-<t>.snap      the latest snapshot (older ones are deleted)
    <path>/wal/<first index>.seg      the log since (about) the snapshot, see ``wal.py``

``save()`` follows the protocol's order and each step is durable before the next
starts: snapshot file, then WAL records (one fsync however many entries: group
commit), then the hard state. So a crash between steps leaves the hard state
describing a log at least as long as what it commits. A snapshot from the leader
keeps the saved entries after it only if the log holds its last entry (same index
and term, paper section 7), exactly as ``MemoryStorage`` does.

``HardState.promised`` is the highest log index the node has acknowledged. Term and
vote are written atomically to the hard-state file, the promise in place to the
promise file (``PromiseFile``: one fdatasync), both after the WAL's fsync, in every save
that changes them, so before any vote or acknowledgement leaves; only a moved commit
index is written lazily. At open the promise is the larger of the two files'. Before the log
is cut below the durable promise (a new leader replacing an uncommitted suffix, a
snapshot replacing the log) the promise is lowered durably first.

Recovery on open: a torn record at the very end of the log, beyond the promise, is
cut with a warning (a write the crash interrupted, never acknowledged). Any other
damage (a bad record or a missing segment before the end, a log shorter than the
promise or the commit index, a damaged snapshot or hard state, a missing WAL
directory) keeps the intact part and marks the node as recovering, durably and
before anything is cut: the core then keeps it out of elections until its peers
have repaired it (``nodes.raft.core``, protocol-aware recovery). A founder's new
directory (the meta file lists the node as a voter, no hard state yet) is
recovering too: it may be a wiped one. ``CorruptionError`` is left for damage that
cannot be worked around (the meta file), with advice that is safe to follow.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from types import TracebackType

from nodes.raft.messages import ClusterConfig, Entry, HardState, Snapshot, SnapshotMeta
from nodes.raft.storage import PersistedState

from .errors import (
    CorruptionError,
    StorageError,
    StorageFailedError,
    WrongClusterError,
    WrongNodeError,
)
from .files import CrashHook, DirectoryLock, FileOps
from .records import (
    PROMISE_SLOT_BYTES,
    Meta,
    RecordError,
    decode_hard_state,
    decode_meta,
    decode_promise_slot,
    encode_hard_state,
    encode_meta,
    encode_promise_slot,
    frame,
    scan_frames,
)
from .snapshots import SNAPSHOT_NAME, list_snapshots, read_snapshot, write_snapshot
from .wal import Replay, Wal

log = logging.getLogger(__name__)

CRASH_POINTS: tuple[str, ...] = (
    "meta.write",  # creating a new data directory
    "meta.fsync",
    "meta.rename",
    "meta.dirsync",
    "snapshot.write",  # before the temp file is written
    "snapshot.fsync",
    "snapshot.rename",
    "snapshot.dirsync",
    "wal.truncate",  # before a suffix of the log is cut (overwrite, or snapshot install)
    "wal.rollover",  # before a new segment is created
    "wal.write",
    "wal.fsync",
    "promise.write",  # the promise file: the highest index acknowledged (in place)
    "promise.fsync",
    "hardstate.write",
    "hardstate.fsync",
    "hardstate.rename",
    "hardstate.dirsync",
    "compact.delete",  # before files covered by a new snapshot are deleted
    "save.done",  # after everything, before save() returns
    "compact.done",
)
"""Every name the crash hook can be called with, in roughly the order they occur."""

DEFAULT_SEGMENT_BYTES = 8 << 20


class PromiseFile:
    """``<path>/promise``: the highest log index the node acknowledged, kept apart from
    the hard state because it moves with every acknowledgement. Two slots written in
    turn, in place, each a checksummed frame with a sequence number: one fdatasync per
    update (the file is sized to both slots once, durably, so no write changes its
    size) instead of the hard state's write, fsync, rename and directory fsync. A
    crash tears at most the slot being written (its acknowledgement never left), so
    the newest valid slot is read back; a damaged slot likewise falls back to the
    other one, which is safe as long as the WAL is intact (one fault at a time: a
    flipped promise *and* a lost log suffix together would go unnoticed)."""

    def __init__(self, path: Path, ops: FileOps) -> None:
        self.path = path
        self._ops = ops
        self._fd: int | None = None
        self.seq = 0
        self.value = 0
        if path.exists():
            data = path.read_bytes()
            slots = [decode_promise_slot(data[k * PROMISE_SLOT_BYTES:(k + 1) * PROMISE_SLOT_BYTES])
                     for k in (0, 1)]
            valid = [slot for slot in slots if slot is not None]
            if valid:
                self.seq, self.value = max(valid)

    def write(self, promised: int) -> None:
        if self._fd is None:
            self._open()
        self.seq += 1
        self._ops.point("promise.write")
        os.pwrite(self._fd, encode_promise_slot(self.seq, promised),
                  (self.seq % 2) * PROMISE_SLOT_BYTES)
        self._ops.bytes_written["promise"] += PROMISE_SLOT_BYTES
        self._ops.point("promise.fsync")
        # in place in a file whose size never changes (``_open``): fdatasync suffices
        self._ops.sync_fd(self._fd, "promise", data_only=True)
        self.value = promised

    def _open(self) -> None:
        """Open for writing; the first time, give the file both slots (zeros, which read
        as empty) durably, so that every later write is an overwrite in place."""
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size < 2 * PROMISE_SLOT_BYTES:
                # zeros written, not a hole left by ftruncate: the block is allocated
                # now, so later writes change no allocation either
                os.pwrite(fd, bytes(2 * PROMISE_SLOT_BYTES - size), size)
                self._ops.sync_fd(fd, "promise.size")
            if created:
                self._ops.sync_dir(self.path.parent, "promise.dir")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_single_frame(path: Path) -> tuple[int, bytes]:
    """The one frame a small file (meta, hard state) must consist of."""
    scan = scan_frames(path.read_bytes())
    if scan.problem is not None or len(scan.frames) != 1:
        problem = scan.problem or f"{len(scan.frames)} records where exactly one belongs"
        raise CorruptionError(path, scan.valid_end, problem)
    return scan.frames[0]


class DiskStorage:
    """The ``Storage`` protocol (``nodes.raft.storage``) on disk; see the module docstring.

    ``segment_bytes`` bounds a WAL segment (a single larger record gets a segment of
    its own). ``fsync=False`` skips the syncs (still counted): for tests only.
    ``crash_hook`` is called with a name from ``CRASH_POINTS`` before each step.
    ``initial_config`` is recorded when the directory is created; afterwards the
    recorded one is authoritative (the cluster has moved on from its bootstrap).

    Not thread-safe: one driver thread owns it. After a write fails part-way (I/O
    error or crash hook) every method raises ``StorageFailedError``: close and reopen.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        node_id: str,
        cluster_id: str,
        initial_config: ClusterConfig | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
        compress_snapshots: bool = True,
        crash_hook: CrashHook | None = None,
    ) -> None:
        self.path = Path(path)
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.compress_snapshots = compress_snapshots
        self._ops = FileOps(fsync, crash_hook)
        self._failed = False
        self._closed = False
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = DirectoryLock(self.path)
        self._created = False
        self._bad_snapshot: Path | None = None
        try:
            meta = self._open_meta(initial_config)
            self.initial_config = meta.initial_config
            damage: list[str] = []  # why the node cannot prove its storage intact
            self._snapshot = self._read_latest_snapshot(damage)
            self._hard_state = self._read_hard_state(meta, damage)
            self._durable_hard_state = self._hard_state
            self._promise = PromiseFile(self.path / "promise", self._ops)
            if self._promise.value > self._hard_state.promised:
                self._hard_state = replace(self._hard_state, promised=self._promise.value)
            self._base = self._snapshot.meta.index if self._snapshot else 0
            if not (self.path / "wal").is_dir():
                damage.append(f"{self.path / 'wal'}: the WAL directory is missing")
                (self.path / "wal").mkdir()
            self._wal = Wal(self.path / "wal", self._ops, segment_bytes)
            replay = self._wal.replay(self._base, allow_torn_tail=True)
            self._last_index = max(self._base, replay.last_record_index)
            self._check_log_keeps_promises(replay, damage)
            if damage:
                self._start_recovering(damage)
            if self._bad_snapshot is not None:
                self._bad_snapshot.unlink()
            self._wal.start(replay)
            self._remove_stale_files()
        except BaseException:
            self._lock.release()
            raise

    # --- opening ---------------------------------------------------------------

    def _open_meta(self, initial_config: ClusterConfig | None) -> Meta:
        meta_path = self.path / "meta"
        for leftover in self.path.glob("*.tmp"):
            leftover.unlink()  # an atomic write that a crash interrupted: never live data
        if not meta_path.exists():
            return self._create(meta_path, initial_config or ClusterConfig())
        offset, body = _read_single_frame(meta_path)
        try:
            meta = decode_meta(body)
        except RecordError as exc:
            raise CorruptionError(meta_path, offset, str(exc)) from None
        if meta.cluster_id != self.cluster_id:
            raise WrongClusterError(self.path, meta.cluster_id, self.cluster_id)
        if meta.node_id != self.node_id:
            raise WrongNodeError(self.path, meta.node_id, self.node_id)
        if initial_config is not None and initial_config != meta.initial_config:
            log.warning(
                "%s: ignoring the initial configuration given (%s); the one recorded when "
                "the directory was created (%s) stays in force",
                self.path,
                initial_config,
                meta.initial_config,
            )
        return meta

    def _create(self, meta_path: Path, initial_config: ClusterConfig) -> Meta:
        self._created = True
        wal_dir = self.path / "wal"
        ours = [
            p for p in self.path.iterdir() if p.name == "hardstate" or SNAPSHOT_NAME.match(p.name)
        ]
        if ours or (wal_dir.is_dir() and any(wal_dir.iterdir())):
            raise CorruptionError(
                meta_path, 0, "meta file missing from a directory holding node data"
            )
        others = [p.name for p in self.path.iterdir() if p.name not in ("LOCK", "wal")]
        if others:
            raise StorageError(
                f"{self.path} holds other files ({', '.join(sorted(others)[:5])}) and no meta "
                "file, so it is not a node data directory: give the node a new or empty directory"
            )
        wal_dir.mkdir(exist_ok=True)
        self._ops.sync_dir(self.path.parent, "meta.dir")  # the data directory's own entry
        meta = Meta(self.cluster_id, self.node_id, initial_config)
        # written last: its presence means "initialised"; its dirsync also covers wal/
        self._ops.atomic_write(meta_path, frame(encode_meta(meta)), "meta")
        return meta

    def _read_latest_snapshot(self, damage: list[str]) -> Snapshot | None:
        snapshots = list_snapshots(self.path)
        if not snapshots:
            return None
        try:
            return read_snapshot(snapshots[-1][2])
        except CorruptionError as exc:
            # the log before it is gone (compacted): start from nothing and recover;
            # the file goes once the node is durably marked as recovering
            damage.append(exc.describe())
            self._bad_snapshot = snapshots[-1][2]
            return None

    def _read_hard_state(self, meta: Meta, damage: list[str]) -> HardState:
        path = self.path / "hardstate"
        if not path.exists():
            if self.node_id in meta.initial_config.voters:
                # A founder's directory without a hard state: either the cluster is new,
                # or the directory was wiped (and recreated) after the node had voted and
                # acknowledged entries. It cannot tell which, so it asks its peers first.
                return HardState(recovering=True)
            return HardState()
        try:
            offset, body = _read_single_frame(path)
            return decode_hard_state(body)
        except CorruptionError as exc:
            damage.append(exc.describe())
        except RecordError as exc:
            damage.append(f"{path}: {exc}")
        # term and vote are lost: the node learns the term from its peers before it
        # may vote again (nodes.raft.core, protocol-aware recovery)
        return HardState()

    def _check_log_keeps_promises(self, replay: Replay, damage: list[str]) -> None:
        """A cut in the log that may lose acknowledged entries is damage, not a torn tail.

        The hard state is written after the WAL's fsync, so neither its promise (the
        highest index the node acknowledged) nor its commit index ever passes the
        durable log: if one does, entries that may be committed are gone (a suffix
        lost by the disk, a damaged record, a removed segment)."""
        hs = self._hard_state
        cut = replay.torn
        if cut is not None and not cut.torn:
            damage.append(f"{cut.segment.path}, byte offset {cut.offset}: {cut.problem}")
        vouched = max(hs.promised, hs.commit)
        if vouched > self._last_index:
            where = f" (the log was cut at a torn record in {cut.segment.path})" if cut else ""
            damage.append(
                f"{self.path}: the log ends at index {self._last_index}{where} but the node "
                f"had acknowledged entries up to index {vouched}: acknowledged entries are missing"
            )

    def _start_recovering(self, damage: list[str]) -> None:
        """Record durably that the node must be repaired, before anything is cut (a
        crash in between then still finds it recovering), and say so loudly."""
        log.warning(
            "%s: the node's storage is damaged (%s); keeping the intact part and "
            "recovering: it will not vote or campaign until a leader has repaired it "
            "(nothing to do for the operator; see docs/MULTIHOST.md, 'Damaged storage')",
            self.path, "; ".join(damage),
        )
        hs = self._hard_state
        last = self._last_index
        if self._promise.value > last:
            self._promise.write(last)
        self._write_hard_state(HardState(
            hs.term, hs.vote, min(hs.commit, last), min(hs.promised, last), recovering=True
        ))

    def _remove_stale_files(self) -> None:
        """Finish a compaction that a crash interrupted (no fsync: see ``drop_covered``)."""
        keep = self._snapshot_path()
        for _, _, path in list_snapshots(self.path):
            if path != keep:
                path.unlink()
        self._wal.drop_covered(self._base)

    def _snapshot_path(self) -> Path | None:
        snapshots = list_snapshots(self.path)
        return snapshots[-1][2] if snapshots else None

    # --- the Storage protocol --------------------------------------------------

    def load(self) -> PersistedState:
        """Read back what a restart would see (the WAL is re-read from disk, not cached)."""
        self._check_usable()
        entries = self._wal.read_entries(self._base)
        assert (entries[-1].index if entries else self._base) == self._last_index
        return PersistedState(self._hard_state, self._snapshot, entries, self.initial_config)

    def save(
        self,
        hard_state: HardState | None,
        entries: list[Entry],
        snapshot: Snapshot | None = None,
    ) -> None:
        """See ``Storage.save``. Raises ``ValueError`` (and writes nothing) if the
        entries do not fit the log: that is the caller's bug."""
        self._check_usable()
        base, last = self._base, self._last_index
        keep_log = False
        if snapshot is not None:
            keep_log = self._holds(snapshot.meta)
            base = snapshot.meta.index
            last = self._last_index if keep_log else base
        if entries:
            _check_entries(entries, base, last)
        try:
            self._lower_promise_before_cut(snapshot, keep_log, entries)
            if snapshot is not None:
                self._install(snapshot, keep_log)
            if entries:
                self._wal.append(entries)
                self._last_index = entries[-1].index
            if hard_state is not None and hard_state != self._hard_state:
                durable = self._durable_hard_state
                if _durable_part(hard_state) != _durable_part(durable):
                    self._write_hard_state(hard_state)
                else:
                    # Term and vote did not move (a leader's, a follower's every Ready).
                    # Raft needs them durable before answering, and the promise (the
                    # highest index acknowledged) too: that goes to the promise file, one
                    # fsync. The commit index is written lazily (with the next term or
                    # vote change, or on close): a restarted node relearns it.
                    if hard_state.promised != self._promised_on_disk():
                        self._promise.write(hard_state.promised)
                    self._hard_state = hard_state
            self._ops.point("save.done")
        except BaseException:
            self._failed = True
            raise

    def _lower_promise_before_cut(
        self, snapshot: Snapshot | None, keep_log: bool, entries: list[Entry]
    ) -> None:
        """Before the durable log is cut below the durable promise (a new leader
        replaces an uncommitted suffix, or a snapshot replaces the log), lower the
        promise durably: else a crash between the cut and the hard-state write would
        look, at the next start, like a lost suffix of acknowledged entries."""
        keep = self._last_index
        if snapshot is not None and not keep_log:
            keep = min(keep, snapshot.meta.index)
        if entries:
            keep = min(keep, entries[0].index - 1)
        if self._promise.value > keep:
            self._promise.write(keep)
        durable = self._durable_hard_state
        if durable.promised > keep or durable.commit > max(keep, self._base):
            self._write_hard_state(HardState(
                durable.term, durable.vote, min(durable.commit, max(keep, self._base)),
                min(durable.promised, keep), durable.recovering,
            ))

    def _promised_on_disk(self) -> int:
        return max(self._durable_hard_state.promised, self._promise.value)

    def compact(self, snapshot: Snapshot) -> None:
        """See ``Storage.compact``: a snapshot no newer than the current one is ignored."""
        self._check_usable()
        if self._snapshot is not None and self._snapshot.meta.index >= snapshot.meta.index:
            return
        try:
            self._write_snapshot(snapshot)
            self._last_index = max(self._last_index, snapshot.meta.index)
            self._ops.point("compact.done")
        except BaseException:
            self._failed = True
            raise

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    # --- snapshots -------------------------------------------------------------

    def _holds(self, meta: SnapshotMeta) -> bool:
        """Whether the saved log (after the current snapshot) has the snapshot's last
        entry: then the entries after it stay (paper section 7)."""
        if not self._base < meta.index <= self._last_index:
            return False
        return self._wal.term_at(meta.index) == meta.term

    def _install(self, snapshot: Snapshot, keep_log: bool) -> None:
        """Install a snapshot from the leader. If it replaces the log, the WAL is cut
        first: a crash before the snapshot file is durable then leaves the old
        snapshot with a prefix of the old log, never the new snapshot followed by
        entries that contradict it."""
        index = snapshot.meta.index
        if not keep_log and self._wal.last_record_index > index:
            self._wal.truncate_from(index + 1)
        self._write_snapshot(snapshot)
        if not keep_log:
            self._last_index = index

    def _write_snapshot(self, snapshot: Snapshot) -> None:
        new = write_snapshot(self.path, snapshot, self.compress_snapshots, self._ops)
        self._snapshot = snapshot
        self._base = snapshot.meta.index
        others = [(i, t, p) for i, t, p in list_snapshots(self.path) if p != new]
        if others:
            self._ops.point("compact.delete")
            for _, _, path in others:
                path.unlink()
            # Deleting an older file may be undone by a crash (the newest wins anyway),
            # but a newer one (an older snapshot installed) must stay deleted.
            key = (snapshot.meta.index, snapshot.meta.term)
            if any((i, t) > key for i, t, _ in others):
                self._ops.sync_dir(self.path, "snapshot.dir")
        self._wal.drop_covered(snapshot.meta.index)

    # --- counters, lifetime ----------------------------------------------------

    @property
    def fsync_count(self) -> int:
        """Every fsync so far (files and directories), counted even with ``fsync=False``."""
        return sum(self._ops.fsyncs.values())

    @property
    def fsyncs(self) -> Counter[str]:
        """fsyncs by kind: "wal" (appends), "wal.dir" (segment created or unlinked for a
        cut), "wal.truncate", "wal.repair" (torn tail cut on open), "hardstate",
        "hardstate.dir", "promise", "promise.size", "promise.dir", "snapshot", "snapshot.dir", "meta", "meta.dir"."""
        return Counter(self._ops.fsyncs)

    @property
    def bytes_written(self) -> Counter[str]:
        """Bytes written by kind ("wal", "hardstate", "promise", "snapshot", "meta")."""
        return Counter(self._ops.bytes_written)

    @property
    def last_index(self) -> int:
        """The index of the last durable entry (the snapshot's index if the log is empty)."""
        return self._last_index

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageError(f"{self.path}: this storage is closed")
        if self._failed:
            raise StorageFailedError(self.path)

    def _write_hard_state(self, hard_state: HardState) -> None:
        self._ops.atomic_write(
            self.path / "hardstate", frame(encode_hard_state(hard_state)), "hardstate"
        )
        self._hard_state = self._durable_hard_state = hard_state

    def close(self) -> None:
        """Release the directory; idempotent. Term, vote and entries are already
        durable; a commit index that moved since the last hard-state write is
        written now (a clean stop restarts applying where it was)."""
        if self._closed:
            return
        if not self._failed and self._hard_state != self._durable_hard_state:
            self._write_hard_state(self._hard_state)
        self._closed = True
        self._promise.close()
        self._wal.close()
        self._lock.release()

    def abandon(self) -> None:
        """Release the directory without writing anything, as a crash would; idempotent.

        Unlike ``close()`` the lazily kept commit index is not written: the directory
        is left exactly as a power cut at this moment leaves it (the simulator's
        crash-restart reopens it). Only descriptors and the lock are let go."""
        if self._closed:
            return
        self._closed = True
        self._promise.close()
        self._wal.close()
        self._lock.release()

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _durable_part(hs: HardState) -> tuple[int, str | None, bool]:
    """What the hard-state file must hold before the node answers (the promise has a
    file of its own, the commit index is written lazily)."""
    return hs.term, hs.vote, hs.recovering


def _check_entries(entries: list[Entry], base: int, last: int) -> None:
    first = entries[0].index
    if not base < first <= last + 1:
        raise ValueError(
            f"entries start at index {first}, but the saved log holds {base + 1}..{last} "
            f"after the snapshot at {base}: the first new entry must be in {base + 1}..{last + 1}"
        )
    for a, b in pairwise(entries):
        if b.index != a.index + 1:
            raise ValueError(f"entries are not contiguous: index {b.index} follows {a.index}")
