"""Recovery on open: a torn record at the very end of the log, beyond what the node
acknowledged (a crash during the write), is cut with a warning. Any other damage (a
flipped bit, a lost suffix, a missing segment, a damaged snapshot or hard state)
keeps the intact part, names file and offset in a warning, and durably marks the
node as recovering: it votes again only once its peers have repaired it
(``nodes.raft.core``). Nothing that was acknowledged is ever dropped silently."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from storage_helpers import CONFIG, OpenStorage, copy_dir, cut_file, entries_between, flip_byte

from nodes.raft.messages import HardState, Snapshot, SnapshotMeta
from nodes.storage import CorruptionError
from nodes.storage.errors import REJOIN_ADVICE
from nodes.storage.records import PROMISE_SLOT_BYTES
from nodes.storage.wal import list_segments, record_offsets


def _segments(path: Path) -> list[Path]:
    return [seg.path for seg in list_segments(path / "wal")]


def test_cutting_the_last_segment_at_every_byte_of_its_last_3_records_keeps_the_written_prefix(
    open_storage: OpenStorage, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    with open_storage() as s:
        s.save(HardState(1, "n1", 7), entries_between(1, 7))
        for i in range(8, 11):  # three more saves: three more records
            s.save(None, entries_between(i, i))
    pristine = s.path
    segment = _segments(pristine)[-1].relative_to(pristine)
    offsets = record_offsets(pristine / segment)
    size = (pristine / segment).stat().st_size
    assert len(offsets) == 10

    for cut in range(offsets[-3], size + 1):
        trial = copy_dir(pristine, tmp_path / f"cut-{cut}")
        cut_file(trial / segment, cut)
        complete = sum(1 for end in [*offsets[1:], size] if end <= cut)  # records fully kept
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nodes.storage"):
            with open_storage(trial) as recovered:
                assert recovered.load().entries == entries_between(1, complete), cut
                # the repaired log accepts new records and keeps them
                recovered.save(None, entries_between(complete + 1, complete + 1, term=2))
        if cut in offsets or cut == size:  # the file ends at a record boundary
            assert "torn record" not in caplog.text
        else:
            assert f"{trial / segment}: torn record at byte offset {offsets[complete]}" in (
                caplog.text
            )
        with open_storage(trial) as again:
            expected = entries_between(1, complete) + entries_between(complete + 1, complete + 1, 2)
            assert again.load().entries == expected


def test_a_zero_filled_tail_is_a_torn_write_and_is_cut(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage() as s:
        s.save(None, entries_between(1, 5))
    last = _segments(s.path)[-1]
    size = last.stat().st_size
    with last.open("ab") as f:
        f.write(bytes(4096))  # the file grew, its data never reached the disk
    with open_storage() as s:
        assert s.load().entries == entries_between(1, 5)
    assert "zero frame length" in caplog.text and f"byte offset {size}" in caplog.text
    assert last.stat().st_size == size


def _reopens_recovering(
    open_storage: OpenStorage, expected: list, caplog: pytest.LogCaptureFixture, **kw: object
) -> None:
    """The damaged directory opens, keeps exactly the intact prefix ``expected``, says
    why in the log, and its hard state durably records that the node is recovering
    (a second open finds it so even though the log now looks whole)."""
    with caplog.at_level(logging.WARNING, logger="nodes.storage"):
        with open_storage(**kw) as s:
            state = s.load()
            assert state.entries == expected
            assert state.hard_state.recovering
    assert "the node's storage is damaged" in caplog.text
    with open_storage(**kw) as again:
        assert again.load().entries == expected and again.load().hard_state.recovering


def test_a_flipped_byte_in_the_middle_of_a_segment_keeps_the_prefix_and_recovers(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    """Issue 11: the node used to refuse to start, advising an unsafe rejoin."""
    with open_storage() as s:
        s.save(HardState(1, "n1", 0, promised=50), entries_between(1, 50))
    last = _segments(s.path)[-1]
    offsets = record_offsets(last)
    flip_byte(last, offsets[20] + 12)  # inside record 21's body; 29 valid records follow
    _reopens_recovering(open_storage, entries_between(1, 20), caplog)
    # one offset per clause (issue 11: "at byte offset X at byte offset Y")
    assert f"{last}, byte offset {offsets[20]}: checksum mismatch; a valid record follows " \
        f"at byte offset {offsets[21]};" in caplog.text
    assert len(record_offsets(last)) == 20


def test_a_flipped_length_field_in_the_middle_of_a_segment_keeps_the_prefix_and_recovers(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage() as s:
        s.save(None, entries_between(1, 50))
    last = _segments(s.path)[-1]
    offsets = record_offsets(last)
    flip_byte(last, offsets[30] + 2)  # the length now points far past the end
    _reopens_recovering(open_storage, entries_between(1, 30), caplog)


def test_a_flipped_byte_in_a_segment_that_is_not_the_last_cuts_every_later_segment(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage(segment_bytes=300) as s:
        s.save(None, entries_between(1, 40))
    first = _segments(s.path)[0]
    kept = len(record_offsets(first)) - 1
    flip_byte(first, first.stat().st_size - 1)
    _reopens_recovering(open_storage, entries_between(1, kept), caplog, segment_bytes=300)
    assert "not the last" in caplog.text
    assert _segments(s.path) == [first]


def test_a_flipped_byte_in_the_final_record_with_nothing_after_it_is_a_torn_tail(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    """Decision: an invalid final record with nothing valid after it is
    indistinguishable from a write cut by a crash, so it is cut (loudly)..."""
    with open_storage() as s:
        s.save(HardState(1, "n1", 9), entries_between(1, 10))
    last = _segments(s.path)[-1]
    final = record_offsets(last)[-1]
    flip_byte(last, final + 10)
    with open_storage() as s:
        assert s.load().entries == entries_between(1, 9)
    assert f"{last}: torn record at byte offset {final}" in caplog.text


def test_a_damaged_final_record_that_the_hard_state_commits_is_not_a_torn_tail(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    """...unless the hard state proves it was durable: its commit index covers it."""
    with open_storage() as s:
        s.save(HardState(1, "n1", 10), entries_between(1, 10))
    last = _segments(s.path)[-1]
    flip_byte(last, record_offsets(last)[-1] + 10)
    _reopens_recovering(open_storage, entries_between(1, 9), caplog)
    assert "the log ends at index 9" in caplog.text and "up to index 10" in caplog.text


@pytest.mark.parametrize("kept", [22, 0])
def test_a_lost_suffix_shorter_than_what_the_node_acknowledged_is_damage_not_a_torn_tail(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture, kept: int
):
    """Issue 11: a cut of the last segment that leaves 22 of 503 entries was taken
    for a torn tail. The promise in the hard state (entries acknowledged up to 503)
    tells a lost suffix from a crash during a write."""
    with open_storage() as s:
        s.save(HardState(1, "n2", 400, promised=503), entries_between(1, 503))
    last = _segments(s.path)[-1]
    offsets = record_offsets(last)
    cut_file(last, offsets[kept] if kept else 0)
    _reopens_recovering(open_storage, entries_between(1, kept), caplog)
    assert f"the log ends at index {kept}" in caplog.text and "up to index 503" in caplog.text
    with open_storage() as s:
        hs = s.load().hard_state
        assert (hs.term, hs.vote, hs.promised, hs.commit) == (1, "n2", kept, kept)


def test_a_torn_tail_beyond_the_promise_is_still_a_crash_during_a_write(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage() as s:
        s.save(HardState(1, "n2", 0, promised=9), entries_between(1, 9))
        s.save(None, entries_between(10, 12))  # written, never acknowledged
    last = _segments(s.path)[-1]
    cut_file(last, last.stat().st_size - 3)
    with open_storage() as s:
        assert s.load().entries == entries_between(1, 11)
        assert not s.load().hard_state.recovering
    assert "torn record" in caplog.text and "damaged" not in caplog.text


def test_a_missing_segment_keeps_the_segments_before_it_and_recovers(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage(segment_bytes=300) as s:
        s.save(None, entries_between(1, 40))
    segments = _segments(s.path)
    segments[1].unlink()
    kept = len(record_offsets(segments[0]))
    _reopens_recovering(open_storage, entries_between(1, kept), caplog, segment_bytes=300)
    assert "records are missing" in caplog.text


def test_a_corrupt_snapshot_is_dropped_with_the_log_it_covered_and_the_node_recovers(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage() as s:
        s.save(HardState(1, "n1", 10, promised=10), entries_between(1, 10))
        s.compact(Snapshot(SnapshotMeta(8, 1, CONFIG), b"the state machine" * 100))
    (snap,) = s.path.glob("snapshot-*.snap")
    flip_byte(snap, snap.stat().st_size - 3)
    # the WAL still holds the records from index 1 (one segment): they are intact
    _reopens_recovering(open_storage, entries_between(1, 10), caplog)
    assert "payload checksum mismatch" in caplog.text
    assert not snap.exists()
    with open_storage() as s:
        assert s.snapshot() is None


def test_a_corrupt_snapshot_whose_log_prefix_is_gone_leaves_an_empty_log(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage(segment_bytes=200) as s:
        s.save(HardState(1, "n1", 30, promised=30), entries_between(1, 30))
        s.compact(Snapshot(SnapshotMeta(25, 1, CONFIG), b"the state machine" * 100))
    assert record_offsets(_segments(s.path)[0])  # segments before 25 are gone
    (snap,) = s.path.glob("snapshot-*.snap")
    flip_byte(snap, snap.stat().st_size - 3)
    _reopens_recovering(open_storage, [], caplog, segment_bytes=200)
    with open_storage(segment_bytes=200) as s:
        assert s.snapshot() is None and s.load().hard_state.commit == 0


@pytest.mark.parametrize("damage", ["header", "truncated", "magic"])
def test_a_corrupt_snapshot_header_or_a_truncated_snapshot_is_detected(
    open_storage: OpenStorage, damage: str, caplog: pytest.LogCaptureFixture
):
    with open_storage() as s:
        s.compact(Snapshot(SnapshotMeta(8, 1, CONFIG), b"x" * 1000))
    (snap,) = s.path.glob("snapshot-*.snap")
    if damage == "header":
        flip_byte(snap, 14)
    elif damage == "truncated":
        cut_file(snap, snap.stat().st_size - 5)
    else:
        flip_byte(snap, 0)
    _reopens_recovering(open_storage, [], caplog)
    assert str(snap) in caplog.text


def test_a_corrupt_hard_state_loses_term_and_vote_and_the_node_recovers(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage() as s:
        s.save(HardState(3, "n2", 0), entries_between(1, 3))
    flip_byte(s.path / "hardstate", 9)
    _reopens_recovering(open_storage, entries_between(1, 3), caplog)
    assert f"{s.path / 'hardstate'}, byte offset 0: checksum mismatch" in caplog.text
    with open_storage() as s:
        assert (s.load().hard_state.term, s.load().hard_state.vote) == (0, None)


def test_a_founders_new_directory_is_recovering_until_a_hard_state_says_otherwise(
    open_storage: OpenStorage,
):
    """An empty directory of a node the cluster file lists as a voter: new cluster
    or wiped member, the node cannot tell (the core asks its peers)."""
    with open_storage() as s:
        assert s.load().hard_state == HardState(recovering=True)
    with open_storage() as s:
        assert s.load().hard_state.recovering
        s.save(HardState(1, "n2", 0), [])
    with open_storage() as s:
        assert not s.load().hard_state.recovering


def test_a_joining_servers_new_directory_is_not_recovering(tmp_path: Path):
    from nodes.storage import DiskStorage

    with DiskStorage(tmp_path / "n9", "n9", "test", fsync=False) as s:
        assert s.load().hard_state == HardState()


def test_a_data_directory_that_lost_its_meta_file_is_corruption(open_storage: OpenStorage):
    with open_storage() as s:
        s.save(HardState(3, "n2", 0), entries_between(1, 3))
    (s.path / "meta").unlink()
    with pytest.raises(CorruptionError, match="meta file missing") as info:
        open_storage()
    message = str(info.value)
    assert message.count("byte offset") == 1 and REJOIN_ADVICE in message
    # the advice, followed literally (an empty directory for a listed voter), is safe:
    # the node comes back recovering (tested end to end in tests/integration)
    assert "refuses to vote" in REJOIN_ADVICE


def test_a_damaged_meta_file_is_refused_with_one_offset_in_the_message(
    open_storage: OpenStorage,
):
    with open_storage() as s:
        s.save(HardState(3, "n2", 0), entries_between(1, 3))
    flip_byte(s.path / "meta", 10)
    with pytest.raises(CorruptionError) as info:
        open_storage()
    message = str(info.value)
    assert message.startswith(f"{s.path / 'meta'}, byte offset 0: checksum mismatch; ")
    assert message.count("byte offset") == 1 and message.endswith(REJOIN_ADVICE)


def test_leftover_temp_files_of_an_interrupted_atomic_write_are_removed(
    open_storage: OpenStorage,
):
    with open_storage() as s:
        s.save(HardState(3, "n2", 0), [])
    (s.path / "hardstate.tmp").write_bytes(b"half a hard st")
    with open_storage() as s:
        assert s.load().hard_state == HardState(3, "n2", 0)
    assert not (s.path / "hardstate.tmp").exists()


def test_a_data_directory_that_lost_its_wal_recovers_from_its_peers(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage() as s:
        s.save(HardState(3, "n2", 3, promised=3), entries_between(1, 3))
    for segment in _segments(s.path):
        segment.unlink()
    (s.path / "wal").rmdir()
    _reopens_recovering(open_storage, [], caplog)
    assert "the WAL directory is missing" in caplog.text


def test_a_raised_promise_costs_one_fsync_and_survives_a_crash(open_storage: OpenStorage):
    """The promise moves with every acknowledgement: it goes to the promise file (one
    fdatasync in place, once the file has its final size), not through the hard
    state's write-fsync-rename-fsync."""
    with open_storage() as s:
        s.save(HardState(1, "n2", 0), [])
        before = s.fsyncs
        s.save(HardState(1, "n2", 0, promised=5), entries_between(1, 5))
        spent = s.fsyncs - before
        assert spent == {"wal": 1, "wal.dir": 1, "promise": 1, "promise.size": 1, "promise.dir": 1}
        assert (s.path / "promise").stat().st_size == 2 * PROMISE_SLOT_BYTES
        before = s.fsyncs
        s.save(HardState(1, "n2", 3, promised=8), entries_between(6, 8))
        assert s.fsyncs - before == {"wal": 1, "promise": 1}
        s.abandon()  # a crash: the lazily kept commit index is not written
    with open_storage() as s:
        assert s.load().hard_state == HardState(1, "n2", 0, promised=8)


