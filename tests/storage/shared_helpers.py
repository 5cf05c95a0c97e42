"""Helpers of the shared WAL tests (a module with a unique name, as storage_helpers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodes.raft.messages import ClusterConfig, Entry, HardState
from nodes.storage.shared import SharedWal
from nodes.storage.shared_replay import list_segments

GROUP_CONFIG = ClusterConfig(frozenset({"n1", "n2", "n3"}))


def open_wal(path: Path, **kwargs: Any) -> SharedWal:
    kwargs.setdefault("fsync", False)
    return SharedWal(path, **kwargs)


def group_entry(group: int | str, index: int, term: int = 1) -> Entry:
    """An entry whose data names its group, of varying length."""
    return Entry(index, term, f"{group}:{index}:t{term}|".encode() * (1 + index % 3))


def write_turns(wal: SharedWal, groups: list[str], turns: range, term: int = 1) -> None:
    """Each turn, every group stages its next entry and a hard state acknowledging it;
    one sync per turn."""
    storages = [wal.open_group(g, GROUP_CONFIG) for g in groups]
    for index in turns:
        for gid, storage in zip(groups, storages, strict=True):
            storage.stage(HardState(term, "n1", index - 1, index), [group_entry(gid, index, term)])
        wal.sync()


def segment_paths(path: Path) -> list[Path]:
    return [seg.path for seg in list_segments(path / "wal")]
