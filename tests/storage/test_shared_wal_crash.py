"""A crash at any step of any SharedWal operation (the crash hook of nodes.storage)
leaves every group, after reopening, exactly as before the interrupted operation or
as after it: nothing acknowledged is lost, nothing is half-applied, no group is
damaged (the WAL keeps a witness of its durable end, so that a crash between the
WAL's fsync and the witness's is shown not to look like a lost suffix)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from shared_helpers import GROUP_CONFIG, group_entry, open_wal
from storage_helpers import SimulatedCrash

from nodes.raft.messages import HardState, Snapshot, SnapshotMeta
from nodes.raft.storage import MemoryStorage
from nodes.storage.shared import SHARED_CRASH_POINTS, SharedWal

SEGMENT_BYTES = 350
OPERATION_POINTS = [p for p in SHARED_CRASH_POINTS if not p.startswith("meta.")]
"""The crash points of operations on an open WAL (the others: creating the directory)."""
Models = dict[str, MemoryStorage]
Op = Callable[[SharedWal | None, Models], None]


def _snapshot(index: int, term: int = 1) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, GROUP_CONFIG), f"state@{index}".encode())


def _create(gid: str) -> Op:
    def op(wal: SharedWal | None, models: Models) -> None:
        if wal is not None:
            wal.open_group(gid, GROUP_CONFIG)
            wal.sync()
        models[gid] = MemoryStorage(GROUP_CONFIG)

    return op


def _turn(index: int, gids: list[str]) -> Op:
    def op(wal: SharedWal | None, models: Models) -> None:
        for gid in gids:
            args = (HardState(1, "n1", index - 1, index), [group_entry(gid, index)])
            if wal is not None:
                wal.open_group(gid).stage(*args)
            models[gid].save(*args)
        if wal is not None:
            wal.sync()

    return op


def _compact(gid: str, index: int) -> Op:
    def op(wal: SharedWal | None, models: Models) -> None:
        if wal is not None:
            wal.open_group(gid).compact(_snapshot(index))
        models[gid].compact(_snapshot(index))

    return op


def _install(gid: str, index: int) -> Op:
    """A snapshot from the leader beyond the log, with the entry after it."""

    def op(wal: SharedWal | None, models: Models) -> None:
        args = (HardState(2, "n2", index, index + 1), [group_entry(gid, index + 1, 2)],
                _snapshot(index, 2))
        if wal is not None:
            wal.open_group(gid).save(*args)
        models[gid].save(*args)

    def partial(models: Models) -> None:
        """The snapshot file is in, its record and the entry not yet: as a crash
        between DiskStorage's steps leaves it (nothing of it was acknowledged)."""
        models[gid].save(None, [], _snapshot(index, 2))

    op.partial = partial  # type: ignore[attr-defined]
    return op


def _remove(gid: str) -> Op:
    def op(wal: SharedWal | None, models: Models) -> None:
        if wal is not None:
            wal.remove_group(gid)
        del models[gid]

    return op


SETUP: list[Op] = [_create("a"), _create("b"), *(_turn(i, ["a", "b"]) for i in range(1, 4))]
SCRIPT: list[Op] = [
    _create("c"),
    _compact("c", 3),  # c joins late: it starts from a snapshot
    *(_turn(i, ["a", "b", "c"]) for i in range(4, 9)),
    _compact("a", 6),
    _compact("b", 5),
    _install("b", 12),
    _turn(13, ["b"]),
    _compact("a", 8),
    _compact("c", 8),
    _remove("c"),
    _turn(14, ["b"]),
]


def _run(path: Path, hook: Callable[[str], None] | None = None, max_segments: int = 8
         ) -> list[Models]:
    """Run SETUP then SCRIPT; returns the models before and after the interrupted op
    (and between, for an install), or only the final models if nothing was."""
    models: Models = {}
    kwargs = {"segment_bytes": SEGMENT_BYTES, "witness": True, "max_segments": max_segments}
    with open_wal(path, **kwargs) as wal:
        for op in SETUP:
            op(wal, models)
    wal = open_wal(path, **kwargs, crash_hook=hook)
    for op in SCRIPT:
        before = copy.deepcopy(models)
        try:
            op(wal, models)
        except SimulatedCrash:
            wal.abandon()
            after = copy.deepcopy(before)
            op(None, after)
            outcomes = [before, after]
            if hasattr(op, "partial"):
                outcomes.append(copy.deepcopy(before))
                op.partial(outcomes[-1])
            return outcomes
    wal.close()
    return [models]


def test_the_script_passes_every_crash_point_and_copies_idle_groups_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def count(name: str) -> None:
        seen[name] += 1

    seen: Counter[str] = Counter()
    _run(tmp_path / "count", count)
    assert set(OPERATION_POINTS) <= set(seen), set(OPERATION_POINTS) - set(seen)
    copies = []
    original = SharedWal._copy_pinned_forward

    def spy(self: SharedWal, *args: object) -> bool:
        copies.append(original(self, *args))  # type: ignore[arg-type]
        return copies[-1]

    monkeypatch.setattr(SharedWal, "_copy_pinned_forward", spy)
    _run(tmp_path / "copies", max_segments=2)
    assert any(copies)


def _crash_on(point: str, nth: int) -> Callable[[str], None]:
    """A crash hook that cuts the power at the ``nth`` time ``point`` comes."""
    calls = 0

    def hook(name: str) -> None:
        nonlocal calls
        if name == point:
            calls += 1
            if calls == nth:
                raise SimulatedCrash(f"{point} #{nth}")

    return hook


@pytest.mark.parametrize("max_segments", [8, 2])  # 2: idle groups are copied forward
@pytest.mark.parametrize("point", OPERATION_POINTS)
def test_a_crash_at_any_step_leaves_each_group_before_or_after_the_operation(
    tmp_path: Path, point: str, max_segments: int
):
    for nth in (1, 2, 3):
        path = tmp_path / f"crash-{nth}"
        outcomes = _run(path, _crash_on(point, nth), max_segments)
        if len(outcomes) == 1:
            assert nth > 1, f"the script never reached {point}"
            break
        with open_wal(path, segment_bytes=SEGMENT_BYTES, witness=True,
                      max_segments=max_segments) as wal:
            assert wal.damaged == {}, (point, nth)
            for gid in set().union(*outcomes):
                loaded = wal.open_group(gid).load() if gid in wal.groups() else None
                options = [m[gid].load() if gid in m else None for m in outcomes]
                if gid not in wal.groups() and None not in options:
                    pytest.fail(f"{gid} vanished at {point} #{nth}")
                if loaded is not None:
                    assert loaded in options, (point, nth, gid)
            # the reopened WAL works: every group takes a new entry
            for gid in wal.groups():
                group = wal.open_group(gid)
                group.save(None, [group_entry(gid, group.last_index + 1, 3)])


@pytest.mark.parametrize("point", ["meta.write", "meta.fsync", "meta.rename", "meta.dirsync"])
def test_a_crash_while_creating_the_directory_leaves_it_creatable(tmp_path: Path, point: str):
    with pytest.raises(SimulatedCrash):
        open_wal(tmp_path / "n", node_id="n1", crash_hook=_crash_on(point, 1))
    with open_wal(tmp_path / "n", node_id="n1") as wal:
        wal.open_group("a", GROUP_CONFIG).save(None, [group_entry("a", 1)])
    with open_wal(tmp_path / "n", node_id="n1") as wal:
        assert wal.open_group("a").load().entries == [group_entry("a", 1)]
