"""Every write, fsync, rename and lock of the data directory goes through here, so that
each fsync is counted (tests and the benchmark assert group commit with the counts)
and each step can be interrupted by the crash hook (the simulator's "power cut").
"""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .errors import DirectoryLockedError

CrashHook = Callable[[str], None]
"""Called with a step name (see ``nodes.storage.disk.CRASH_POINTS``) just before the
step runs; raising from it stops the storage there, as a crash would."""


class FileOps:
    """Counted, interruptible file operations.

    With ``fsync=False`` the sync calls are counted and hooked but not made: tests
    stay fast and can still assert how many a real run would make.
    """

    def __init__(self, fsync: bool = True, crash_hook: CrashHook | None = None) -> None:
        self.fsync_enabled = fsync
        self.crash_hook = crash_hook
        self.fsyncs: Counter[str] = Counter()
        self.bytes_written: Counter[str] = Counter()

    def point(self, name: str) -> None:
        if self.crash_hook is not None:
            self.crash_hook(name)

    def write_all(self, fd: int, data: bytes, kind: str) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        self.bytes_written[kind] += len(data)

    def sync_fd(self, fd: int, kind: str, data_only: bool = False) -> None:
        """``data_only``: ``fdatasync``, which flushes the data and the metadata needed to
        read it back (the size) but not the timestamps: on ext4 an overwrite in place
        then costs a block write and a cache flush instead of a journal commit. Only
        for writes that a reader finds without any other metadata change."""
        self.fsyncs[kind] += 1
        if self.fsync_enabled:
            if data_only:
                os.fdatasync(fd)
            else:
                os.fsync(fd)

    def sync_dir(self, directory: Path, kind: str) -> None:
        """Make the directory's entries (created, renamed, removed files) durable."""
        self.fsyncs[kind] += 1
        if self.fsync_enabled:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def atomic_write(self, path: Path, data: bytes, step: str) -> None:
        """Replace ``path`` with ``data`` so that a crash leaves either the old or the new
        file, never a mix: temp file, fsync, rename over, fsync of the directory (the
        rename is only durable once the directory is)."""
        tmp = path.with_name(path.name + ".tmp")
        self.point(f"{step}.write")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.write_all(fd, data, step)
            self.point(f"{step}.fsync")
            self.sync_fd(fd, step)
        finally:
            os.close(fd)
        self.point(f"{step}.rename")
        os.replace(tmp, path)
        self.point(f"{step}.dirsync")
        self.sync_dir(path.parent, f"{step}.dir")


class DirectoryLock:
    """An exclusive ``flock`` on ``<dir>/LOCK``, held while the storage is open.

    ``flock`` locks belong to the open file description, so a second ``DiskStorage``
    in the same process is refused just like a second process; the kernel drops the
    lock when the process dies, so a crash never leaves the directory locked.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "LOCK"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").strip()
            os.close(fd)
            if holder == f"pid {os.getpid()}":
                holder += " (this process: another DiskStorage is still open)"
            raise DirectoryLockedError(directory, holder or "another process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)  # for the error message above
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
