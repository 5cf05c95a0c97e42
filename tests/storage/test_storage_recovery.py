"""Recovery on open: a torn record at the very end of the log (a crash during the
write) is cut with a warning; every other kind of damage is a CorruptionError that
names the file and the offset and tells the operator what to do. Nothing that was
acknowledged is ever dropped silently."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from storage_helpers import CONFIG, OpenStorage, copy_dir, cut_file, entries_between, flip_byte

from nodes.raft.messages import HardState, Snapshot, SnapshotMeta
from nodes.storage import CorruptionError
from nodes.storage.errors import REJOIN_ADVICE
from nodes.storage.wal import list_segments, record_offsets


def _segments(path: Path) -> list[Path]:
    return [seg.path for seg in list_segments(path / "wal")]


def _assert_names(exc: CorruptionError, path: Path, offset: int) -> None:
    message = str(exc)
    assert exc.path == path and exc.offset == offset
    assert str(path) in message and f"byte offset {offset}" in message
    assert REJOIN_ADVICE in message


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


def test_a_flipped_byte_in_the_middle_of_a_segment_is_corruption_naming_file_and_offset(
    open_storage: OpenStorage,
):
    with open_storage() as s:
        s.save(None, entries_between(1, 50))
    last = _segments(s.path)[-1]
    offsets = record_offsets(last)
    flip_byte(last, offsets[20] + 12)  # inside record 21's body; 29 valid records follow
    with pytest.raises(CorruptionError) as info:
        open_storage()
    _assert_names(info.value, last, offsets[20])
    assert "checksum mismatch" in str(info.value)
    assert f"valid record follows at byte offset {offsets[21]}" in str(info.value)


def test_a_flipped_length_field_in_the_middle_of_a_segment_is_corruption(
    open_storage: OpenStorage,
):
    with open_storage() as s:
        s.save(None, entries_between(1, 50))
    last = _segments(s.path)[-1]
    offsets = record_offsets(last)
    flip_byte(last, offsets[30] + 2)  # the length now points far past the end
    with pytest.raises(CorruptionError) as info:
        open_storage()
    _assert_names(info.value, last, offsets[30])


def test_a_flipped_byte_in_a_segment_that_is_not_the_last_is_corruption_even_at_its_end(
    open_storage: OpenStorage,
):
    with open_storage(segment_bytes=300) as s:
        s.save(None, entries_between(1, 40))
    first = _segments(s.path)[0]
    last_record = record_offsets(first)[-1]
    flip_byte(first, first.stat().st_size - 1)
    with pytest.raises(CorruptionError) as info:
        open_storage(segment_bytes=300)
    _assert_names(info.value, first, last_record)
    assert "not the last" in str(info.value)


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


def test_a_damaged_final_record_that_the_hard_state_commits_is_corruption(
    open_storage: OpenStorage,
):
    """...unless the hard state proves it was durable: its commit index covers it."""
    with open_storage() as s:
        s.save(HardState(1, "n1", 10), entries_between(1, 10))
    last = _segments(s.path)[-1]
    flip_byte(last, record_offsets(last)[-1] + 10)
    with pytest.raises(CorruptionError, match="commits index 10 but the log ends at 9"):
        open_storage()
    assert len(record_offsets(last)) == 9 and last.stat().st_size > record_offsets(last)[-1]


def test_a_missing_segment_is_corruption_not_a_shorter_log(open_storage: OpenStorage):
    with open_storage(segment_bytes=300) as s:
        s.save(None, entries_between(1, 40))
    segments = _segments(s.path)
    segments[1].unlink()
    with pytest.raises(CorruptionError, match="records are missing") as info:
        open_storage(segment_bytes=300)
    assert info.value.path == segments[2] and info.value.offset == 0


def test_a_corrupt_snapshot_payload_is_detected(open_storage: OpenStorage):
    with open_storage() as s:
        s.save(None, entries_between(1, 10))
        s.compact(Snapshot(SnapshotMeta(8, 1, CONFIG), b"the state machine" * 100))
    (snap,) = s.path.glob("snapshot-*.snap")
    flip_byte(snap, snap.stat().st_size - 3)
    with pytest.raises(CorruptionError, match="payload checksum mismatch") as info:
        open_storage()
    assert info.value.path == snap and REJOIN_ADVICE in str(info.value)


@pytest.mark.parametrize("damage", ["header", "truncated", "magic"])
def test_a_corrupt_snapshot_header_or_a_truncated_snapshot_is_detected(
    open_storage: OpenStorage, damage: str
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
    with pytest.raises(CorruptionError) as info:
        open_storage()
    assert info.value.path == snap


def test_a_corrupt_hard_state_is_detected(open_storage: OpenStorage):
    with open_storage() as s:
        s.save(HardState(3, "n2", 0), [])
    flip_byte(s.path / "hardstate", 9)
    with pytest.raises(CorruptionError) as info:
        open_storage()
    assert info.value.path == s.path / "hardstate"


def test_a_data_directory_that_lost_its_meta_file_is_corruption(open_storage: OpenStorage):
    with open_storage() as s:
        s.save(HardState(3, "n2", 0), entries_between(1, 3))
    (s.path / "meta").unlink()
    with pytest.raises(CorruptionError, match="meta file missing"):
        open_storage()


def test_leftover_temp_files_of_an_interrupted_atomic_write_are_removed(
    open_storage: OpenStorage,
):
    with open_storage() as s:
        s.save(HardState(3, "n2", 0), [])
    (s.path / "hardstate.tmp").write_bytes(b"half a hard st")
    with open_storage() as s:
        assert s.load().hard_state == HardState(3, "n2", 0)
    assert not (s.path / "hardstate.tmp").exists()


def test_a_data_directory_that_lost_its_wal_is_corruption(open_storage: OpenStorage):
    with open_storage() as s:
        s.save(HardState(3, "n2", 3), entries_between(1, 3))
    for segment in _segments(s.path):
        segment.unlink()
    (s.path / "wal").rmdir()
    with pytest.raises(CorruptionError, match="WAL directory is missing"):
        open_storage()
