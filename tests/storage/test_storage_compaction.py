"""Snapshots: compaction keeps the snapshot and drops the WAL segments it covers, so
the data directory stays bounded however long the node runs; a snapshot from the
leader replaces the whole log."""

from __future__ import annotations

import pytest
from storage_helpers import CONFIG, OpenStorage, entries_between

from nodes.raft.messages import HardState, Snapshot, SnapshotMeta
from nodes.storage.wal import list_segments


def _snap(index: int, term: int = 1) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, CONFIG), f"state at {index}".encode())


def test_compaction_drops_the_covered_segments_and_load_is_snapshot_plus_tail(
    open_storage: OpenStorage,
):
    s = open_storage(segment_bytes=300)
    s.save(HardState(1, "n1", 80), entries_between(1, 100))
    before = list_segments(s.path / "wal")
    s.compact(_snap(60))
    after = list_segments(s.path / "wal")
    # kept: the segment holding 61 and everything after it; gone: all the rest
    holding_61 = max(seg.first_index for seg in before if seg.first_index <= 61)
    assert [seg.first_index for seg in after] == [
        seg.first_index for seg in before if seg.first_index >= holding_61
    ]
    assert s.load().snapshot == _snap(60) and s.load().entries == entries_between(61, 100)
    s.close()
    state = open_storage(segment_bytes=300).load()
    assert state.snapshot == _snap(60) and state.entries == entries_between(61, 100)


def test_only_the_latest_snapshot_file_is_kept(open_storage: OpenStorage):
    s = open_storage()
    s.save(None, entries_between(1, 30))
    for index in (10, 20, 30):
        s.compact(_snap(index))
    assert [p.name for p in s.path.glob("*.snap")] == [
        "snapshot-00000000000000000030-00000000000000000001.snap"
    ]
    s.compact(_snap(20))  # not newer: ignored, as MemoryStorage does
    assert s.snapshot() == _snap(30)


def test_the_log_stays_bounded_across_many_compactions(open_storage: OpenStorage):
    segment_bytes = 500
    s = open_storage(segment_bytes=segment_bytes, fsync=False)
    index = 0
    for round_ in range(300):
        s.save(HardState(1, "n1", index), entries_between(index + 1, index + 10))
        index += 10
        s.compact(_snap(index - 5))
        files = [p for p in s.path.rglob("*") if p.is_file()]
        wal_bytes = sum(seg.size for seg in list_segments(s.path / "wal"))
        # only the uncovered tail (5 entries) plus the segment being filled survive
        assert len(files) <= 3 + 3, (round_, sorted(p.name for p in files))
        assert wal_bytes <= 2 * segment_bytes + 200, round_
    assert s.bytes_written["wal"] > 50 * segment_bytes  # it did write a lot
    s.close()
    state = open_storage(segment_bytes=segment_bytes).load()
    assert state.snapshot == _snap(index - 5)
    assert state.entries == entries_between(index - 4, index)


def test_a_snapshot_from_the_leader_whose_last_entry_we_lack_replaces_the_whole_log(
    open_storage: OpenStorage,
):
    s = open_storage(segment_bytes=300)
    s.save(HardState(1, "n1", 5), entries_between(1, 40))
    s.save(HardState(2, "n1", 20), entries_between(21, 22, term=2), snapshot=_snap(20, 2))
    assert s.load().entries == entries_between(21, 22, term=2)
    s.close()
    state = open_storage(segment_bytes=300).load()
    assert state.snapshot == _snap(20, 2)
    assert state.entries == entries_between(21, 22, term=2)
    assert state.hard_state == HardState(2, "n1", 20)


def test_a_snapshot_from_the_leader_keeps_the_entries_after_its_matching_last_entry(
    open_storage: OpenStorage,
):
    """Paper section 7: "If the follower has an existing log entry with the same index
    and term as the snapshot's last included entry, then the entries following it are
    retained"."""
    s = open_storage(segment_bytes=300)
    s.save(HardState(1, "n1", 5), entries_between(1, 40))
    s.save(HardState(1, "n1", 20), [], snapshot=_snap(20, 1))
    s.close()
    s = open_storage(segment_bytes=300)
    assert s.load().entries == entries_between(21, 40)
    s.save(None, entries_between(30, 31, term=2))  # and they can still be overwritten
    s.close()
    state = open_storage(segment_bytes=300).load()
    assert state.entries == entries_between(21, 29) + entries_between(30, 31, term=2)


def test_a_snapshot_from_the_leader_beyond_the_log_jumps_it_forward(open_storage: OpenStorage):
    s = open_storage()
    s.save(None, entries_between(1, 5))
    s.save(HardState(2, None, 100), [], snapshot=_snap(100, 2))
    with pytest.raises(ValueError):
        s.save(None, entries_between(6, 6))
    s.save(None, entries_between(101, 103, term=2))
    s.close()
    state = open_storage().load()
    assert state.snapshot == _snap(100, 2) and state.entries == entries_between(101, 103, 2)


def test_an_older_snapshot_from_the_leader_also_replaces_the_newer_one(
    open_storage: OpenStorage,
):
    """MemoryStorage takes whatever snapshot save() is given; so does DiskStorage, and
    the newer file is deleted durably so that it cannot come back after a crash."""
    s = open_storage()
    s.save(None, entries_between(1, 30))
    s.compact(_snap(25))
    before = s.fsyncs
    s.save(None, [], snapshot=_snap(10, 2))
    assert (s.fsyncs - before)["snapshot.dir"] == 2  # the rename, then the deletion
    s.save(None, entries_between(11, 12, term=2))
    s.close()
    state = open_storage().load()
    assert state.snapshot == _snap(10, 2) and state.entries == entries_between(11, 12, 2)
