"""DiskStorage keeps what save() and compact() were given, across close and reopen,
with one WAL fsync per save, and refuses directories that are not its own."""

from __future__ import annotations

import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
from storage_helpers import CONFIG, OpenStorage, SimulatedCrash, crash_at, entries_between

from nodes.raft.messages import (
    ClusterConfig,
    Entry,
    EntryKind,
    HardState,
    Snapshot,
    SnapshotMeta,
)
from nodes.raft.storage import MemoryStorage
from nodes.storage import (
    CRASH_POINTS,
    DirectoryLockedError,
    DiskStorage,
    StorageFailedError,
    WrongClusterError,
    WrongNodeError,
)
from nodes.storage.records import encode_entry, frame
from nodes.storage.wal import list_segments


def test_what_was_saved_is_loaded_after_close_and_reopen(open_storage: OpenStorage):
    s = open_storage()
    # a founder's new directory: recovering until its peers say the cluster is new
    assert s.load().entries == [] and s.load().hard_state == HardState(recovering=True)
    entries = entries_between(1, 20) + [Entry(21, 2, b"\x00\xff" * 50, EntryKind.CONFIG)]
    s.save(HardState(2, "n2", 15), entries)
    snap = Snapshot(SnapshotMeta(10, 1, CONFIG), b"state machine at 10" * 100)
    s.compact(snap)
    expected = s.load()
    s.close()

    reopened = open_storage()
    state = reopened.load()
    assert state == expected
    assert state.hard_state == HardState(2, "n2", 15)
    assert state.snapshot == snap and reopened.snapshot() == snap
    assert state.entries == entries[10:]
    assert state.initial_config == CONFIG


