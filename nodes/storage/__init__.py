"""Durable storage of a node: ``DiskStorage`` implements ``nodes.raft.storage.Storage``
in a data directory (write-ahead log segments, atomic hard state, snapshot files).

Modules, one job each: ``records`` (byte formats), ``files`` (counted fsyncs, crash
hook, lock), ``wal`` (segments, recovery, truncation), ``snapshots`` (snapshot
files), ``disk`` (the ``Storage`` protocol over those), ``errors``. ``shared``
(``SharedWal``: one WAL for the many Raft groups of a node, one fsync per turn for
all of them), with its byte formats in ``shared_records`` and its recovery in
``shared_replay``.
"""

from .disk import CRASH_POINTS, DiskStorage
from .errors import (
    CorruptionError,
    DirectoryLockedError,
    StorageError,
    StorageFailedError,
    WrongClusterError,
    WrongNodeError,
)

__all__ = [
    "CRASH_POINTS",
    "CorruptionError",
    "DirectoryLockedError",
    "DiskStorage",
    "StorageError",
    "StorageFailedError",
    "WrongClusterError",
    "WrongNodeError",
]
