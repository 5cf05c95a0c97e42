"""SharedWal: one WAL for many groups. Group commit across groups (one fsync per sync
whatever the number of groups), torn tails and damage that affect only the groups
whose records they held, segment deletion only once no group needs a segment, and
group removal."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from shared_helpers import GROUP_CONFIG, group_entry, open_wal, segment_paths, write_turns
from storage_helpers import copy_dir, cut_file, flip_byte

from nodes.raft.messages import ClusterConfig, HardState, Snapshot, SnapshotMeta
from nodes.storage import StorageError
from nodes.storage.records import scan_frames
from nodes.storage.shared_records import TAG_GROUP_ENTRY, decode_group_record
from nodes.storage.shared_replay import list_segments

GROUPS = ["a", "b", "c"]


def _entries(group: str, first: int, last: int, term: int = 1) -> list:
    return [group_entry(group, i, term) for i in range(first, last + 1)]


def _snapshot(index: int, term: int = 1) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, GROUP_CONFIG), f"state@{index}".encode())


@pytest.mark.parametrize("groups", [1, 10, 100])
def test_one_sync_makes_every_staged_group_durable_with_one_fsync(tmp_path: Path, groups: int):
    with open_wal(tmp_path / "n") as wal:
        storages = [wal.open_group(f"g{k}", GROUP_CONFIG) for k in range(groups)]
        wal.sync()  # the groups' first records
        for index in range(1, 4):
            before = wal.fsyncs
            for k, storage in enumerate(storages):
                storage.stage(HardState(1, "n1", index - 1, index), [group_entry(k, index)])
            wal.sync()
            assert wal.fsyncs - before == {"wal": 1}, index
        before = wal.fsync_count
        wal.sync()  # nothing staged: nothing to make durable
        assert wal.fsync_count == before
    with open_wal(tmp_path / "n") as wal:
        for k in range(groups):
            state = wal.open_group(f"g{k}").load()
            assert state.entries == _entries(k, 1, 3) and state.hard_state.promised == 3


def test_save_is_stage_then_sync(tmp_path: Path):
    with open_wal(tmp_path / "n") as wal:
        group = wal.open_group("a", GROUP_CONFIG)
        before = wal.fsyncs
        group.save(HardState(1, "n1", 0, 2), _entries("a", 1, 2))
        assert wal.fsyncs - before == {"wal": 1}
        assert group.load().entries == _entries("a", 1, 2)


def _frames(path: Path) -> list[tuple[int, int]]:
    """(offset, end) of every record of a segment."""
    data = path.read_bytes()
    offsets = [offset for offset, _ in scan_frames(data).frames]
    return list(zip(offsets, [*offsets[1:], len(data)], strict=True))


def test_cutting_the_last_sync_at_every_byte_keeps_per_group_exactly_the_complete_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    pristine = tmp_path / "pristine"
    with open_wal(pristine) as wal:
        write_turns(wal, GROUPS, range(1, 6))
    segment = segment_paths(pristine)[-1].relative_to(pristine)
    last_turn = _frames(pristine / segment)[-6:]  # per group in order: entry 5, hard state
    size = (pristine / segment).stat().st_size
    for cut in range(last_turn[0][0], size + 1):
        trial = copy_dir(pristine, tmp_path / f"cut-{cut}")
        cut_file(trial / segment, cut)
        complete = sum(1 for _, end in last_turn if end <= cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nodes.storage"):
            with open_wal(trial) as wal:
                assert wal.damaged == {}, cut
                for j, gid in enumerate(GROUPS):
                    state = wal.open_group(gid).load()
                    has_entry, has_hs = complete >= 2 * j + 1, complete >= 2 * j + 2
                    assert state.entries == _entries(gid, 1, 5 if has_entry else 4), (cut, gid)
                    assert state.hard_state.promised == (5 if has_hs else 4), (cut, gid)
                    assert not state.hard_state.recovering
                    # the repaired log takes new records and keeps them
                    wal.open_group(gid).save(None, [group_entry(gid, 5, term=2)])
        at_boundary = cut == size or any(cut == offset for offset, _ in last_turn)
        assert ("torn record" in caplog.text) != at_boundary, cut
        with open_wal(trial) as wal:
            for gid in GROUPS:
                expected = _entries(gid, 1, 4) + [group_entry(gid, 5, term=2)]
                assert wal.open_group(gid).load().entries == expected


def _entry_record_of(path: Path, group_slot: int, index: int) -> tuple[int, int]:
    """(offset, end) of the entry record of ``group_slot`` at ``index`` in a segment."""
    data = path.read_bytes()
    for offset, end in _frames(path):
        rec = decode_group_record(data[offset + 8 : end])
        if rec.kind == TAG_GROUP_ENTRY and rec.slot == group_slot and rec.entry.index == index:
            return offset, end
    raise AssertionError(f"no entry {index} of slot {group_slot} in {path}")


def test_a_flipped_byte_damages_only_the_group_whose_record_it_was(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "n"
    with open_wal(path) as wal:
        write_turns(wal, GROUPS, range(1, 6))
        slot_b = wal.open_group("b")._group.meta.slot
    segment = segment_paths(path)[-1]
    offset, _ = _entry_record_of(segment, slot_b, 3)
    flip_byte(segment, offset + 12)
    with caplog.at_level(logging.WARNING, logger="nodes.storage"):
        with open_wal(path) as wal:
            assert list(wal.damaged) == ["b"]
            damaged = wal.open_group("b").load()
            assert damaged.entries == _entries("b", 1, 2)
            assert damaged.hard_state.recovering and damaged.hard_state.promised <= 2
            for gid in ("a", "c"):
                state = wal.open_group(gid).load()
                assert state.entries == _entries(gid, 1, 5), gid
                assert state.hard_state == HardState(1, "n1", 4, 5), gid
            # b is repaired by its leader: the log continues from what it kept
            wal.open_group("b").save(HardState(2, "n2", 3, 3), [group_entry("b", 3, term=2)])
    assert "group 'b''s storage is damaged" in caplog.text and "checksum mismatch" in caplog.text
    with open_wal(path) as wal:  # the damaged bytes stay, the recovery record heals them
        assert wal.damaged == {}
        repaired = wal.open_group("b").load()
        assert repaired.entries == [*_entries("b", 1, 2), group_entry("b", 3, term=2)]
        assert wal.open_group("a").load().entries == _entries("a", 1, 5)


def test_a_group_whose_last_record_precedes_the_damage_recovers_too(tmp_path: Path):
    """Nothing after the damage vouches for an idle group: its newest records may have
    been the damaged ones, so it recovers (the busy groups' sequence numbers prove
    them intact)."""
    path = tmp_path / "n"
    with open_wal(path) as wal:
        write_turns(wal, GROUPS, range(1, 3))
        write_turns(wal, ["a", "b"], range(3, 6))  # c is idle from here on
        slot_a = wal.open_group("a")._group.meta.slot
    segment = segment_paths(path)[-1]
    offset, _ = _entry_record_of(segment, slot_a, 4)
    flip_byte(segment, offset + 12)
    with open_wal(path) as wal:
        assert sorted(wal.damaged) == ["a", "c"]
        assert wal.open_group("c").load().entries == _entries("c", 1, 2)
        assert wal.open_group("c").load().hard_state.recovering
        assert wal.open_group("b").load().entries == _entries("b", 1, 5)
        assert not wal.open_group("b").load().hard_state.recovering


def test_a_missing_segment_damages_the_groups_that_lived_through_it(tmp_path: Path):
    path = tmp_path / "n"
    with open_wal(path, segment_bytes=300) as wal:
        write_turns(wal, ["a", "b"], range(1, 12))
    segments = segment_paths(path)
    assert len(segments) >= 4
    segments[1].unlink()
    with open_wal(path, segment_bytes=300) as wal:
        assert sorted(wal.damaged) == ["a", "b"]
        for gid in ("a", "b"):
            state = wal.open_group(gid).load()
            assert state.hard_state.recovering
            assert state.entries == _entries(gid, 1, len(state.entries))  # an intact prefix


def _max_index_per_group(segment: Path) -> dict[int, int]:
    data = segment.read_bytes()
    found: dict[int, int] = {}
    for offset, end in _frames(segment):
        rec = decode_group_record(data[offset + 8 : end])
        if rec.kind == TAG_GROUP_ENTRY:
            found[rec.slot] = max(found.get(rec.slot, 0), rec.entry.index)
    return found


def test_a_segment_is_deleted_only_once_every_group_compacted_past_it(tmp_path: Path):
    path = tmp_path / "n"
    with open_wal(path, segment_bytes=400, max_segments=3, rewrite_entries=0) as wal:
        write_turns(wal, ["a", "b"], range(1, 31))
        a, b = wal.open_group("a"), wal.open_group("b")
        slots = {"a": a._group.meta.slot, "b": b._group.meta.slot}
        before = segment_paths(path)
        assert len(before) > 5
        a.compact(_snapshot(30))
        assert segment_paths(path) == before  # b still needs every segment
        assert wal.groups_pinning() == ["b"]  # the host should ask b for a snapshot
        maxima = {seg: _max_index_per_group(seg) for seg in before}
        b.compact(_snapshot(12))
        after = segment_paths(path)
        deleted = before[: len(before) - len(after)]
        assert after == before[len(deleted) :] and deleted
        bases = {slots["a"]: 30, slots["b"]: 12}
        for seg in deleted:
            assert all(index <= bases[slot] for slot, index in maxima[seg].items()), seg
        # the oldest segment left holds an entry that b still needs
        assert any(index > bases[slot] for slot, index in maxima[after[0]].items())
    with open_wal(path, segment_bytes=400) as wal:
        assert wal.damaged == {}
        assert wal.open_group("a").load().entries == []
        assert wal.open_group("b").load().entries == _entries("b", 13, 30)
        assert wal.open_group("b").snapshot() == _snapshot(12)


def test_a_removed_group_is_gone_and_its_records_are_garbage(tmp_path: Path):
    path = tmp_path / "n"
    with open_wal(path, segment_bytes=400) as wal:
        write_turns(wal, ["a", "b"], range(1, 21))
        b_before = wal.open_group("b")
        wal.remove_group("b")
        assert wal.groups() == ["a"]
        with pytest.raises(StorageError, match="group 'b' was removed"):
            b_before.save(None, [group_entry("b", 21)])
        b_again = wal.open_group("b", GROUP_CONFIG)
        assert b_again.load().entries == []  # not the removed group's records
        b_again.save(None, [group_entry("b2", 1)])
        segments = segment_paths(path)
        wal.open_group("a").compact(_snapshot(20))
        assert len(segment_paths(path)) < len(segments)  # b's records no longer pin them
    with open_wal(path, segment_bytes=400) as wal:
        assert sorted(wal.groups()) == ["a", "b"] and wal.damaged == {}
        assert wal.open_group("b").load().entries == [group_entry("b2", 1)]
        wal.remove_group("b")
    with open_wal(path) as wal:
        assert wal.groups() == ["a"]
        assert wal.open_group("c", GROUP_CONFIG).load().entries == []


def test_a_group_created_with_this_node_as_a_voter_starts_recovering(tmp_path: Path):
    with open_wal(tmp_path / "n", node_id="n1") as wal:
        assert wal.open_group("a", GROUP_CONFIG).load().hard_state.recovering
        learner = ClusterConfig(frozenset({"n2"}), frozenset({"n1"}))
        assert not wal.open_group("b", learner).load().hard_state.recovering


def test_the_directory_belongs_to_one_node(tmp_path: Path):
    open_wal(tmp_path / "n", node_id="n1", cluster_id="c").close()
    with pytest.raises(StorageError, match="belongs to node 'n1'"):
        open_wal(tmp_path / "n", node_id="n2", cluster_id="c")
    with open_wal(tmp_path / "n", node_id="n1", cluster_id="c"):
        with pytest.raises(StorageError, match="locked"):
            open_wal(tmp_path / "n", node_id="n1", cluster_id="c")


def test_segments_hold_checkpoints_so_the_newest_has_every_group_hard_state(tmp_path: Path):
    path = tmp_path / "n"
    with open_wal(path, segment_bytes=300) as wal:
        write_turns(wal, GROUPS, range(1, 3))
        write_turns(wal, ["a"], range(3, 20))  # b and c are idle while segments roll over
    newest = list_segments(path / "wal")[-1].path
    data = newest.read_bytes()
    slots = {decode_group_record(data[o + 8 : e]).slot for o, e in _frames(newest)}
    assert len(slots) == 3


def test_a_witness_costs_one_more_fsync_per_sync_whatever_the_number_of_groups(tmp_path: Path):
    with open_wal(tmp_path / "n", witness=True) as wal:
        write_turns(wal, [f"g{k}" for k in range(50)], range(1, 2))
        before = wal.fsyncs
        write_turns(wal, [f"g{k}" for k in range(50)], range(2, 5))
        assert wal.fsyncs - before == {"wal": 3, "promise": 3}


def _cut_last_turn(path: Path) -> None:
    """A disk that lost the last sync's records whole (a cut at a record boundary)."""
    segment = segment_paths(path)[-1]
    cut_file(segment, _frames(segment)[-6][0])


