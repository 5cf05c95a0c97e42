"""Helpers shared by the storage tests (a module with a unique name, so that pytest's
default import mode finds it next to the tests without clashing with other suites)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from nodes.raft.messages import ClusterConfig, Entry
from nodes.storage import DiskStorage

CONFIG = ClusterConfig(frozenset({"n1", "n2", "n3"}))

OpenStorage = Callable[..., DiskStorage]


def entries_between(first: int, last: int, term: int = 1) -> list[Entry]:
    """Entries ``first..last`` with distinct data of varying length."""
    return [
        Entry(i, term, f"cmd-{i}-t{term}-".encode() * (1 + i % 4)) for i in range(first, last + 1)
    ]


class SimulatedCrash(Exception):
    """Raised by a crash hook: the storage object is abandoned as if the power went."""


def crash_at(point: str) -> Callable[[str], None]:
    def hook(name: str) -> None:
        if name == point:
            raise SimulatedCrash(point)

    return hook


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def cut_file(path: Path, size: int) -> None:
    """A crash in the middle of a write: the file keeps only its first ``size`` bytes."""
    with path.open("r+b") as f:
        f.truncate(size)


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("LOCK"))
    return dst