def test_snapshot_compression_is_optional_and_both_forms_load(
    open_storage: OpenStorage, tmp_path: Path
):
    snap = Snapshot(SnapshotMeta(3, 1, CONFIG), b"abc" * 10_000)
    for compress in (True, False):
        path = tmp_path / f"compress-{compress}"
        with open_storage(path, compress_snapshots=compress) as s:
            s.compact(snap)
            assert (s.bytes_written["snapshot"] < len(snap.data) // 10) == compress
        with open_storage(path, compress_snapshots=not compress) as s:
            assert s.load().snapshot == snap


def test_a_suffix_overwritten_across_a_segment_boundary_survives_reopen(
    open_storage: OpenStorage,
):
    s = open_storage(segment_bytes=200)
    s.save(HardState(1, "n1", 3), entries_between(1, 40, term=1))
    before = list_segments(s.path / "wal")
    assert len(before) >= 4
    # overwrite from inside the second segment: the later segments must go, durably
    first = before[1].first_index + 1
    new = entries_between(first, first + 5, term=2)
    s.save(HardState(2, None, 3), new)
    s.close()

    state = open_storage(segment_bytes=200).load()
    assert state.entries == entries_between(1, first - 1, term=1) + new
    names = [seg.first_index for seg in list_segments(s.path / "wal")]
    assert names == sorted(set(names)) and names[:2] == [seg.first_index for seg in before[:2]]


def test_overwriting_from_the_first_index_of_a_segment_removes_that_segment(
    open_storage: OpenStorage,
):
    s = open_storage(segment_bytes=200)
    s.save(None, entries_between(1, 40))
    third = list_segments(s.path / "wal")[2].first_index
    s.save(None, entries_between(third, third, term=3))
    s.close()
    state = open_storage(segment_bytes=200).load()
    assert state.entries == entries_between(1, third - 1) + entries_between(third, third, term=3)


def test_one_save_of_1000_entries_costs_exactly_one_wal_fsync(open_storage: OpenStorage):
    s = open_storage()  # real fsyncs: group commit is about what the disk sees
    created = s.fsyncs
    assert created == {"meta": 1, "meta.dir": 2}  # meta file, data dir, its parent

    # the first save also creates the first segment: one directory fsync for it
    s.save(HardState(1, "n1", 0), entries_between(1, 1000))
    assert s.fsyncs - created == {"wal": 1, "wal.dir": 1, "hardstate": 1, "hardstate.dir": 1}

    # steady state: only the commit index moved, so the WAL fsync is the only one
    before, count = s.fsyncs, s.fsync_count
    s.save(HardState(1, "n1", 1000), entries_between(1001, 2000))
    assert s.fsyncs - before == {"wal": 1}
    assert s.fsync_count - count == 1

    # a new term (or vote) is written at once: file + directory
    before = s.fsyncs
    s.save(HardState(2, None, 1000), [])
    assert s.fsyncs - before == {"hardstate": 1, "hardstate.dir": 1}

    # an unchanged hard state is not rewritten: entries alone cost one fsync
    count = s.fsync_count
    s.save(HardState(2, None, 1000), entries_between(2001, 3000))
    assert s.fsync_count - count == 1
    assert len(s.load().entries) == 3000


def test_a_commit_only_change_is_written_lazily_and_on_close(open_storage: OpenStorage):
    """Raft needs term and vote durable before a node answers, not the commit index
    (a restarted node relearns it from the leader); so a moved commit costs no fsync
    of its own and is written with the next term/vote change or on a clean close."""
    s = open_storage(fsync=False)
    s.save(HardState(3, "n2", 0), entries_between(1, 10, term=3))
    s.save(HardState(3, "n2", 7), [])
    assert s.load().hard_state == HardState(3, "n2", 7)  # what this process holds
    s.close()
    assert open_storage(fsync=False).load().hard_state == HardState(3, "n2", 7)


def test_a_save_that_crosses_segment_boundaries_syncs_each_finished_segment(
    open_storage: OpenStorage,
):
    s = open_storage(segment_bytes=1000, fsync=False)
    s.save(None, entries_between(1, 10))
    before = s.fsyncs
    s.save(None, entries_between(11, 80))
    crossed = len(list_segments(s.path / "wal")) - 1
    assert crossed >= 2
    assert s.fsyncs - before == {"wal": 1 + crossed, "wal.dir": crossed}
    assert all(seg.size <= 1000 for seg in list_segments(s.path / "wal"))


def test_wal_segments_hold_exactly_the_documented_record_frames(open_storage: OpenStorage):
    """The WAL encodes its records inline (one Packer, one join per save): the bytes
    must stay those of ``records.frame(records.encode_entry(e))``, segment by segment,
    membership entries included."""
    s = open_storage(segment_bytes=400, fsync=False)
    entries = entries_between(1, 30)
    entries[4] = Entry(5, 1, b"\x01", EntryKind.CONFIG)
    s.save(None, entries[:7])
    s.save(None, entries[7:])
    segments = list_segments(s.path / "wal")
    assert len(segments) >= 3
    for seg, nxt in zip(segments, [*segments[1:], None], strict=True):
        last = nxt.first_index - 1 if nxt else 30
        held = entries[seg.first_index - 1 : last]
        assert seg.path.read_bytes() == b"".join(frame(encode_entry(e)) for e in held)


def test_a_directory_of_another_cluster_is_refused(open_storage: OpenStorage, node_dir: Path):
    open_storage().close()
    with pytest.raises(WrongClusterError) as info:
        open_storage(cluster_id="other-cluster")
    message = str(info.value)
    assert "other-cluster" in message and "arena-test" in message and str(node_dir) in message


def test_a_directory_of_another_node_is_refused(open_storage: OpenStorage, node_dir: Path):
    open_storage().close()
    with pytest.raises(WrongNodeError) as info:
        open_storage(node_id="n2")
    message = str(info.value)
    assert "'n1'" in message and "'n2'" in message and str(node_dir) in message


def test_a_second_storage_on_a_locked_directory_is_refused(
    open_storage: OpenStorage, node_dir: Path
):
    open_storage()
    with pytest.raises(DirectoryLockedError) as info:
        open_storage()
    assert str(node_dir) in str(info.value) and "this process" in str(info.value)


def test_another_process_is_refused_while_the_lock_is_held(open_storage: OpenStorage):
    s = open_storage()
    code = (
        "import sys\n"
        "from nodes.storage import DiskStorage, DirectoryLockedError\n"
        "try:\n"
        f"    DiskStorage({str(s.path)!r}, 'n1', 'arena-test')\n"
        "except DirectoryLockedError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 3, run.stderr
    assert str(s.path) in run.stdout


def test_the_lock_is_released_on_close(open_storage: OpenStorage):
    with open_storage() as s:
        s.save(HardState(1, None, 0), [])
    with open_storage() as again:
        assert again.load().hard_state == HardState(1, None, 0)


def test_a_directory_with_foreign_files_and_no_meta_is_refused(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a node")
    with pytest.raises(Exception, match="not a node data directory"):
        DiskStorage(tmp_path, "n1", "c")
    DiskStorage(tmp_path / "fresh", "n1", "c").close()  # the lock was released


def test_the_recorded_initial_config_wins_over_a_different_one_given_later(
    open_storage: OpenStorage, caplog: pytest.LogCaptureFixture
):
    open_storage().close()
    other = ClusterConfig(frozenset({"n1"}))
    assert open_storage(initial_config=other).load().initial_config == CONFIG
    assert "ignoring the initial configuration" in caplog.text


def test_entries_that_do_not_fit_the_log_are_refused_without_writing(open_storage: OpenStorage):
    s = open_storage()
    s.save(None, entries_between(1, 5))
    with pytest.raises(ValueError, match=r"must be in 1\.\.6"):
        s.save(None, entries_between(8, 9))
    with pytest.raises(ValueError, match="not contiguous"):
        s.save(None, [Entry(6, 1), Entry(8, 1)])
    s.save(None, entries_between(6, 6))  # still usable
    assert len(s.load().entries) == 6


@pytest.mark.parametrize("point", ["hardstate.write", "hardstate.fsync", "hardstate.rename"])
def test_a_crash_before_the_hard_state_rename_leaves_the_old_hard_state(
    open_storage: OpenStorage, point: str
):
    with open_storage() as s:
        s.save(HardState(1, "n1", 0), entries_between(1, 3))
    s = open_storage(crash_hook=crash_at(point))
    with pytest.raises(SimulatedCrash):
        s.save(HardState(2, "n2", 3), entries_between(4, 6, term=2))
    with pytest.raises(StorageFailedError):
        s.save(None, [])
    s.close()

    state = open_storage().load()
    assert state.hard_state == HardState(1, "n1", 0)
    # the WAL is synced before the hard state is touched
    assert state.entries == entries_between(1, 3) + entries_between(4, 6, term=2)
    assert not (s.path / "hardstate.tmp").exists()


SNAP_25 = Snapshot(SnapshotMeta(25, 1, CONFIG), b"snap-25")


def _apply(storage: DiskStorage | MemoryStorage, scenario: str) -> None:
    new_hs = HardState(2, "n2", 26)
    if scenario == "append":
        storage.save(new_hs, entries_between(31, 40, term=2))
    elif scenario == "overwrite":
        storage.save(new_hs, entries_between(12, 30, term=2))
    elif scenario == "install":
        storage.save(new_hs, entries_between(26, 28, term=2), snapshot=SNAP_25)
    else:
        storage.compact(SNAP_25)


def _prefix_of(entries: list[Entry], log: list[Entry]) -> bool:
    return entries == log[: len(entries)]


@pytest.mark.parametrize("point", CRASH_POINTS)
@pytest.mark.parametrize("scenario", ["append", "overwrite", "install", "compact"])
def test_a_crash_at_any_step_leaves_the_old_state_the_new_one_or_a_safe_prefix(
    open_storage: OpenStorage, tmp_path: Path, scenario: str, point: str
):
    """Crash-restart keeps exactly what was done: the hard state is old until its
    rename (and everything else is complete by then), a snapshot is all or nothing,
    and the log is never a mix of old and new, except that while a suffix is being
    replaced it may be cut short: those entries conflict with the leader, so they
    were never committed (paper 5.3). The install keeps the log after the snapshot
    (it holds the snapshot's last entry, paper section 7) then overwrites part of it."""
    kwargs = {"segment_bytes": 300, "fsync": False}
    for path in (tmp_path / "probe", tmp_path / "n1"):
        with open_storage(path, **kwargs) as s:
            s.save(HardState(1, "n1", 5), entries_between(1, 30))
            old = s.load()
    passed: list[str] = []
    with open_storage(tmp_path / "probe", **kwargs, crash_hook=passed.append) as probe:
        _apply(probe, scenario)
    model = MemoryStorage(CONFIG)
    model.save(old.hard_state, old.entries)
    _apply(model, scenario)
    new = model.load()

    s = open_storage(**kwargs, crash_hook=crash_at(point))
    with pytest.raises(SimulatedCrash) if point in passed else nullcontext():
        _apply(s, scenario)
    s.close()

    state = open_storage(**kwargs).load()
    hard_state_changed = new.hard_state != old.hard_state
    if point not in passed or (hard_state_changed and state.hard_state == new.hard_state):
        assert state == new
        return
    assert state.hard_state == old.hard_state
    assert state.snapshot in (old.snapshot, new.snapshot)
    base = state.snapshot.meta.index if state.snapshot else 0
    old_tail = [e for e in old.entries if e.index > base]
    new_tail = [e for e in new.entries if e.index > base]
    assert _prefix_of(state.entries, old_tail) or _prefix_of(state.entries, new_tail)
    if state.snapshot == old.snapshot:
        # only what is being replaced may be cut: the overwrite starts at index 12
        assert len(state.entries) >= (11 if scenario == "overwrite" else 30)


@pytest.mark.parametrize("point", ["meta.write", "meta.fsync", "meta.rename"])
def test_a_crash_while_creating_the_directory_leaves_it_creatable(tmp_path: Path, point: str):
    with pytest.raises(SimulatedCrash):
        DiskStorage(tmp_path / "n1", "n1", "c", crash_hook=crash_at(point))
    with DiskStorage(tmp_path / "n1", "n1", "c") as s:
        assert s.load().entries == []
    with pytest.raises(WrongNodeError):
        DiskStorage(tmp_path / "n1", "n2", "c")