def test_a_short_promise_file_gets_its_final_size_before_writes_in_place(
    open_storage: OpenStorage,
):
    """A promise file shorter than its two slots (a crash right after creating it) is
    sized durably before the first write: fdatasync is only enough for an overwrite
    that changes no size."""
    with open_storage() as s:
        s.save(HardState(1, "n2", 0), [])
        s.save(HardState(1, "n2", 0, promised=2), entries_between(1, 2))
        s.abandon()
    (s.path / "promise").write_bytes(b"")
    with open_storage() as s:
        assert s.load().hard_state.promised == 0  # the file held nothing any more
        before = s.fsyncs
        s.save(HardState(1, "n2", 0, promised=3), entries_between(3, 3))
        assert s.fsyncs - before == {"wal": 1, "promise": 1, "promise.size": 1}
        assert (s.path / "promise").stat().st_size == 2 * PROMISE_SLOT_BYTES
        s.save(HardState(1, "n2", 0, promised=4), entries_between(4, 4))
        s.abandon()
    with open_storage() as s:
        assert s.load().hard_state.promised == 4


def test_a_lost_suffix_below_a_promise_kept_only_in_the_promise_file_is_damage(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    with open_storage() as s:
        s.save(HardState(1, "n2", 0), [])
        for i in range(1, 41):
            s.save(HardState(1, "n2", 0, promised=i), entries_between(i, i))
        s.abandon()
    last = _segments(s.path)[-1]
    cut_file(last, record_offsets(last)[30])
    _reopens_recovering(open_storage, entries_between(1, 30), caplog)
    assert "up to index 40" in caplog.text


@pytest.mark.parametrize("slot", [0, 1])
def test_a_torn_or_flipped_promise_slot_falls_back_to_the_other(
    open_storage: OpenStorage, slot: int
):
    with open_storage() as s:
        s.save(HardState(1, "n2", 0), [])
        s.save(HardState(1, "n2", 0, promised=3), entries_between(1, 3))  # seq 1: slot 1
        s.save(HardState(1, "n2", 0, promised=4), entries_between(4, 4))  # seq 2: slot 0
        s.abandon()  # a crash: only the promise file knows 4 (close would write it too)
    flip_byte(s.path / "promise", slot * 32 + 12)
    with open_storage() as s:
        state = s.load()
        # the newest valid slot: 4 if slot 1 (older) was hit, else the older 3 (safe:
        # the WAL still holds 1..4, one fault at a time)
        assert state.hard_state.promised == (3 if slot == 0 else 4)
        assert not state.hard_state.recovering and state.entries == entries_between(1, 4)


def test_a_replaced_suffix_lowers_the_promise_before_the_cut(open_storage: OpenStorage):
    """A new leader replaces entries 4..5 (never committed): were the cut durable and
    the promise not, a crash would look like a lost suffix at the next start."""
    from storage_helpers import SimulatedCrash, crash_at

    with open_storage() as s:
        s.save(HardState(1, "n2", 0), [])
        s.save(HardState(1, "n2", 0, promised=5), entries_between(1, 5))
    with open_storage(crash_hook=crash_at("wal.write")) as s:
        with pytest.raises(SimulatedCrash):
            s.save(HardState(2, "n3", 0, promised=4), entries_between(4, 4, term=2))
        s.abandon()
    with open_storage() as s:
        state = s.load()
        assert not state.hard_state.recovering and state.hard_state.promised == 3
        assert state.entries == entries_between(1, 3)