def test_with_a_witness_a_lost_suffix_at_a_record_boundary_makes_every_group_recover(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "n"
    with open_wal(path, witness=True) as wal:
        write_turns(wal, GROUPS, range(1, 6))
    _cut_last_turn(path)
    with caplog.at_level(logging.WARNING, logger="nodes.storage"):
        with open_wal(path, witness=True) as wal:
            assert sorted(wal.damaged) == GROUPS
            for gid in GROUPS:
                state = wal.open_group(gid).load()
                assert state.entries == _entries(gid, 1, 4) and state.hard_state.recovering
    assert "a suffix of acknowledged records is lost" in caplog.text
    with open_wal(path, witness=True) as wal:  # recorded durably, and not reported again
        assert wal.damaged == {}
        assert all(wal.open_group(gid).load().hard_state.recovering for gid in GROUPS)


def test_without_a_witness_a_lost_suffix_at_a_record_boundary_goes_unnoticed(tmp_path: Path):
    """The documented price of one fsync per turn (module docstring of shared.py)."""
    path = tmp_path / "n"
    with open_wal(path) as wal:
        write_turns(wal, GROUPS, range(1, 6))
    _cut_last_turn(path)
    with open_wal(path) as wal:
        assert wal.damaged == {}
        assert wal.open_group("a").load().entries == _entries("a", 1, 4)


def test_a_witness_once_kept_still_guards_the_next_open(tmp_path: Path):
    path = tmp_path / "n"
    with open_wal(path, witness=True) as wal:
        write_turns(wal, GROUPS, range(1, 6))
    _cut_last_turn(path)
    with open_wal(path) as wal:  # the caller no longer asks for one: the loss still shows
        assert sorted(wal.damaged) == GROUPS
    assert not (path / "witness").exists()


def test_an_idle_group_pinning_old_segments_has_its_few_entries_copied_forward(tmp_path: Path):
    """An idle group far from its snapshot interval would keep every segment since its
    last write; its live entries are rewritten into a new segment instead, and the
    WAL stays within about max_segments segments."""
    path = tmp_path / "n"
    with open_wal(path, segment_bytes=400, max_segments=3) as wal:
        write_turns(wal, ["busy", "idle"], range(1, 4))
        busy = wal.open_group("busy")
        for index in range(4, 200):
            busy.save(HardState(1, "n1", index - 1, index), [group_entry("busy", index)])
            if index % 10 == 0:
                busy.compact(_snapshot(index - 5))
            assert len(wal.segments) <= 3 + 2, index
        assert "idle" not in wal.groups_pinning()
    with open_wal(path, segment_bytes=400, max_segments=3) as wal:
        assert wal.damaged == {}
        idle = wal.open_group("idle").load()
        assert idle.entries == _entries("idle", 1, 3)
        assert idle.hard_state == HardState(1, "n1", 2, 3)
        assert wal.open_group("busy").load().entries == _entries("busy", 186, 199)


def test_a_group_with_more_live_entries_than_a_rewrite_is_named_for_a_snapshot(tmp_path: Path):
    path = tmp_path / "n"
    with open_wal(path, segment_bytes=400, max_segments=3, rewrite_entries=2) as wal:
        write_turns(wal, ["busy", "idle"], range(1, 4))
        busy = wal.open_group("busy")
        for index in range(4, 80):
            busy.save(None, [group_entry("busy", index)])
            if index % 10 == 0:
                busy.compact(_snapshot(index - 5))
        assert len(wal.segments) > 3 + 2  # idle (3 entries) is not copied: it pins
        assert wal.groups_pinning() == ["idle"]
        wal.open_group("idle").compact(_snapshot(3))
        assert len(wal.segments) <= 3


def test_a_new_group_checkpointed_before_its_first_record_still_starts_recovering(tmp_path: Path):
    """A group created while the segment is full gets its checkpoint in the next
    segment before its own first record: the checkpoint must already say recovering
    (a crash between the two keeps only the checkpoint)."""
    path = tmp_path / "n"
    with open_wal(path, node_id="n1", segment_bytes=200) as wal:
        index = 1
        while wal._segments[-1].size < 200:  # fill the segment: the next sync rolls over
            write_turns(wal, ["a"], range(index, index + 1))
            index += 1
        wal.open_group("new", GROUP_CONFIG)
        wal.sync()
    newest = segment_paths(path)[-1]
    cut_file(newest, _frames(newest)[2][0])  # keep the two checkpoints only
    with open_wal(path, node_id="n1") as wal:
        assert wal.damaged == {}
        assert wal.open_group("new").load().hard_state == HardState(recovering=True)


def test_a_damaged_snapshot_file_makes_only_its_group_recover(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "n"
    with open_wal(path) as wal:
        write_turns(wal, GROUPS, range(1, 6))
        for gid in GROUPS:
            wal.open_group(gid).compact(_snapshot(3))
        snapshot_file = next(wal.open_group("b")._group.path.glob("snapshot-*.snap"))
    flip_byte(snapshot_file, snapshot_file.stat().st_size - 3)
    with caplog.at_level(logging.WARNING, logger="nodes.storage"):
        with open_wal(path) as wal:
            assert list(wal.damaged) == ["b"]
            b = wal.open_group("b").load()
            # the log after a lost snapshot is of no use: the leader sends a new snapshot
            assert (b.snapshot, b.entries, b.hard_state.recovering) == (None, [], True)
            for gid in ("a", "c"):
                state = wal.open_group(gid).load()
                assert state.snapshot == _snapshot(3) and state.entries == _entries(gid, 4, 5)
    assert "snapshot payload checksum mismatch" in caplog.text
    assert not snapshot_file.exists()
    with open_wal(path) as wal:
        assert wal.damaged == {}
        wal.open_group("b").save(HardState(2, "n2", 10, 11),
                                 [group_entry("b", 11, 2)], _snapshot(10, 2))
        assert wal.open_group("b").load().entries == [group_entry("b", 11, 2)]
    with open_wal(path) as wal:
        b = wal.open_group("b").load()
        assert b.snapshot == _snapshot(10, 2) and b.entries == [group_entry("b", 11, 2)]


def test_segments_stay_while_a_staged_snapshot_install_is_not_durable(tmp_path: Path):
    """A staged install drops a group's entries from what it needs, but until the sync
    the old log is what a crash finds: removing another group must not delete it."""
    path = tmp_path / "n"
    with open_wal(path, segment_bytes=300, rewrite_entries=0) as wal:
        write_turns(wal, ["a", "gone"], range(1, 21))
        wal.open_group("gone").compact(_snapshot(20))
        a = wal.open_group("a")
        a.compact(_snapshot(2))
        segments = segment_paths(path)
        # a snapshot from the leader that keeps the log (it holds entry 10, term 1)
        a.stage(HardState(1, "n1", 10, 20), [], _snapshot(10))
        wal.remove_group("gone")
        assert segment_paths(path) == segments
        wal.abandon()  # a crash before the sync
    with open_wal(path, segment_bytes=300) as wal:
        state = wal.open_group("a").load()
        assert state.snapshot == _snapshot(10) and state.entries == _entries("a", 11, 20)


@pytest.mark.parametrize("witness", [True, False])
def test_a_flipped_byte_anywhere_never_changes_a_group_that_is_not_flagged(
    tmp_path: Path, witness: bool
):
    """Protocol-aware recovery per group: wherever a byte flips in the WAL (seeded
    positions, printed on failure), every group either loads exactly what it had, or
    is flagged, recovering, with an intact prefix of its log. Without a witness the
    last sync's records are spared: damage there looks like a torn write (the
    documented price of one fsync per turn)."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    pristine = tmp_path / "pristine"
    kwargs = {"segment_bytes": 600, "witness": witness}
    with open_wal(pristine, **kwargs) as wal:
        write_turns(wal, GROUPS, range(1, 4))
        write_turns(wal, ["a", "b"], range(4, 9))
        write_turns(wal, ["a"], range(9, 12))
        expected = {gid: wal.open_group(gid).load() for gid in GROUPS}
    segments = [p.relative_to(pristine) for p in segment_paths(pristine)]
    last_sync = _frames(pristine / segments[-1])[-2][0]  # a's entry 11 and hard state
    for trial in range(40):
        segment = rng.choice(segments)
        size = (pristine / segment).stat().st_size
        offset = rng.randrange(size if witness or segment != segments[-1] else last_sync)
        where = f"seed={seed} trial={trial} {segment} byte {offset}"
        path = copy_dir(pristine, tmp_path / f"t{trial}")
        flip_byte(path / segment, offset)
        with open_wal(path, **kwargs) as wal:
            for gid in GROUPS:
                state = wal.open_group(gid).load()
                if gid not in wal.damaged:
                    assert state == expected[gid], where
                    continue
                assert state.hard_state.recovering, where
                kept = len(state.entries)
                assert state.entries == expected[gid].entries[:kept], where
