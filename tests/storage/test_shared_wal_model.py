"""Every group of a SharedWal behaves as a MemoryStorage of its own: any interleaving of
stages and syncs across groups, compactions, snapshot installs, group creation and
removal, with close-and-reopen in between, loads per group what the model holds.

Operations are drawn within what Raft produces (as test_storage_model.py): entries
start anywhere from just above the commit index to just past the last entry."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from shared_helpers import GROUP_CONFIG

from nodes.raft.messages import ClusterConfig, Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from nodes.raft.storage import MemoryStorage, retained_after_snapshot
from nodes.storage.shared import SharedWal
from nodes.storage.shared_replay import list_segments, prune_runs, replay

SEGMENT_BYTES = 256  # a few records per segment: rollovers, deletions, pinned segments


class SharedMatchesMemory(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.path = Path(self._tmp.name) / "node"
        self.models: dict[str, MemoryStorage] = {}
        self.created = 0
        self.compress = True
        self.wal = self._open()
        self.term = 1

    def _open(self) -> SharedWal:
        return SharedWal(self.path, fsync=False, node_id="n1", cluster_id="model",
                         segment_bytes=SEGMENT_BYTES, max_segments=2,
                         compress_snapshots=self.compress)

    def _bounds(self, gid: str) -> tuple[int, int, int]:
        state = self.models[gid].load()
        base = state.snapshot.meta.index if state.snapshot else 0
        last = state.entries[-1].index if state.entries else base
        return base, last, state.hard_state.commit

    def _snapshot(self, data: st.DataObject, index: int) -> Snapshot:
        voters = data.draw(st.frozensets(st.sampled_from(["n1", "n2", "n3", "n4"])), "voters")
        config = ClusterConfig(voters, frozenset({"n5"}) - voters)
        return Snapshot(SnapshotMeta(index, self.term, config), data.draw(st.binary(max_size=48)))

    @precondition(lambda self: len(self.models) < 4)
    @rule()
    def create_group(self) -> None:
        self.created += 1
        gid = f"g{self.created}"
        self.wal.open_group(gid, GROUP_CONFIG)
        model = MemoryStorage(GROUP_CONFIG)
        model.save(HardState(recovering=True), [])  # n1 is a voter: it may be a wiped one
        self.models[gid] = model

    @precondition(lambda self: self.models)
    @rule(data=st.data())
    def remove_group(self, data: st.DataObject) -> None:
        gid = data.draw(st.sampled_from(sorted(self.models)), "removed group")
        self.wal.remove_group(gid)
        del self.models[gid]

    def _stage_one(self, data: st.DataObject, gid: str) -> None:
        base, last, commit = self._bounds(gid)
        if data.draw(st.booleans(), "new term"):
            self.term += 1
        snapshot = None
        if data.draw(st.integers(0, 6), "install?") == 0:
            snapshot = self._snapshot(data, data.draw(st.integers(max(commit, 1), last + 4)))
            base = snapshot.meta.index
            # the entries after it stay if the log holds its last entry (paper section 7)
            kept = retained_after_snapshot(self.models[gid].load().entries, snapshot.meta)
            last = kept[-1].index if kept else base
        count = data.draw(st.integers(0, 5), "entry count")
        entries = []
        if count:
            first = data.draw(st.integers(max(base, commit) + 1, last + 1), "first index")
            kinds = st.sampled_from(list(EntryKind))
            entries = [Entry(first + k, self.term, data.draw(st.binary(max_size=30)),
                             data.draw(kinds)) for k in range(count)]
            last = entries[-1].index
        hard_state = None
        if data.draw(st.booleans(), "hard state?"):
            vote = data.draw(st.none() | st.sampled_from(["n1", "n2", "n3"]), "vote")
            commit_to = data.draw(st.integers(commit, last))
            hard_state = HardState(self.term, vote, commit_to, last,
                                   data.draw(st.booleans(), "recovering"))
        self.models[gid].save(hard_state, entries, snapshot)
        self.wal.open_group(gid).stage(hard_state, entries, snapshot)

    @precondition(lambda self: self.models)
    @rule(data=st.data())
    def turn(self, data: st.DataObject) -> None:
        """Several groups stage, in any order, some more than once; one sync."""
        gids = data.draw(st.lists(st.sampled_from(sorted(self.models)), min_size=1,
                                  max_size=6), "stagers")
        for gid in gids:
            self._stage_one(data, gid)
        self.wal.sync()

    @precondition(lambda self: self.models)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        gid = data.draw(st.sampled_from(sorted(self.models)), "compacted group")
        base, last, _ = self._bounds(gid)
        snapshot = self._snapshot(data, data.draw(st.integers(max(base - 2, 0), last + 2)))
        self.models[gid].compact(snapshot)
        self.wal.open_group(gid).compact(snapshot)

    @rule(compress=st.booleans())
    def reopen(self, compress: bool) -> None:
        self.wal.close()
        self.compress = compress
        self.wal = self._open()
        assert self.wal.damaged == {}

    @invariant()
    def keeps_every_segment_a_group_needs(self) -> None:
        found = replay(list_segments(self.path / "wal"),
                       {g.meta.slot: g.meta for g in self.wal._groups.values()})
        for gid, group in self.wal._groups.items():
            g_r = found.groups.get(group.meta.slot)
            live = [list(run) for run in (g_r.runs if g_r else []) if run[0] <= group.last]
            prune_runs(live, group.base)
            if group.last > group.base and live:
                assert group.needed_seq() <= live[0][1], (gid, group.runs, live)

    @invariant()
    def loads_the_same(self) -> None:
        assert sorted(self.wal.groups()) == sorted(self.models)
        for gid, model in self.models.items():
            group = self.wal.open_group(gid)
            assert group.load() == model.load(), gid
            assert group.snapshot() == model.snapshot(), gid

    def teardown(self) -> None:
        self.wal.close()
        with self._open() as reopened:
            assert reopened.damaged == {}
            for gid, model in self.models.items():
                assert reopened.open_group(gid).load() == model.load(), gid
        self._tmp.cleanup()


SharedMatchesMemory.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_every_group_of_a_shared_wal_loads_what_its_memory_storage_loads = SharedMatchesMemory.TestCase
