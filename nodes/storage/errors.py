"""Errors of the durable storage. Each says which file, which offset, which id, and
what the operator should do about it (STYLE 13).

A caller that passes arguments breaking the ``Storage`` contract gets a plain
``ValueError``: that is a bug in the caller, not a problem with the disk.
"""

from __future__ import annotations

from pathlib import Path

REJOIN_ADVICE = (
    "the node cannot repair this by itself. If the cluster file lists this node, move "
    "the directory away (keep it for inspection) and start the node again on an empty "
    "one: it then refuses to vote or acknowledge until its peers have repaired it "
    "(docs/MULTIHOST.md, 'Damaged storage'). If it joined later with --join, move the "
    "directory away and add it again under a new id"
)


class StorageError(Exception):
    """Base class of every error about the data directory itself."""


class CorruptionError(StorageError):
    """A durable record or file fails its checksum or does not make sense.

    At open, damage to the log, the hard state or the snapshot is not raised: the
    node keeps the intact part and recovers from its peers (``DiskStorage``). What
    is still raised is damage it cannot work around (the meta file), and damage
    found while the storage is in use.
    """

    def __init__(self, path: Path, offset: int, problem: str) -> None:
        self.path = path
        self.offset = offset
        self.problem = problem
        super().__init__(f"{self.describe()}; {REJOIN_ADVICE}")

    def describe(self) -> str:
        """What is wrong and where, without the advice."""
        return f"{self.path}, byte offset {self.offset}: {self.problem}"


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
