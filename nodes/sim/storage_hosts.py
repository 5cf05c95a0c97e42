"""Where the simulator's nodes keep their storage, and how a crash treats it.

A ``StorageHost`` creates a node's storage, reopens it after a crash, and lets
it go when the process dies. ``MemoryHost`` keeps ``MemoryStorage`` objects
(a save is atomic; the object itself survives the crash). ``DiskHost`` puts
every node on ``nodes.storage.DiskStorage`` in a temporary directory and can
crash a node *inside* a save: ``arm(node, point)`` makes the storage's crash
hook raise ``SimulatedCrash`` at that step (any name of
``nodes.storage.CRASH_POINTS``), and the pseudo-point ``TORN_WRITE`` first cuts
the WAL batch being written a few bytes short, leaving a torn record, as a
power cut between ``write`` and ``fsync`` can.

The disk runs with ``fsync=False`` (in a tmpfs when there is one): inside one
process the page cache is as durable as the platter, so what the crash keeps is
exactly what the storage wrote before the crash point. ``damage`` plays a faulty
disk on a node that is down: a lost suffix, a wiped directory, a flipped bit
(protocol-aware recovery, FAST'18). Directory names never influence behaviour;
every choice (the cut length included) comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Protocol

from nodes.raft.messages import ClusterConfig
from nodes.raft.storage import MemoryStorage, Storage
from nodes.storage import CRASH_POINTS, DiskStorage
from nodes.storage.records import RecordError, decode_hard_state, scan_frames
from nodes.storage.wal import SEGMENT_NAME

TORN_WRITE = "wal.torn"
"""Pseudo crash point: the WAL write happens, then the batch is cut mid-record
before its fsync, and the node dies."""

ARMABLE_POINTS: tuple[str, ...] = (*CRASH_POINTS, TORN_WRITE)


def _memory_backed_tmp() -> str | None:
    """/dev/shm when there is one (tmpfs: creating files there costs microseconds, on a
    journalled disk about a millisecond); else the default temporary directory."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class SimulatedCrash(Exception):
    """Raised by a storage crash hook: the node's process dies at that step."""


class StorageHost(Protocol):
    crash_points: tuple[str, ...]  # what ``arm`` accepts (none: crashes only between steps)

    def create(self, nid: str, config: ClusterConfig) -> Storage:
        """A new, empty storage (an old one of ``nid`` is wiped)."""

    def reopen(self, nid: str, old: Storage | None) -> Storage:
        """The storage a restarted ``nid`` finds (``old``, if any, was abandoned)."""

    def abandon(self, nid: str, storage: Storage) -> None:
        """The process died: let the storage go without writing anything."""

    def recovering(self, nid: str) -> bool:
        """Whether ``nid``, now down, would start recovering (its storage is damaged)."""

    def arm(self, nid: str, point: str, skip: int = 0) -> None:
        """Crash ``nid`` at the ``skip + 1``-th time its storage reaches ``point``."""

    def disarm(self, nid: str) -> None: ...

    def close(self) -> None: ...


