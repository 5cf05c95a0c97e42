"""SharedWal's bound on segments relies on each group naming the oldest segment
holding its live entries; a group compacted to its last entry holds none."""

from __future__ import annotations

from pathlib import Path

from shared_helpers import GROUP_CONFIG, open_wal, write_turns

from nodes.raft.messages import Snapshot, SnapshotMeta


def test_a_group_compacted_to_its_last_entry_then_written_again_is_named_when_it_pins(
    tmp_path: Path,
) -> None:
    wal = open_wal(tmp_path, segment_bytes=300, max_segments=2, rewrite_entries=0)
    write_turns(wal, ["a", "b"], range(1, 30))
    write_turns(wal, ["b"], range(30, 60))  # a's last entries are in older segments now
    for gid, last in (("a", 29), ("b", 59)):  # nothing live left: all but the last segment go
        wal.open_group(gid, GROUP_CONFIG).compact(
            Snapshot(SnapshotMeta(last, 1, GROUP_CONFIG), b"s"))
    assert len(wal.segments) == 1
    write_turns(wal, ["a"], range(30, 90))
    assert len(wal.segments) > 2
    # "a" pins the oldest segment and must say so (a stale run from before the
    # compaction named a deleted segment, so no group was ever named and the WAL grew)
    assert wal.groups_pinning() == ["a"]
    wal.close()
