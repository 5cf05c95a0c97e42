"""DiskStorage implements the same Storage protocol as MemoryStorage: any sequence of
save / compact, with close-and-reopen in between, loads identically from both.

The operations drawn are the ones Raft can produce: entries start anywhere from just
above the commit index (a committed entry is never overwritten) to just past the last
entry, and the hard state never commits past the log. Within those bounds anything
goes, including snapshots older than the current one and entries' data of any bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from storage_helpers import CONFIG

from nodes.raft.messages import (
    ClusterConfig,
    Entry,
    EntryKind,
    HardState,
    Snapshot,
    SnapshotMeta,
)
from nodes.raft.storage import MemoryStorage
from nodes.storage import DiskStorage

SEGMENT_BYTES = 160  # a few records per segment: rollovers and cross-segment cuts


class DiskMatchesMemory(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.path = Path(self._tmp.name) / "node"
        self.memory = MemoryStorage(CONFIG)
        # a founder's new directory starts recovering (nodes.raft.core): so does the model
        self.memory.save(HardState(recovering=True), [])
        self.compress = True
        self.disk = self._open()
        self.term = 1

    def _open(self) -> DiskStorage:
        return DiskStorage(
            self.path,
            "n1",
            "model",
            CONFIG,
            segment_bytes=SEGMENT_BYTES,
            fsync=False,
            compress_snapshots=self.compress,
        )

    def _bounds(self) -> tuple[int, int, int]:
        """(snapshot index, last index, commit) of the model."""
        state = self.memory.load()
        base = state.snapshot.meta.index if state.snapshot else 0
        last = state.entries[-1].index if state.entries else base
        return base, last, state.hard_state.commit

    def _snapshot(self, data: st.DataObject, index: int) -> Snapshot:
        voters = data.draw(st.frozensets(st.sampled_from(["n1", "n2", "n3", "n4"])), "voters")
        config = ClusterConfig(voters, frozenset({"n5"}) - voters)
        payload = data.draw(st.binary(max_size=64), "snapshot data")
        return Snapshot(SnapshotMeta(index, self.term, config), payload)

    @rule(data=st.data())
    def save(self, data: st.DataObject) -> None:
        base, last, commit = self._bounds()
        if data.draw(st.booleans(), "new term"):
            self.term += 1
        snapshot = None
        if data.draw(st.integers(0, 5), "install?") == 0:
            index = data.draw(st.integers(max(commit, 1), last + 5), "snapshot index")
            snapshot = self._snapshot(data, index)
            base = last = index
        count = data.draw(st.integers(0, 8), "entry count")
        entries = []
        if count:
            first = data.draw(st.integers(max(base, commit) + 1, last + 1), "first index")
            kinds = st.sampled_from(list(EntryKind))
            entries = [
                Entry(first + k, self.term, data.draw(st.binary(max_size=40)), data.draw(kinds))
                for k in range(count)
            ]
            last = entries[-1].index
        hard_state = None
        if data.draw(st.booleans(), "hard state?"):
            vote = data.draw(st.none() | st.sampled_from(["n1", "n2", "n3"]), "vote")
            hard_state = HardState(self.term, vote, data.draw(st.integers(commit, last)))
        self.memory.save(hard_state, entries, snapshot)
        self.disk.save(hard_state, entries, snapshot)

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        base, last, _ = self._bounds()
        snapshot = self._snapshot(data, data.draw(st.integers(max(base - 2, 0), last + 2)))
        self.memory.compact(snapshot)
        self.disk.compact(snapshot)

    @rule(compress=st.booleans())
    def reopen(self, compress: bool) -> None:
        self.disk.close()
        self.compress = compress
        self.disk = self._open()

    @invariant()
    def loads_the_same(self) -> None:
        assert self.disk.load() == self.memory.load()
        assert self.disk.snapshot() == self.memory.snapshot()

    def teardown(self) -> None:
        self.disk.close()
        # what a restart sees is what the model holds
        with self._open() as reopened:
            assert reopened.load() == self.memory.load()
        self._tmp.cleanup()


DiskMatchesMemory.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_disk_storage_loads_what_memory_storage_loads = DiskMatchesMemory.TestCase