class MemoryHost:
    """``MemoryStorage`` per node: survives a crash whole; nothing to arm."""

    crash_points: tuple[str, ...] = ()

    def __init__(self, factory: Callable[[str, ClusterConfig], Storage] | None = None) -> None:
        self.factory = factory or (lambda _nid, cfg: MemoryStorage(cfg))

    def create(self, nid: str, config: ClusterConfig) -> Storage:
        return self.factory(nid, config)

    def reopen(self, nid: str, old: Storage | None) -> Storage:
        assert old is not None, f"{nid} has no storage to reopen"
        return old

    def abandon(self, nid: str, storage: Storage) -> None:
        pass

    def recovering(self, nid: str) -> bool:
        return False  # memory storage is never damaged

    def arm(self, nid: str, point: str, skip: int = 0) -> None:
        raise ValueError("memory storage has no crash points: use DiskHost")

    def disarm(self, nid: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(slots=True)
class _Arm:
    point: str
    skip: int
    batch_start: tuple[Path, int] | None = None  # TORN_WRITE: segment and size before write


class DiskHost:
    """``DiskStorage`` per node under ``root`` (a new temporary directory unless given,
    removed again by ``close``)."""

    crash_points = ARMABLE_POINTS

    def __init__(
        self,
        rng: Random,
        root: str | os.PathLike[str] | None = None,
        segment_bytes: int = 4096,
        compress_snapshots: bool = False,
    ) -> None:
        self.rng = rng
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="arena-sim-", dir=_memory_backed_tmp())
                         if root is None else root)
        self.segment_bytes = segment_bytes
        self.compress_snapshots = compress_snapshots
        self._initial: dict[str, ClusterConfig] = {}
        self._open: dict[str, DiskStorage] = {}
        self._arms: dict[str, _Arm] = {}
        self.fired: Counter[str] = Counter()  # crash points reached while armed
        self.torn_bytes_cut = 0

    def path(self, nid: str) -> Path:
        return self.root / nid

    # --- StorageHost ---------------------------------------------------------------

    def create(self, nid: str, config: ClusterConfig) -> DiskStorage:
        old = self._open.pop(nid, None)
        if old is not None:
            old.abandon()
        shutil.rmtree(self.path(nid), ignore_errors=True)
        self._initial[nid] = config
        return self._open_dir(nid)

    def reopen(self, nid: str, old: Storage | None) -> DiskStorage:
        if isinstance(old, DiskStorage):
            old.abandon()
        return self._open_dir(nid)

    def abandon(self, nid: str, storage: Storage) -> None:
        if isinstance(storage, DiskStorage):
            storage.abandon()
        if self._open.get(nid) is storage:
            del self._open[nid]

    def arm(self, nid: str, point: str, skip: int = 0) -> None:
        if point not in ARMABLE_POINTS:
            raise ValueError(f"unknown crash point {point!r}; expected one of {ARMABLE_POINTS}")
        self._arms[nid] = _Arm(point, skip)

    def disarm(self, nid: str) -> None:
        self._arms.pop(nid, None)

    def armed(self, nid: str) -> str | None:
        arm = self._arms.get(nid)
        return arm.point if arm else None

    def close(self) -> None:
        for storage in self._open.values():
            storage.abandon()
        self._open.clear()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- storage faults (the disk lies or loses data; the node is down) --------------

    def founder(self, nid: str) -> bool:
        """Whether ``nid``'s directory was created listing it as a voter: only then does
        an empty directory tell it that it may have lost promises (``DiskStorage``)."""
        return nid in self._initial.get(nid, ClusterConfig()).voters

    def recovering(self, nid: str) -> bool:
        """Whether ``nid`` (down) will start recovering, judging by its directory as
        ``DiskStorage`` does: a founder's directory without a hard state, or a hard
        state that says so or cannot be read. (Damage that a restart would find is
        the caller's to track: ``damage`` returns what it did.)"""
        path = self.path(nid) / "hardstate"
        if not path.exists():
            return self.founder(nid)
        scan = scan_frames(path.read_bytes())
        if scan.problem is not None or len(scan.frames) != 1:
            return True
        try:
            return decode_hard_state(scan.frames[0][1]).recovering
        except RecordError:
            return True

    def damage(self, nid: str, kind: str) -> str | None:
        """Damage the directory of ``nid`` (down: its storage abandoned) as a faulty disk
        would, after the fact: ``"lose-suffix"`` (the WAL loses a suffix it had fsynced,
        at a random byte, later segments with it), ``"wipe"`` (the directory is gone),
        ``"flip"`` (one bit of a WAL segment, the hard state, the promise file or the
        snapshot). Returns
        what was done, or None if there was nothing to damage."""
        assert nid not in self._open, f"{nid} is running: crash it first"
        path = self.path(nid)
        if not (path / "meta").exists():
            return None
        if kind == "wipe":
            shutil.rmtree(path)
            return "wiped the directory"
        segments = sorted(p for p in (path / "wal").iterdir() if SEGMENT_NAME.match(p.name))
        segments = [p for p in segments if p.stat().st_size > 0]
        if kind == "lose-suffix":
            if not segments:
                return None
            k = self.rng.randrange(max(0, len(segments) - 2), len(segments))
            for later in segments[k + 1:]:
                later.unlink()
            size = segments[k].stat().st_size
            cut = self.rng.randrange(size)
            os.truncate(segments[k], cut)
            return f"cut {segments[k].name} to {cut} of {size} bytes, {len(segments) - k - 1} later segment(s) gone"
        if kind == "flip":
            files = segments + [p for p in path.iterdir()
                                if p.name in ("hardstate", "promise") or p.name.endswith(".snap")]
            if not files:
                return None
            victim = self.rng.choice(files)
            data = bytearray(victim.read_bytes())
            if not data:
                return None
            at = self.rng.randrange(len(data))
            data[at] ^= 1 << self.rng.randrange(8)
            victim.write_bytes(bytes(data))
            return f"flipped a bit of {victim.name} at byte {at}"
        raise ValueError(f"unknown storage fault {kind!r}")

    # --- inside ---------------------------------------------------------------------

    def _open_dir(self, nid: str) -> DiskStorage:
        storage = DiskStorage(
            self.path(nid),
            node_id=nid,
            cluster_id="sim",
            initial_config=self._initial[nid],
            segment_bytes=self.segment_bytes,
            fsync=False,
            compress_snapshots=self.compress_snapshots,
            crash_hook=self._hook(nid),
        )
        self._open[nid] = storage
        return storage

    def _hook(self, nid: str) -> Callable[[str], None]:
        def hook(point: str) -> None:
            arm = self._arms.get(nid)
            if arm is None:
                return
            if arm.point == TORN_WRITE:
                if point == "wal.write":
                    arm.batch_start = self._last_segment(nid)
                    return
                if point != "wal.fsync" or arm.batch_start is None:
                    return
            elif point != arm.point:
                return
            if arm.skip > 0:
                arm.skip -= 1
                return
            del self._arms[nid]
            if arm.point == TORN_WRITE:
                self._tear(arm.batch_start)
            self.fired[arm.point] += 1
            raise SimulatedCrash(f"{nid} crashed at storage step {arm.point}")

        return hook

    def _last_segment(self, nid: str) -> tuple[Path, int] | None:
        wal = self.path(nid) / "wal"
        names = sorted(p.name for p in wal.iterdir() if SEGMENT_NAME.match(p.name))
        if not names:
            return None
        path = wal / names[-1]
        return path, path.stat().st_size

    def _tear(self, batch_start: tuple[Path, int] | None) -> None:
        """Cut the batch just written (not yet fsynced) short: mostly by a few bytes
        (a torn final record), sometimes anywhere in the batch."""
        assert batch_start is not None
        path, before = batch_start
        written = path.stat().st_size - before
        if written <= 0:
            return
        few = min(written, 8)
        cut = self.rng.randint(1, few) if self.rng.random() < 0.6 else self.rng.randint(1, written)
        os.truncate(path, before + written - cut)
        self.torn_bytes_cut += cut
