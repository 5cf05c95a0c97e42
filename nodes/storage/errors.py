"""Errors of the durable storage. Each says which file, which offset, which id, and
what the operator should do about it (STYLE 13).

A caller that passes arguments breaking the ``Storage`` contract gets a plain
``ValueError``: that is a bug in the caller, not a problem with the disk.
"""

from __future__ import annotations

from pathlib import Path

REJOIN_ADVICE = (
    "the node's data is damaged; move the directory away and let the node rejoin: "
    "it will receive a snapshot from the leader"
)


class StorageError(Exception):
    """Base class of every error about the data directory itself."""


class CorruptionError(StorageError):
    """A durable record or file fails its checksum or does not make sense.

    Raised instead of dropping anything that was acknowledged as durable: only a
    torn record at the very end of the log (a crash during the write) is repaired.
    """

    def __init__(self, path: Path, offset: int, problem: str) -> None:
        self.path = path
        self.offset = offset
        self.problem = problem
        super().__init__(f"{path}: {problem} at byte offset {offset}; {REJOIN_ADVICE}")


class WrongClusterError(StorageError):
    """The directory was created for another cluster: opening it would mix two histories."""

    def __init__(self, path: Path, found: str, expected: str) -> None:
        self.path = path
        self.found = found
        self.expected = expected
        super().__init__(
            f"{path} belongs to cluster {found!r}, not {expected!r}: point the node at its "
            f"own data directory, or move this one away to join cluster {expected!r} afresh"
        )


class WrongNodeError(StorageError):
    """The directory belongs to another node of the same cluster: two nodes sharing one
    history would vote twice with one identity."""

    def __init__(self, path: Path, found: str, expected: str) -> None:
        self.path = path
        self.found = found
        self.expected = expected
        super().__init__(
            f"{path} belongs to node {found!r}, not {expected!r}: start node {expected!r} "
            f"with its own data directory (this one is node {found!r}'s)"
        )


class DirectoryLockedError(StorageError):
    """Another process (or another ``DiskStorage`` in this one) has the directory open."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is locked by {holder}: another node process is using this data "
            "directory; stop it first, or give this node its own directory"
        )


class StorageFailedError(StorageError):
    """A write failed part-way (an I/O error, or the crash hook): what reached the disk
    is unknown, so the object refuses further use (after a failed fsync the page cache
    cannot be trusted). Reopen the directory: recovery sorts it out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"{path}: an earlier write failed; close this storage and reopen the "
            "directory to recover"
        )
